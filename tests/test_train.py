import math

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
    for a, b in zip(full.parameters(), resumed.parameters()):  # bit for bit: optimiser state and rng restored
        assert torch.equal(a, b)


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


# ---------------------------------------------------------------------------------------------- exact resume


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))


SCHEDULERS = {
    "onecycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=48),
    "cosine": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / 48))),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5),
}


def _resumable(sched="onecycle", *, max_steps=None, ckpt=None, resume=False, generator=True, ema=None,
               patience=None, checkpoint_every=None, crash_at=None, aug=True, interval="step"):
    """6 epochs x 8 shuffled batches of a net with dropout, a scheduler and a random augmentation."""
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = SCHEDULERS[sched](opt)
    g = torch.Generator().manual_seed(7) if generator else None
    loader = DataLoader(_problem(), batch_size=32, shuffle=True, generator=g)
    noise = torch.Generator().manual_seed(8)
    ev = DataLoader(_problem(64, seed=1), batch_size=64)

    def loss_fn(m, batch):
        x, y = batch
        if aug:
            x = x + 0.1 * torch.randn(x.shape, generator=noise)
        return nn.functional.cross_entropy(m(x), y)

    def on_step(step, m):
        if crash_at is not None and step == crash_at:
            raise KeyboardInterrupt("simulated crash")

    hist = train.fit(model, loader, loss_fn, opt, epochs=6, seed=0, scheduler=sched, scheduler_interval=interval,
                     max_steps=max_steps, checkpoint=ckpt, resume=resume, generators=[noise], ema=ema,
                     patience=patience, monitor="val_loss" if patience else None,
                     eval_fn=lambda m: {"val_loss": -train.accuracy(m, ev), "acc": train.accuracy(m, ev)},
                     on_step=on_step, checkpoint_every=checkpoint_every, progress=False, log_every=1)
    return model, hist, sched, opt


def _same(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
@pytest.mark.parametrize("stop", [11, 16])  # mid-epoch (8 batches per epoch) and at an epoch boundary
def test_resume_equals_an_uninterrupted_run(tmp_path, sched, stop):
    full, h_full, s_full, _ = _resumable(sched)
    ckpt = tmp_path / "run.pt"
    part, h_part, _, _ = _resumable(sched, max_steps=stop, ckpt=ckpt)
    assert h_part.train[-1]["step"] == stop
    state = torch.load(ckpt, weights_only=True)
    assert (state["epoch"], state["batch"]) == divmod(stop, 8)  # a mid-epoch stop leaves the epoch unfinished
    resumed, h_res, s_res, _ = _resumable(sched, ckpt=ckpt, resume=True)
    _same(full, resumed)
    assert s_full.state_dict() == s_res.state_dict()
    strip = lambda h: [{k: v for k, v in r.items() if k != "wall_s"} for r in h.train[:-1]]  # noqa: E731
    assert strip(h_full) == strip(h_res)
    assert h_full.eval == h_res.eval
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("options", [dict(generator=False), dict(interval="epoch", sched="step"),
                                     dict(ema=0.9, patience=2)])
def test_resume_is_exact_with_global_shuffling_epoch_schedules_ema_and_patience(tmp_path, options):
    full, h_full, _, _ = _resumable(**options)
    _resumable(max_steps=13, ckpt=tmp_path / "r.pt", **options)
    resumed, h_res, _, _ = _resumable(ckpt=tmp_path / "r.pt", resume=True, **options)
    _same(full, resumed)
    assert h_full.eval == h_res.eval
    if options.get("patience"):
        assert h_full.train[-1]["best_epoch"] == h_res.train[-1]["best_epoch"] >= 1


def test_checkpoint_every_survives_a_crash_mid_epoch(tmp_path):
    full, _, _, _ = _resumable()
    with pytest.raises(KeyboardInterrupt):
        _resumable(ckpt=tmp_path / "r.pt", checkpoint_every=5, crash_at=23)
    state = torch.load(tmp_path / "r.pt", weights_only=True)
    assert state["step"] == 20 and (state["epoch"], state["batch"]) == (2, 4)
    resumed, _, _, _ = _resumable(ckpt=tmp_path / "r.pt", resume=True, checkpoint_every=5)
    _same(full, resumed)


def test_ema_holds_the_average_and_patience_restores_the_best():
    model, hist, _, _ = _resumable(ema=0.5, aug=False)
    assert "best_epoch" not in hist.train[-1]
    m2, h2, _, _ = _resumable(ema=0.5, aug=False, patience=1)
    best = max(r["acc"] for r in h2.eval)
    assert h2.train[-1]["best_epoch"] == next(r["epoch"] for r in h2.eval if r["acc"] == best)
    assert len(h2.eval) < 6 or h2.train[-1]["best_epoch"] <= 6
    ev = DataLoader(_problem(64, seed=1), batch_size=64)
    assert train.accuracy(m2, ev) == best  # the model holds the best (averaged) weights


def test_resume_from_a_damaged_checkpoint_says_what_to_do(tmp_path):
    from companion.checkpoints import CheckpointError

    ckpt = tmp_path / "r.pt"
    _resumable(max_steps=5, ckpt=ckpt)
    data = ckpt.read_bytes()
    for damaged in (data[: len(data) // 2], b"not a checkpoint at all"):
        ckpt.write_bytes(damaged)
        with pytest.raises(CheckpointError) as info:
            _resumable(ckpt=ckpt, resume=True)
        message = str(info.value)
        assert str(ckpt) in message and "delete it" in message
        assert "weights_only" not in message and "Errno" not in message
    torch.save({"foo": 1}, ckpt)
    with pytest.raises(CheckpointError, match="not a companion.train checkpoint"):
        _resumable(ckpt=ckpt, resume=True)


def test_on_step_sees_every_step_before_it_runs():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    train.fit(model, DataLoader(_problem(64), batch_size=16), _loss, opt, epochs=2, progress=False,
              on_step=lambda s, m: seen.append(s))
    assert seen == list(range(8))
    with pytest.raises(ValueError, match="patience"):
        train.fit(model, DataLoader(_problem(64), batch_size=16), _loss, opt, patience=2, progress=False)


def test_train_model_and_evaluate_classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    hist = train.train_model(model, _problem(), _loss, steps=40, batch_size=32, lr=0.05, optimizer="sgd",
                             schedule="warmup_cosine", warmup=5, progress=False)
    assert hist.train[-1]["step"] == 40
    metrics = train.evaluate_classifier(model, _problem(128, seed=1))
    assert metrics["accuracy"] > 0.85 and metrics["loss"] < 0.5
    with pytest.raises(ValueError, match="steps or epochs"):
        train.train_model(model, _problem(), _loss)
    with pytest.raises(ValueError, match="schedule"):
        train.train_model(model, _problem(), _loss, steps=1, schedule="linear")
    with pytest.raises(ValueError, match="optimizer"):
        train.train_model(model, _problem(), _loss, steps=1, optimizer="lion")
    with pytest.raises(ValueError, match="empty"):
        train.evaluate_classifier(model, TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))


def test_train_classifier_returns_none_without_test_and_checks_its_arguments():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    hist, acc = train.train_classifier(model, _problem(), steps=10, batch_size=32, progress=False)
    assert acc is None and hist.train[-1]["step"] == 10
    with pytest.raises(ValueError, match="epochs or steps"):
        train.train_classifier(model, _problem())
    with pytest.raises(ValueError, match="steps"):
        train.train_classifier(model, _problem(), steps=0)
    with pytest.raises(ValueError, match="eval_every"):
        train.train_classifier(model, _problem(), _problem(), epochs=1, eval_every=0)


def test_train_classifier_resumes_exactly_with_augmentation_and_evaluation(tmp_path):
    calls = []

    def shift(x, generator=None, crash_at=None):
        calls.append(1)
        if len(calls) == crash_at:
            raise KeyboardInterrupt("simulated crash")
        return x + 0.05 * torch.randn(x.shape, generator=generator)

    def run(crash_at=None, **kw):
        calls.clear()
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
        hist, acc = train.train_classifier(model, _problem(), _problem(64, seed=1), epochs=4, batch_size=48,
                                           augment=lambda x, generator: shift(x, generator, crash_at),
                                           eval_every=2, progress=False, **kw)
        return model, hist, acc

    full, h_full, acc_full = run()
    with pytest.raises(KeyboardInterrupt):  # 6 batches per epoch: the last checkpoint is mid-epoch 3, step 14
        run(crash_at=17, checkpoint=tmp_path / "c.pt", checkpoint_every=7)
    resumed, h_res, acc_res = run(checkpoint=tmp_path / "c.pt", resume=True, checkpoint_every=7)
    _same(full, resumed)
    assert acc_full == acc_res and h_full.eval == h_res.eval
    assert [r["epoch"] for r in h_res.eval if "test_accuracy" in r] == [2, 4]
