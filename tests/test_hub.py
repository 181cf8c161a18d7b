import json

import pytest
import torch
from torch import nn

from companion import hub


@pytest.fixture
def toy_recipe(monkeypatch):
    monkeypatch.setitem(hub.RECIPES, "toy", hub.Recipe(build="test_hub:build_toy", train="test_hub:train_toy",
                                                        chapter="00"))
    return "toy"


def build_toy():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def train_toy(profile):
    model = build_toy()
    with torch.no_grad():
        model.weight.fill_(0.5)
    return model, {"data": "none (toy)", "steps": 1, "metrics": {"loss": 0.25}, "description": "toy"}


def test_retrain_save_card_and_load(tmp_path, toy_recipe):
    card = hub.retrain("toy", profile="ci", directory=tmp_path)
    for field in hub.CARD_FIELDS:
        assert field in card, field
    assert card["torch_version"] == torch.__version__ and card["profile"] == "ci"
    assert json.loads((tmp_path / "toy.json").read_text())["sha256"] == hub.sha256(tmp_path / "toy.pt")
    state = hub.load("toy", tmp_path)
    assert torch.all(state["weight"] == 0.5)
    model = hub.load_model("toy", tmp_path)
    assert not model.training and torch.all(model.weight == 0.5)
    assert not list(tmp_path.glob("*.tmp"))


def test_tampered_file_is_refused(tmp_path, toy_recipe):
    hub.retrain("toy", profile="ci", directory=tmp_path)
    torch.save({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, tmp_path / "toy.pt")
    with pytest.raises(hub.CheckpointError, match="sha256"):
        hub.load("toy", tmp_path)


def test_missing_and_unknown(tmp_path, toy_recipe):
    with pytest.raises(hub.CheckpointError, match="unknown checkpoint 'nope'.*available"):
        hub.load("nope")
    with pytest.raises(hub.CheckpointError, match="no card"):
        hub.load("toy", tmp_path)
    hub.retrain("toy", profile="ci", directory=tmp_path)
    (tmp_path / "toy.pt").unlink()
    with pytest.raises(hub.CheckpointError, match="missing"):
        hub.load("toy", tmp_path)


def test_weights_only_load_refuses_code(tmp_path, toy_recipe):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    hub.retrain("toy", profile="ci", directory=tmp_path)
    torch.save({"x": Evil()}, tmp_path / "toy.pt")
    card = json.loads((tmp_path / "toy.json").read_text())
    card["sha256"] = hub.sha256(tmp_path / "toy.pt")
    (tmp_path / "toy.json").write_text(json.dumps(card))
    with pytest.raises(Exception, match="[Ww]eights only"):
        hub.load("toy", tmp_path)


def test_every_shipped_checkpoint_verifies_and_has_a_full_card():
    shipped = sorted(p.stem for p in hub.CHECKPOINT_DIR.glob("*.json"))
    for name in shipped:
        card = hub.card(name)
        for field in hub.CARD_FIELDS:
            assert card.get(field) not in (None, ""), f"{name}: card field {field} is empty"
        assert card["profile"] in ("ci", "cpu", "gpu")
        state = hub.load(name)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        model = hub.load_model(name)
        assert sum(p.numel() for p in model.parameters()) == card["parameters"]
        assert (hub.CHECKPOINT_DIR / f"{name}.pt").stat().st_size < 20 * 2**20, "keep checkpoints small"
    assert set(shipped) <= set(hub.available())


def test_cli_list(capsys):
    assert hub.main(["list"]) == 0
    assert "mlp_mnist" in capsys.readouterr().out
    assert "cores" in hub.hardware() or "CUDA" in hub.hardware()


def test_cli_retrain_rejects_zero_threads(capsys):
    with pytest.raises(SystemExit):
        hub.main(["retrain", hub.available()[0], "--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err
