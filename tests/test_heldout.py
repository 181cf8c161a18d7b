"""Held-out means never trained on: every card says which images its checkpoint saw, every metric a card or a
chapter calls held-out is measured on other images, and ``hub.heldout`` gives exactly those images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from companion import data, hub
from companion.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]
TOYS = re.compile(r"toys\.(?:shapes|scenes)\((\d+), size=(\d+), seed=(-?\d+)(?:, split='(\w+)')?\)")


def indices(spec: str) -> tuple[str, set[int]]:
    source, idx = data.split_indices(spec)
    return source, set(idx.tolist())


def disjoint(heldout: str, train: str) -> bool:
    """Whether the images of spec ``heldout`` are none of those of spec ``train``."""
    toy_h, toy_t = TOYS.fullmatch(heldout), TOYS.fullmatch(train)
    if toy_h or toy_t:  # procedural draws: different images exactly when the seeds differ
        return bool(toy_h and toy_t) and toy_h[3] != toy_t[3]
    (src_h, idx_h), (src_t, idx_t) = indices(heldout), indices(train)
    return src_h != src_t or not idx_h & idx_t


def trained_on(name: str) -> list[str]:
    """The training specs of ``name`` and of the checkpoints it builds on."""
    return [hub.card(name)["seen"]["train"]] + [s for n in RECIPES[name].needs for s in trained_on(n)]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_card_says_which_images_it_saw(name):
    seen = hub.card(name)["seen"]
    assert set(seen) == {"train", "heldout"}, seen
    for spec in seen.values():
        assert TOYS.fullmatch(spec) or data.split_indices(spec)[1].numel() > 0, spec
    assert hub.seen(name) == seen


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_card_metrics_are_measured_on_images_never_trained_on(name):
    seen = hub.card(name)["seen"]
    for train in trained_on(name):
        assert disjoint(seen["heldout"], train), f"{name}: held-out {seen['heldout']} overlaps {train}"


@pytest.mark.parametrize("name", sorted(set(RECIPES) - {"betavae_shapes", "shapes_attributes", "text_shapes"}))
def test_heldout_indices_skip_every_image_trained_on(name):
    source, idx = hub.heldout_indices(name, total=10_000)
    assert source == "mnist-test" and len(idx) > 0
    for train in trained_on(name):
        src, train_idx = indices(train)
        assert src != source or not set(idx.tolist()) & train_idx, f"{name}: overlaps {train}"
    assert idx.tolist() == list(range(8000, 10_000))  # the shipped cards were trained on MNIST-test[:8000]


def write_card(directory: Path, name: str, seen: dict[str, str]) -> None:
    card = dict(hub.card(name), seen=seen)
    (directory / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")


def test_a_checkpoint_trained_on_the_training_split_is_held_out_on_all_of_test(tmp_path):
    write_card(tmp_path, "vae_mnist", {"train": "mnist-train[0:60000]", "heldout": "mnist-test[0:10000]"})
    _, idx = hub.heldout_indices("vae_mnist", total=10_000, directory=tmp_path)
    assert idx.tolist() == list(range(10_000))
    _, idx = hub.heldout_indices("vae_mnist", "mnist-test[0:8000].subset(2000, seed=0)", total=10_000,
                                 directory=tmp_path)
    assert len(idx) == 8000 and not set(idx.tolist()) & indices("mnist-test[0:8000].subset(2000, seed=0)")[1]


def test_a_prior_is_never_held_out_on_images_its_encoder_saw(tmp_path):
    write_card(tmp_path, "vqvae_prior_mnist", {"train": "mnist-train[0:60000]", "heldout": "mnist-test[0:10000]"})
    _, idx = hub.heldout_indices("vqvae_prior_mnist", total=10_000, directory=tmp_path)
    assert idx.tolist() == list(range(8000, 10_000)), "the shipped vqvae_mnist saw MNIST-test[:8000]"


def test_a_card_without_seen_is_refused(tmp_path):
    card = hub.card("mlp_mnist")
    card.pop("seen")
    (tmp_path / "mlp_mnist.json").write_text(json.dumps(card))
    with pytest.raises(hub.CheckpointError, match="seen"):
        hub.heldout("mlp_mnist", directory=tmp_path)


def test_shapes_heldout_is_the_cards_evaluation_draw():
    from companion.recipes import vaes

    x, f = hub.heldout("betavae_shapes", n=64)
    assert x.shape == (64, 1, 32, 32) and f.shape == (64, 5)
    spec = hub.card("betavae_shapes")["seen"]["heldout"]
    assert spec == "toys.shapes({n}, size={size}, seed={seed})".format(**vaes.SHAPES_EVAL)


def test_heldout_is_the_offline_split_chapters_use():
    try:
        _, test, _ = data.mnist_splits("ci", n_test=500)
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    if "offline" not in _:
        pytest.skip("the MNIST training split is present: the chapter's split is all of MNIST-test")
    x, y = hub.heldout("vae_mnist", n=500)
    assert torch.equal(x, test.tensors[0]) and torch.equal(y, test.tensors[1])
    x, _ = hub.heldout("vae_mnist")
    assert torch.equal(x, data.mnist("test").tensors[0][8000:])


# ----------------------------------------------------------------------------- the chapters

LOAD = re.compile(r'hub\.load_model\("([a-z0-9_]+)"')
HELDOUT = re.compile(r'hub\.heldout\("([a-z0-9_]+)"')


def chapter_code(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem[:2])
def test_chapters_score_shipped_checkpoints_on_images_they_never_saw(path):
    """A chapter scores a shipped MNIST checkpoint on ``hub.heldout(name)`` or on MNIST-test[8000:], which every
    shipped card's training images avoid; never on ``mnist_splits``' evaluation split (all of MNIST-test when the
    training split is present)."""
    code = chapter_code(path)
    # procedural-data checkpoints (shapes, scenes) hold out their own draws: only the MNIST ones are checked here
    loaded = {n for n in LOAD.findall(code) if hub.card(n).get("seen", {}).get("train", "").startswith("mnist")}
    if not loaded:
        return
    judges = ("evaluate_samples", "conditional_accuracy", "class_coverage")  # lenet_mnist judging samples
    judged = {"lenet_mnist"} & loaded if any(j in code for j in judges) else set()
    for name in sorted(loaded - judged):
        if name in HELDOUT.findall(code):
            continue
        assert "[8000:]" in code, f"{path.name} scores {name} without hub.heldout({name!r})"
        assert disjoint("mnist-test[8000:10000]", hub.card(name)["seen"]["train"]), name


def test_retrain_writes_seen_on_the_card(monkeypatch, tmp_path):
    from torch import nn

    from companion import checkpoints
    from companion.profile import Profile
    from companion.recipes import Recipe

    def build_toy():
        return nn.Linear(2, 1)

    def train_toy(profile: Profile):
        seen = {"train": "mnist-test[0:8000]", "heldout": "mnist-test[8000:10000]"}
        return build_toy(), {"description": "toy", "data": "toy", "seen": seen, "steps": 1, "metrics": {}}

    monkeypatch.setitem(hub.RECIPES, "toy", Recipe(build_toy, train_toy, "00", "classifier"))
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path)
    card = hub.retrain("toy", profile="ci", quiet=True)
    assert card["seen"] == hub.seen("toy") == {"train": "mnist-test[0:8000]", "heldout": "mnist-test[8000:10000]"}
    assert hub.heldout_indices("toy", total=10_000)[1].tolist() == list(range(8000, 10_000))
