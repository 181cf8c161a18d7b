"""The scoreboard page: a row and a sample grid for every shipped generative checkpoint; rows computed right."""

import re

import pytest

from companion import data, evaluation, scoreboard

PAGE = scoreboard.ROOT / "book" / "scoreboard.md"


def _table_names(text):
    return [m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", text, re.M)]


def test_the_page_has_a_row_and_a_grid_for_every_generative_checkpoint():
    text = PAGE.read_text()
    assert sorted(_table_names(text)) == sorted(scoreboard.generative_checkpoints())
    for name in scoreboard.generative_checkpoints():
        assert (PAGE.parent / "scoreboard" / f"{name}.png").is_file(), name
    assert re.search(r"Measured on .+, \d{4}-\d{2}-\d{2}, torch ", text)


@pytest.fixture(scope="module")
def sets():
    test = data.mnist("test").tensors[0]
    return test[evaluation.REFERENCE][:200], test[evaluation.FLOOR][:200]


def test_a_row_scores_a_gan_and_a_conditional_model(sets):
    reference, floor = sets
    floor_fld = evaluation.fld(floor, reference)
    row = scoreboard.score("dcgan_mnist", reference, floor_fld, n=200)
    assert row["images"].shape == (200, 1, 28, 28) and row["nfe"] == 1
    assert row["fld"] > floor_fld and row["fld_ratio"] == pytest.approx(row["fld"] / floor_fld)
    assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and "agreement" not in row
    cond = scoreboard.score("cvae_mnist", reference, floor_fld, n=200)
    assert 0.5 < cond["agreement"] <= 1
    prior = scoreboard.score("vqvae_prior_mnist", reference, floor_fld, n=20)
    assert prior["nfe"] == 50
    page = scoreboard.scoreboard_page([{k: v for k, v in r.items() if k != "images"} for r in (row, cond)],
                                      floor_fld, 200, "a machine", "2026-01-01")
    assert _table_names(page) == ["dcgan_mnist", "cvae_mnist"] and "scoreboard/cvae_mnist.png" in page


def test_a_model_of_another_dataset_gets_a_row_without_mnist_scores(sets):
    reference, _ = sets
    row = scoreboard.score("betavae_shapes", reference, 1.0, n=20)
    assert "fld" not in row and "not scored against MNIST" in row["note"] and "β = 1" in row["note"]
    page = scoreboard.scoreboard_page([{k: v for k, v in row.items() if k != "images"}], 1.0, 20, "m", "2026-01-01")
    assert "| `betavae_shapes` | 11 |" in page and "— |" in page
