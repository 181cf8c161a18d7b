import ast
import json
import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from companion import checkpoints, hub
from companion.profile import Profile
from companion.recipes import Recipe


def build_toy():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def make_train(value):
    def train_toy(profile: Profile):
        model = build_toy()
        with torch.no_grad():
            model.weight.fill_(value)
        return model, {"data": "none (toy)", "steps": 1, "metrics": {"loss": 0.25}, "description": "toy"}

    return train_toy


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A toy recipe, a tmp 'shipped' folder and a tmp user folder."""
    monkeypatch.setitem(hub.RECIPES, "toy", Recipe(build_toy, make_train(0.5), "00", "classifier"))
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", shipped)
    monkeypatch.setattr(hub, "WEIGHTS_DIR", shipped)
    monkeypatch.setattr(hub, "USER_DIR", user)
    return shipped, user


def set_train(monkeypatch, value):
    monkeypatch.setitem(hub.RECIPES, "toy", Recipe(build_toy, make_train(value), "00", "classifier"))


def weight_value(directory=None) -> float:
    w = hub.load_model("toy", directory).weight.detach()
    assert torch.all(w == w.flatten()[0]), "a checkpoint is all old or all new, never a mix"
    return float(w.flatten()[0])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- save and load


def test_retrain_writes_a_full_card_and_loads(toy, capsys):
    shipped, _ = toy
    card = hub.retrain("toy", profile="ci")
    for field in hub.CARD_FIELDS:
        assert card.get(field) not in (None, ""), field
    assert card["torch_version"] == torch.__version__ and card["profile"] == "ci" and card["family"] == "classifier"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", card["created"])
    assert json.loads((shipped / "toy.json").read_text()) == card
    weights, card_path = hub.paths("toy")
    assert card_path == shipped / "toy.json" and weights.name == card["weights"]
    assert checkpoints.sha256(weights) == card["sha256"] and weights.stat().st_size == card["bytes"]
    model = hub.load_model("toy")
    assert not model.training and weight_value() == 0.5
    assert sorted(p.name for p in shipped.iterdir()) == sorted([card["weights"], "toy.json"])
    assert "the shipped folder" in capsys.readouterr().out


def test_tampered_file_is_refused(toy):
    hub.retrain("toy", profile="ci", quiet=True)
    weights, _ = hub.paths("toy")
    torch.save({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, weights)
    with pytest.raises(hub.CheckpointError, match="sha256"):
        hub.load_model("toy")


def test_missing_and_unknown(toy):
    with pytest.raises(hub.CheckpointError, match="unknown checkpoint 'nope'.*available"):
        hub.load_model("nope")
    with pytest.raises(hub.CheckpointError, match="no card"):
        hub.load_model("toy")
    hub.retrain("toy", profile="ci", quiet=True)
    hub.paths("toy")[0].unlink()
    with pytest.raises(hub.CheckpointError, match="missing"):
        hub.load_model("toy")


def test_truncated_card_names_the_file(toy):
    shipped, _ = toy
    hub.retrain("toy", profile="ci", quiet=True)
    text = (shipped / "toy.json").read_text()
    (shipped / "toy.json").write_text(text[: len(text) // 2])
    with pytest.raises(hub.CheckpointError, match=re.escape(str(shipped / "toy.json")) + ".*not valid JSON"):
        hub.load_model("toy")
    with pytest.raises(hub.CheckpointError, match="toy.json"):
        hub.card("toy")
    (shipped / "toy.json").write_text("[1, 2]")
    with pytest.raises(hub.CheckpointError, match="toy.json.*not a JSON object"):
        checkpoints.read_card(shipped / "toy.json")


def test_weights_only_load_refuses_code(toy):
    shipped, _ = toy

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    hub.retrain("toy", profile="ci", quiet=True)
    weights, card_path = hub.paths("toy")
    torch.save({"x": Evil()}, weights)
    card = json.loads(card_path.read_text())
    card["sha256"] = checkpoints.sha256(weights)
    card_path.write_text(json.dumps(card))
    with pytest.raises(hub.CheckpointError, match="weights_only"):
        hub.load_model("toy")


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    checkpoints.atomic_write_text("hello", tmp_path / "a.txt")
    checkpoints.atomic_save({"x": torch.ones(2)}, tmp_path / "b.pt")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True)["x"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.pt"]


# ----------------------------------------------------------------------------- a save interrupted at every step


class Boom(Exception):
    """The failure a test injects."""


STEPS = [(os, "replace"), (os, "fsync"), (torch, "save"), (checkpoints, "atomic_write_text"),
         (checkpoints, "_atomic_write_bytes"), (checkpoints, "_stale_files"), (Path, "unlink")]


def inject(monkeypatch, at: int, action) -> list[str]:
    """Make the ``at``-th call of any step in :data:`STEPS` run ``action`` (raise, or exit the process)."""
    calls: list[str] = []
    for owner, attr in STEPS:
        original, name = getattr(owner, attr), f"{owner.__name__}.{attr}"

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            if len(calls) == at:
                action()
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, attr, wrapper)
    return calls


def test_a_failure_at_any_step_of_a_save_leaves_a_loadable_checkpoint(toy, monkeypatch):
    shipped, _ = toy
    at = 1
    while True:
        set_train(monkeypatch, 0.5)
        hub.retrain("toy", profile="ci", quiet=True)  # the old checkpoint (this save also cleans up after the last)
        assert weight_value() == 0.5 and len(list(shipped.iterdir())) == 2
        set_train(monkeypatch, 0.25)
        with monkeypatch.context() as m:
            calls = inject(m, at, lambda: (_ for _ in ()).throw(Boom()))
            try:
                hub.retrain("toy", profile="ci", quiet=True)
                failed = False
            except Boom:
                failed = True
        assert weight_value() in (0.5, 0.25), f"step {at} ({calls[at - 1] if failed else ''})"
        assert leftovers(shipped) == [], f"temporary files after a failure at step {at}"
        if not failed:
            assert weight_value() == 0.25
            break
        at += 1
    assert at > 6, f"only {at - 1} steps were interrupted: the injection does not reach the save"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_kill_at_any_step_of_a_save_leaves_a_loadable_checkpoint(toy, monkeypatch):
    shipped, _ = toy
    hub.retrain("toy", profile="ci", quiet=True)
    at, seen = 1, set()
    while True:
        pid = os.fork()
        if pid == 0:  # the child saves new weights and is killed (os._exit: no cleanup runs) at step `at`
            try:
                set_train(monkeypatch, 0.25)
                inject(monkeypatch, at, lambda: os._exit(17))
                hub.retrain("toy", profile="ci", quiet=True)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.waitstatus_to_exitcode(status) == 17
        value = weight_value()
        assert value in (0.5, 0.25), f"killed at step {at}"
        seen.add(value)
        hub.retrain("toy", profile="ci", quiet=True)  # the next save (old weights again) cleans up after the kill
        assert weight_value() == 0.5 and leftovers(shipped) == [] and len(list(shipped.iterdir())) == 2
        if not killed:
            break
        at += 1
    assert seen == {0.5, 0.25} and at > 4


# ----------------------------------------------------------------------------- retrain: where it writes


def test_retrain_keeps_a_shipped_checkpoint_of_a_larger_profile(toy, monkeypatch, capsys):
    shipped, user = toy
    hub.retrain("toy", profile="cpu", quiet=True)
    set_train(monkeypatch, 0.25)
    card = hub.retrain("toy", profile="ci")
    out = capsys.readouterr().out
    assert str(user) in out and "--force" in out
    assert hub.card("toy")["profile"] == "cpu" and weight_value() == 0.5  # load_model keeps the shipped one
    assert hub.card("toy", user) == card and weight_value(user) == 0.25
    hub.retrain("toy", profile="cpu", quiet=True)  # an equal profile replaces it
    assert weight_value() == 0.25
    set_train(monkeypatch, 0.125)
    hub.retrain("toy", profile="ci", force=True, quiet=True)
    assert hub.card("toy")["profile"] == "ci" and weight_value() == 0.125
    elsewhere = shipped.parent / "elsewhere"
    assert hub.main(["retrain", "toy", "--profile", "ci", "--out", str(elsewhere)]) == 0
    assert str(elsewhere) in capsys.readouterr().out and weight_value(elsewhere) == 0.125


def test_cli_retrain_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        hub.main(["retrain", hub.available()[0], "--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        hub.main(["retrain", hub.available()[0], "--profile", "tpu"])


# ----------------------------------------------------------------------------- verify and list


def test_verify_prints_one_line_each_and_fails_without_a_traceback(toy, monkeypatch, capsys):
    shipped, _ = toy
    hub.retrain("toy", profile="ci", quiet=True)
    monkeypatch.setitem(hub.RECIPES, "toy2", Recipe(build_toy, make_train(0.5), "00", "classifier"))
    hub.retrain("toy2", profile="ci", quiet=True)
    hub.paths("toy2")[0].write_bytes(b"garbage")
    (shipped / "orphan.json").write_text("{}")
    results = hub.verify(shipped)
    assert results["toy"] is None and "sha256" in results["toy2"] and "no recipe" in results["orphan"]
    assert "no card" in results["mlp_mnist"]
    assert hub.main(["verify", "--dir", str(shipped)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert "toy: ok" in lines and any(line.startswith("toy2: FAIL") for line in lines)
    assert len(lines) == len(results) + 1 and "Traceback" not in "".join(lines)


def test_every_shipped_checkpoint_verifies(capsys):
    assert hub.verify() == {n: None for n in hub.available()}
    assert hub.main(["verify"]) == 0
    assert capsys.readouterr().out.count(": ok") == len(hub.available())
    for name in hub.available():
        assert hub.paths(name)[0].stat().st_size < 20 * 2**20, "keep checkpoints small"


def test_cli_list(capsys):
    assert hub.main(["list"]) == 0
    assert "mlp_mnist" in capsys.readouterr().out
    assert "cores" in hub.hardware() or "CUDA" in hub.hardware()


def test_the_package_runs_on_python_3_10():
    """No ``datetime.UTC`` (3.11+): ``datetime.timezone.utc`` works everywhere."""
    root = Path(hub.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            assert not (isinstance(node, ast.Attribute) and node.attr == "UTC"), f"{path}:{node.lineno}"
            if isinstance(node, ast.ImportFrom) and node.module == "datetime":
                assert "UTC" not in {a.name for a in node.names}, f"{path}:{node.lineno}"
