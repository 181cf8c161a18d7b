"""companion.augment: affine warps against torch.roll / torch.rot90 / closed forms, the bilinear sampler
against F.grid_sample, determinism with a seed, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from companion import augment

ATOL = 2e-6  # float32 interpolation at exact pixel centres: weights of 1 - 1e-7 and 1e-7


def _images(*shape, seed=0, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def roll_zero_fill(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """torch.roll by (dy, dx), then zero the rows/columns that wrapped around."""
    out = torch.roll(x, shifts=(dy, dx), dims=(-2, -1)).clone()
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


# ----------------------------------------------------------------------------- affine_matrix


def test_affine_matrix_closed_forms():
    torch.testing.assert_close(augment.affine_matrix(), torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    a = math.radians(30)
    expected = 2 * torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    m = augment.affine_matrix(angle=30.0, translate=(3.0, -1.5), scale=2.0)
    torch.testing.assert_close(m[:, :2], expected.float())
    torch.testing.assert_close(m[:, 2], torch.tensor([3.0, -1.5]))
    # pure shear: x' = x + tan(s) y
    sh = augment.affine_matrix(shear=20.0)
    torch.testing.assert_close(sh, torch.tensor([[1.0, math.tan(math.radians(20)), 0], [0, 1, 0]]))
    # A = scale * R @ Shear
    full = augment.affine_matrix(angle=25.0, scale=0.8, shear=-10.0).double()
    r = augment.affine_matrix(angle=25.0).double()[:, :2]
    s = augment.affine_matrix(shear=-10.0).double()[:, :2]
    torch.testing.assert_close(full[:, :2], 0.8 * r @ s, atol=1e-6, rtol=1e-6)


def test_affine_matrix_batches_and_dtypes():
    angles = torch.tensor([0.0, 90.0, -45.0], dtype=torch.float64)
    m = augment.affine_matrix(angles, translate=(1.0, 2.0))
    assert m.shape == (3, 2, 3) and m.dtype == torch.float64
    torch.testing.assert_close(m[1], torch.tensor([[0.0, 1, 1], [-1, 0, 2]], dtype=torch.float64), atol=1e-12, rtol=0)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert augment.affine_matrix(translate=t).shape == (2, 2, 3)
    # rotating by a then by -a composes to the identity
    rot = augment.affine_matrix(torch.tensor([37.0], dtype=torch.float64))[0, :, :2]
    back = augment.affine_matrix(torch.tensor([-37.0], dtype=torch.float64))[0, :, :2]
    torch.testing.assert_close(rot @ back, torch.eye(2, dtype=torch.float64))


# ----------------------------------------------------------------------------- warps


def test_identity_transform_returns_the_input():
    x = _images(3, 2, 7, 9)
    torch.testing.assert_close(augment.warp_affine(x, augment.affine_matrix()), x, atol=ATOL, rtol=0)
    torch.testing.assert_close(augment.random_affine(x), x, atol=ATOL, rtol=0)
    assert torch.equal(augment.shift(x, 0, 0), x)
    assert torch.equal(augment.random_shift(x, 0), x)
    assert torch.equal(augment.random_crop(x, (7, 9)), x)
    torch.testing.assert_close(augment.elastic_distortion(x, alpha=0.0), x, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("dx", "dy"), [(2, -1), (-3, 4), (1, 0), (0, -2), (5, 5)])
def test_pure_shift_equals_roll_with_zero_fill(dx, dy):
    x = _images(2, 3, 8, 11)
    expected = roll_zero_fill(x, dx, dy)
    assert torch.equal(augment.shift(x, dx, dy), expected)
    warped = augment.warp_affine(x, augment.affine_matrix(translate=(float(dx), float(dy))))
    torch.testing.assert_close(warped, expected, atol=ATOL, rtol=0)


def test_shift_per_image():
    x = _images(3, 1, 6, 6)
    dx, dy = torch.tensor([1, -2, 0]), torch.tensor([0, 3, -1])
    out = augment.shift(x, dx, dy)
    for b in range(3):
        assert torch.equal(out[b], roll_zero_fill(x[b], int(dx[b]), int(dy[b])))


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_rotation_by_multiples_of_90_equals_rot90(size, k):
    x = _images(2, 3, size, size)
    warped = augment.warp_affine(x, augment.affine_matrix(angle=90.0 * k))
    torch.testing.assert_close(warped, torch.rot90(x, k, dims=(-2, -1)), atol=ATOL, rtol=0)


def test_rotation_on_a_non_square_image():
    x = _images(1, 1, 6, 10)
    torch.testing.assert_close(augment.warp_affine(x, augment.affine_matrix(180.0)), torch.flip(x, (-2, -1)),
                               atol=ATOL, rtol=0)
    # one bright pixel at row 3, column 5 of a 6x10 image: centred coordinates (u, v) = (0.5, 0.5).
    # +90 degrees (counter-clockwise on screen) sends (u, v) to (v, -u) = (0.5, -0.5): row 2, column 5.
    dot = torch.zeros(1, 1, 6, 10)
    dot[0, 0, 3, 5] = 1.0
    out = augment.warp_affine(dot, augment.affine_matrix(90.0))
    assert out[0, 0, 2, 5].item() == pytest.approx(1.0, abs=1e-5)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_scale_maps_pixel_centres_by_the_formula():
    # zoom x2 about the centre of a 9x9 image (pixel centres at whole u = j - 4, v = i - 4): the pixel at
    # row 5, column 2, (u, v) = (-2, 1), lands on (-4, 2): row 6, column 0
    dot = torch.zeros(1, 1, 9, 9)
    dot[0, 0, 5, 2] = 1.0
    out = augment.warp_affine(dot, augment.affine_matrix(scale=2.0))
    assert out[0, 0, 6, 0].item() == pytest.approx(1.0, abs=1e-5)
    # bilinear interpolation between input pixels: halfway to the next output pixel, half the ink
    assert out[0, 0, 6, 1].item() == pytest.approx(0.5, abs=1e-5)
    assert out[0, 0, 5, 1].item() == pytest.approx(0.25, abs=1e-5)


def test_bilinear_sample_equals_grid_sample_values_and_gradients():
    x = _images(2, 3, 7, 9, dtype=torch.float64).requires_grad_(True)
    grid = (torch.rand(2, 5, 6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2.6 - 1.3)
    x2 = x.detach().clone().requires_grad_(True)
    mine = augment.bilinear_sample(x, grid)
    ref = F.grid_sample(x2, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(mine, ref, atol=1e-12, rtol=0)
    w = torch.randn_like(ref)
    (mine * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-12, rtol=0)


def test_warp_affine_is_bilinear_sample_on_the_affine_grid():
    x = _images(4, 1, 12, 12, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    out, matrix = augment.random_affine(x, 20, 2, 0.2, 15, generator=gen, return_matrix=True)
    theta = augment.affine_theta(matrix, 12, 12)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    torch.testing.assert_close(out, augment.bilinear_sample(x, grid), atol=1e-12, rtol=0)


def test_warp_keeps_dtype_and_gradient():
    x = _images(2, 1, 5, 5, dtype=torch.float64).requires_grad_(True)
    out = augment.warp_affine(x, augment.affine_matrix(12.0, (0.5, 0.0), 1.1))
    assert out.dtype == torch.float64
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- random augmentations


def test_random_affine_is_deterministic_with_a_seed():
    x = _images(8, 1, 28, 28)

    def run(seed):
        return augment.random_affine(x, 15, 2.5, 0.1, 10, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    gen = torch.Generator().manual_seed(0)
    first, second = (augment.random_affine(x, 15, generator=gen) for _ in range(2))
    assert not torch.equal(first, second), "the generator's state advances between calls"


def test_random_affine_draws_within_bounds():
    x = torch.zeros(500, 1, 4, 4)
    _, m = augment.random_affine(x, 10, 3, 0.2, 0, generator=torch.Generator().manual_seed(0), return_matrix=True)
    m = m.double()
    assert m[:, :, 2].abs().max() <= 3 + 1e-6
    det = torch.linalg.det(m[:, :, :2])  # scale^2 (rotations have determinant 1)
    assert det.min() >= 0.8**2 - 1e-6 and det.max() <= 1.2**2 + 1e-6
    angle = torch.rad2deg(torch.atan2(m[:, 0, 1], m[:, 0, 0]))  # no shear: the first row is s (cos a, sin a)
    assert angle.abs().max() <= 10 + 1e-4 and angle.abs().max() > 9  # uses the range


def test_random_shift_and_crop_are_windows_of_the_padded_image():
    x = _images(16, 2, 9, 9)
    out = augment.random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, augment.random_shift(x, 2, generator=torch.Generator().manual_seed(0)))
    seen = set()
    for b in range(len(x)):
        matches = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)
                   if torch.equal(out[b], roll_zero_fill(x[b], dx, dy))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 3, "the shifts vary from image to image"
    crops = augment.random_crop(x, 7, padding=1, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (16, 2, 7, 7)
    padded = F.pad(x, (1, 1, 1, 1))
    for b in range(len(x)):
        windows = padded[b].unfold(1, 7, 1).unfold(2, 7, 1)  # [C, 5, 5, 7, 7]
        assert any(torch.equal(crops[b], windows[:, i, j]) for i in range(5) for j in range(5))


def test_elastic_distortion_is_smooth_seeded_and_mass_preserving():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    gen = torch.Generator().manual_seed(0)
    a = augment.elastic_distortion(x, alpha=8.0, sigma=4.0, generator=gen)
    b = augment.elastic_distortion(x, alpha=8.0, sigma=4.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, x)
    # a smooth, small displacement field moves the square a little but keeps its ink roughly
    assert (a.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3)) - 1).abs().max() < 0.25


# ----------------------------------------------------------------------------- shifts: one home for every chapter


def test_shift_moves_content_and_fills_zeros():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    right_down = augment.shift(x, 1, 2)
    assert right_down[0, 0, 4, 3] == 1.0 and right_down.sum() == 1.0
    left_up = augment.shift(x, -2, -1)
    assert left_up[0, 0, 1, 0] == 1.0
    torch.testing.assert_close(augment.shift(x, 0, 0), x)
    y = torch.arange(25.0).reshape(1, 1, 5, 5)
    s = augment.shift(y, 2, 0)
    assert (s[..., :2] == 0).all()
    torch.testing.assert_close(s[..., 2:], y[..., :3])
    torch.testing.assert_close(augment.shift(augment.shift(y, 0, 3), 0, -3)[..., :2, :], y[..., :2, :])


def _crop_shift_reference(x, s, generator):
    """Pad by s and crop at the corner (top, left) drawn as one [2, B] tensor: the ViT recipe's order."""
    b, _, h, w = x.shape
    padded = F.pad(x, (s, s, s, s))
    corner = torch.randint(0, 2 * s + 1, (2, b), generator=generator)
    return torch.stack([padded[i, :, corner[0, i]:corner[0, i] + h, corner[1, i]:corner[1, i] + w] for i in range(b)])


def test_random_shift_crop_is_a_seeded_crop_of_the_padded_image():
    x = _images(64, 2, 9, 9)
    y = augment.random_shift_crop(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(y, _crop_shift_reference(x, 2, torch.Generator().manual_seed(0)))
    assert torch.equal(y, augment.random_shift_crop(x, 2, torch.Generator().manual_seed(0)))
    dot = torch.zeros(64, 1, 9, 9)
    dot[:, :, 4, 4] = 1.0
    where = augment.random_shift_crop(dot, 2, torch.Generator().manual_seed(0))[:, 0].flatten(1).argmax(1)
    assert len(set(where.tolist())) > 10  # shifts differ between images
    assert augment.random_shift_crop(x, 0) is x
    # the same distribution as random_shift, other draws from the same seed
    assert not torch.equal(y, augment.random_shift(x, 2, torch.Generator().manual_seed(0)))


def test_shifted_dataset_draws_each_visit_from_its_own_seed():
    from torch.utils.data import TensorDataset

    x, s, seed = _images(5, 1, 8, 8), 2, 3
    data = augment.ShiftedDataset(TensorDataset(x, torch.arange(5)), s, seed=seed)
    again = augment.ShiftedDataset(TensorDataset(x, torch.arange(5)), s, seed=seed)
    for visit in range(3):
        for i in range(5):
            g = torch.Generator().manual_seed(seed * 1_000_003 + i * 7919 + visit)
            dy, dx = torch.randint(-s, s + 1, (2,), generator=g).tolist()
            img, label = data[i]
            assert torch.equal(img, F.pad(x[i], (s, s, s, s))[:, s - dy:s - dy + 8, s - dx:s - dx + 8])
            assert label == i and torch.equal(again[i][0], img)
    assert torch.equal(augment.ShiftedDataset(TensorDataset(x, torch.arange(5)), 0)[1][0], x[1])


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: augment.random_affine(torch.rand(1, 28, 28), 10), ValueError, r"\[B, C, H, W\]"),
        (lambda: augment.random_affine(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 10), TypeError, "floating"),
        (lambda: augment.random_affine([[0.0]], 10), TypeError, "torch.Tensor"),
        (lambda: augment.random_affine(torch.rand(1, 1, 4, 4), -1.0), ValueError, "max_rotation"),
        (lambda: augment.random_affine(torch.rand(1, 1, 4, 4), max_scale=1.0), ValueError, "max_scale"),
        (lambda: augment.random_affine(torch.rand(1, 1, 4, 4), max_shear=90), ValueError, "max_shear"),
        (lambda: augment.random_affine(torch.rand(1, 1, 4, 4), max_shift=float("nan")), ValueError, "max_shift"),
        (lambda: augment.affine_matrix(scale=0.0), ValueError, "scale"),
        (lambda: augment.affine_matrix(shear=90.0), ValueError, "shear"),
        (lambda: augment.affine_matrix(translate=(1.0, 2.0, 3.0)), ValueError, "translate"),
        (lambda: augment.affine_matrix(angle=float("inf")), ValueError, "angle"),
        (lambda: augment.affine_theta(torch.zeros(3, 3), 4, 4), ValueError, "matrix"),
        (lambda: augment.warp_affine(torch.rand(2, 1, 4, 4), torch.zeros(3, 2, 3)), ValueError, "3 matrices"),
        (lambda: augment.bilinear_sample(torch.rand(2, 1, 4, 4), torch.zeros(1, 3, 3, 2)), ValueError, "grid"),
        (lambda: augment.shift(torch.rand(2, 1, 4, 4), 1.5, 0), TypeError, "whole pixels"),
        (lambda: augment.shift(torch.rand(2, 1, 4, 4), torch.tensor([1, 2, 3]), 0), ValueError, "dx"),
        (lambda: augment.random_shift(torch.rand(2, 1, 4, 4), 4), ValueError, "out of frame"),
        (lambda: augment.random_shift(torch.rand(2, 1, 4, 4), 1.5), ValueError, "whole number"),
        (lambda: augment.shift(torch.rand(2, 1, 5, 5), 5, 0), ValueError, "out of frame"),
        (lambda: augment.shift(torch.rand(1, 5, 5), 1, 0), ValueError, r"\[B, C, H, W\]"),
        (lambda: augment.random_shift_crop(torch.rand(2, 1, 4, 4), 4), ValueError, "out of frame"),
        (lambda: augment.ShiftedDataset(torch.utils.data.TensorDataset(torch.rand(2, 1, 4, 4), torch.zeros(2)), 1.5),
         ValueError, "whole number"),
        (lambda: augment.random_crop(torch.rand(2, 1, 4, 4), 7, padding=1), ValueError, "does not fit"),
        (lambda: augment.random_crop(torch.rand(2, 1, 4, 4), 4, padding=-1), ValueError, "padding"),
        (lambda: augment.elastic_distortion(torch.rand(2, 1, 4, 4), sigma=0.0), ValueError, "sigma"),
        (lambda: augment.elastic_distortion(torch.rand(2, 1, 4, 4), alpha=-1.0), ValueError, "alpha"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_singular_matrix_is_refused():
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    with pytest.raises(torch.linalg.LinAlgError):
        augment.warp_affine(torch.rand(1, 1, 4, 4), m)
