import json
import os

import pytest
import torch

from companion import checkpoints as ck


def test_atomic_save_gives_the_file_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = ck.atomic_save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(1))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = ck.atomic_save({"x": torch.ones(2)}, tmp_path / "w.pt")
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        ck.atomic_save({"f": lambda: 0}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_stale_temporary_files_are_cleaned_up_on_the_next_save(tmp_path):
    stale = tmp_path / ".w.pt.abc123.tmp"
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.pt.x.tmp"
    other.write_bytes(b"not ours")
    ck.atomic_save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    assert not stale.exists() and other.exists()


def test_atomic_write_text(tmp_path):
    path = ck.atomic_write_text("héllo\n", tmp_path / "sub" / "card.json")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert [p.name for p in path.parent.iterdir()] == ["card.json"]


def test_save_and_load_state_round_trip_and_damaged_files(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "step": 7, "rows": [{"loss": 0.5}], "rng": torch.get_rng_state()}
    path = ck.save_state(tmp_path / "s.pt", state)
    back = ck.load_state(path)
    assert back["step"] == 7 and torch.equal(back["model"]["w"], state["model"]["w"])
    with pytest.raises(TypeError):
        ck.save_state(tmp_path / "t.pt", [1, 2])
    data = path.read_bytes()
    for damaged in (data[: len(data) // 3], b"\x00garbage" * 10, b""):
        path.write_bytes(damaged)
        with pytest.raises(ck.CheckpointError) as info:
            ck.load_state(path)
        message = str(info.value)
        assert str(path) in message and "delete it" in message
        assert "weights_only" not in message and "Errno" not in message
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_state(tmp_path / "missing.pt")
    torch.save([1, 2], path)
    with pytest.raises(ck.CheckpointError, match="not a dict"):
        ck.load_state(path)


def test_read_card_errors_name_the_file(tmp_path):
    card = tmp_path / "c.json"
    card.write_text('{"name": "x", "sha256": "ab"}')
    assert ck.read_card(card)["name"] == "x"
    for bad in ('{"name": "x", "sha', "\xff\xfe garbage", "[1, 2]", ""):
        card.write_text(bad, encoding="latin-1")
        with pytest.raises(ck.CheckpointError) as info:
            ck.read_card(card)
        assert str(card) in str(info.value)
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.read_card(tmp_path / "none.json")


def _ship(directory, name, state):
    weights = ck.atomic_save(state, directory / f"{name}.pt")
    ck.atomic_write_text(json.dumps({"name": name, "sha256": ck.sha256(weights)}), directory / f"{name}.json")
    return weights


def test_load_weights_checks_the_hash(tmp_path):
    weights = _ship(tmp_path, "toy", {"w": torch.ones(2, 2)})
    assert torch.equal(ck.load_weights("toy", tmp_path)["w"], torch.ones(2, 2))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ck.CheckpointError, match="sha256"):
        ck.load_weights("toy", tmp_path)
    with pytest.raises(ck.CheckpointError, match="no card"):
        ck.load_weights("other", tmp_path)
    weights.unlink()
    with pytest.raises(ck.CheckpointError, match="missing"):
        ck.load_weights("toy", tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    ck.atomic_write_text(json.dumps({"sha256": ck.sha256(tmp_path / "junk.pt")}), tmp_path / "junk.json")
    with pytest.raises(ck.CheckpointError, match="cannot be read"):
        ck.load_weights("junk", tmp_path)


def test_the_shipped_weights_load_and_verify():
    assert ck.WEIGHTS_DIR.is_dir()
    state = ck.load_weights("mlp_mnist")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert ck.sha256(ck.WEIGHTS_DIR / "mlp_mnist.pt") == ck.read_card(ck.WEIGHTS_DIR / "mlp_mnist.json")["sha256"]


# ----------------------------------------------------------------------------- float16 storage


def test_float16_storage_halves_the_file_and_loads_back_exactly(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64))
    full = ck.write_checkpoint("net", net.state_dict(), {"name": "net"}, tmp_path / "a")
    ck.round_to_storage(net, "float16")
    half = ck.write_checkpoint("net", net.state_dict(), {"name": "net"}, tmp_path / "b", storage="float16")
    assert half["storage"] == "float16" and "storage" not in full
    assert half["bytes"] < 0.6 * full["bytes"]
    stored = ck.load_weights("net", tmp_path / "b")
    assert stored["0.weight"].dtype == torch.float16
    assert stored["1.num_batches_tracked"].dtype == torch.int64  # integers are kept as they are
    back = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64))
    back.load_state_dict(stored)  # cast to the model's float32, without loss
    assert all(torch.equal(a, b) and a.dtype == torch.float32
               for a, b in zip(back.state_dict().values(), net.state_dict().values()) if a.is_floating_point())


def test_float16_storage_refuses_weights_it_would_change(tmp_path):
    net = torch.nn.Linear(8, 8)
    with pytest.raises(ck.CheckpointError, match="not exactly representable in float16.*round_to_storage"):
        ck.write_checkpoint("net", net.state_dict(), {"name": "net"}, tmp_path, storage="float16")
    assert not list(tmp_path.glob("*"))
    with pytest.raises(ValueError, match="storage must be one of"):
        ck.write_checkpoint("net", net.state_dict(), {"name": "net"}, tmp_path, storage="int8")


def test_every_shipped_checkpoint_is_small():
    cards = [ck.read_card(p) for p in sorted(ck.WEIGHTS_DIR.glob("*.json"))]
    sizes = {c["name"]: ck.weights_path(c["name"], card=c).stat().st_size for c in cards}
    assert all(size == c["bytes"] for c, size in zip(cards, sizes.values()))
    big = {n: s for n, s in sizes.items() if s > 5_000_000}
    assert not big, f"checkpoints over 5 MB: {big}"
    assert sum(sizes.values()) <= 40_000_000, f"the shipped checkpoints hold {sum(sizes.values()):,} bytes, over 40 MB"
    stray = {p.name for p in ck.WEIGHTS_DIR.glob("*.pt")} - {ck.weights_path(c["name"], card=c).name for c in cards}
    assert not stray, f"weights no card names: {stray}"
