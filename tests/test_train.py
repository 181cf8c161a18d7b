import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion import train


def _problem(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def _loss(model, batch):
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean().item()}


def _run(tmp_path=None, epochs=3, resume=False, seed=0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_problem(), batch_size=32)  # fixed order: resume must replay it exactly
    ev = DataLoader(_problem(128, seed=1), batch_size=64)
    ckpt = tmp_path / "run.pt" if tmp_path else None
    hist = train.fit(model, loader, _loss, opt, epochs=epochs, seed=seed, log_every=2, progress=False,
                     eval_fn=lambda m: {"acc": train.accuracy(m, ev)}, checkpoint=ckpt, resume=resume)
    return model, hist


def test_fit_learns_and_records_history():
    model, hist = _run()
    steps, losses = hist.series("loss")
    assert steps == sorted(steps) and len(losses) > 5
    assert losses[-1] < losses[0]
    assert hist.last("acc") > 0.85
    assert [r["epoch"] for r in hist.eval] == [1, 2, 3]
    with pytest.raises(KeyError, match="known"):
        hist.series("nope")
    with pytest.raises(ValueError, match="split"):
        hist.series("loss", "valid")


def test_fit_is_repeatable_with_a_seed():
    m1, h1 = _run()
    m2, h2 = _run()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert h1.series("loss") == h2.series("loss")


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    full, _ = _run(epochs=3)
    _run(tmp_path, epochs=1)
    resumed, hist = _run(tmp_path, epochs=3, resume=True, seed=None)
    assert [r["epoch"] for r in hist.eval] == [1, 2, 3]
    assert not list(tmp_path.glob("*.tmp"))
    # same weights as the uninterrupted run up to float noise (optimiser state and rng restored)
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_max_steps_and_bad_args():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_problem(), batch_size=8)
    hist = train.fit(model, loader, _loss, opt, epochs=5, max_steps=7, progress=False, log_every=1)
    assert hist.train[-1]["step"] == 7
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, loader, _loss, opt, epochs=0)


def test_non_finite_loss_names_the_step():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_problem(), batch_size=8)
    with pytest.raises(ValueError, match="at step 0"):
        train.fit(model, loader, lambda m, b: m(b[0]).sum() * float("nan"), opt, progress=False)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "missing.pt", nn.Linear(2, 2))
    torch.save({"foo": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a companion.train checkpoint"):
        train.load_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2))


def test_accuracy_predict_count_smooth():
    model = nn.Linear(4, 2)
    ds = _problem(50)
    assert 0 <= train.accuracy(model, DataLoader(ds, batch_size=7)) <= 1
    assert train.predict(model, ds.tensors[0], batch_size=7).shape == (50, 2)
    assert train.count_parameters(model) == 10
    assert train.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert train.smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
    with pytest.raises(ValueError):
        train.smooth([1.0], 1.0)
    with pytest.raises(ValueError, match="empty"):
        train.accuracy(model, [])


def test_divergence_keeps_the_history_logged_so_far():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_problem(), batch_size=8)
    calls = []

    def loss_fn(m, b):
        calls.append(1)
        out = m(b[0]).pow(2).mean()
        return out * float("nan") if len(calls) == 4 else out

    with pytest.raises(train.DivergenceError, match="at step 3") as info:
        train.fit(model, loader, loss_fn, opt, epochs=3, progress=False, log_every=1)
    assert [row["step"] for row in info.value.history.train] == [1, 2, 3]


def test_atomic_save_gives_the_file_normal_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        path = train.atomic_save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
