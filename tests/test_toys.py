"""Tests for companion.toys: procedural shapes with known factors and 2-D toy distributions."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from companion import data, toys


def test_shapes() -> None:
    images, factors = toys.shapes(1000, size=64, seed=0)
    assert images.shape == (1000, 1, 64, 64) and images.dtype == torch.float32
    assert set(images.unique().tolist()) == {0.0, 1.0}
    assert tuple(factors) == toys.shapes_factor_names
    assert factors["shape"].dtype == torch.int64 and set(factors["shape"].tolist()) == {0, 1, 2}
    assert 0.5 <= factors["scale"].min() and factors["scale"].max() <= 1
    assert 0 <= factors["rotation"].min() and factors["rotation"].max() < 2 * math.pi
    for key in ("pos_x", "pos_y"):
        assert 0 <= factors[key].min() and factors[key].max() <= 1
    area = images.flatten(1).sum(1)
    assert area.min() > 10  # every image shows its shape
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    assert border.sum() == 0  # and no shape is cut off
    big, small = factors["scale"] > 0.9, factors["scale"] < 0.6
    assert area[big].mean() > 2.5 * area[small].mean()  # area grows like scale²
    right = factors["pos_x"] > 0.5  # the centre of mass follows pos_x
    col = (images[:, 0].sum(1) * torch.arange(64)).sum(1) / area
    assert col[right].mean() > col[~right].mean() + 10


def test_shapes_deterministic_and_validated() -> None:
    a, fa = toys.shapes(20, size=32, seed=5)
    b, fb = toys.shapes(20, size=32, seed=5)
    c, _ = toys.shapes(20, size=32, seed=6)
    assert torch.equal(a, b) and all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(a, c)
    assert toys.shapes(1)[0].shape == (1, 1, 64, 64)
    with pytest.raises(ValueError):
        toys.shapes(0)
    with pytest.raises(ValueError):
        toys.shapes(5, size=4)
    with pytest.raises(TypeError):
        toys.shapes(2.5)  # type: ignore[arg-type]


def test_eight_gaussians() -> None:
    x = toys.eight_gaussians(4000)
    assert x.shape == (4000, 2) and x.dtype == torch.float32
    assert torch.equal(x, toys.eight_gaussians(4000, seed=0))
    assert not torch.equal(x, toys.eight_gaussians(4000, seed=1))
    x, k = toys.eight_gaussians(4000, seed=2, radius=3.0, std=0.01, return_labels=True)
    assert k.dtype == torch.int64 and set(k.tolist()) == set(range(8))
    angle = k.float() * math.pi / 4
    centres = 3.0 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    assert (x - centres).norm(dim=1).max() < 0.1
    with pytest.raises(ValueError):
        toys.eight_gaussians(0)
    with pytest.raises(ValueError):
        toys.eight_gaussians(10, std=-1.0)


def test_two_moons() -> None:
    x, moon = toys.two_moons(2000, noise=0.0, return_labels=True)
    assert x.shape == (2000, 2) and x.dtype == torch.float32 and moon.dtype == torch.int64
    upper = x[moon == 0]
    lower = x[moon == 1] - torch.tensor([1.0, 0.5])
    torch.testing.assert_close(upper.norm(dim=1), torch.ones(len(upper)))
    torch.testing.assert_close(lower.norm(dim=1), torch.ones(len(lower)))
    assert torch.equal(toys.two_moons(50, seed=3), toys.two_moons(50, seed=3))
    assert not torch.equal(toys.two_moons(50, seed=3), toys.two_moons(50, seed=4))
    with pytest.raises(ValueError):
        toys.two_moons(-1)
    with pytest.raises(ValueError):
        toys.two_moons(10, noise=-0.1)


def test_swiss_roll() -> None:
    x = toys.swiss_roll(5000)
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert x.mean(0).abs().max() < 0.2 and ((x.std(0) - 1).abs() < 0.2).all()
    assert torch.equal(x, toys.swiss_roll(5000, seed=0))
    assert not torch.equal(x, toys.swiss_roll(5000, seed=1))
    with pytest.raises(ValueError):
        toys.swiss_roll(0)


def test_toys_need_no_files_and_no_heavy_imports() -> None:
    tree = ast.parse(Path(toys.__file__).read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__", "math", "operator", "torch", "_checks"}  # _checks: floor-1 argument checks


@pytest.mark.parametrize("name", ["shapes", "shapes_factor_names", "eight_gaussians", "two_moons", "swiss_roll"])
def test_toy_sets_live_in_toys_only(name: str) -> None:
    assert callable(getattr(toys, name)) or isinstance(getattr(toys, name), tuple)
    assert not hasattr(data, name)  # one home: companion.toys
