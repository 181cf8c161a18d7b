"""companion.optim against torch.optim: parameter trajectories, schedulers, schedules, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from companion import optim

DTYPE = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)
STEPS = 20


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(DTYPE)


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=g, dtype=DTYPE), torch.randn(16, 3, generator=g, dtype=DTYPE)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def _groups(model: nn.Module, group_kwargs: list[dict] | None):
    if group_kwargs is None:
        return model.parameters()
    first, last = model[0], model[2]
    return [
        {"params": first.parameters(), **group_kwargs[0]},
        {"params": last.parameters(), **group_kwargs[1]},
    ]


def _run_pair(ours_cls, ref_cls, kwargs: dict, group_kwargs=None, use_closure=False, scheduler=None):
    """Train two copies of the same model side by side, checking parameters after every step."""
    model_ours = _model()
    model_ref = copy.deepcopy(model_ours)
    opt_ours = ours_cls(_groups(model_ours, group_kwargs), **kwargs)
    opt_ref = ref_cls(_groups(model_ref, group_kwargs), **kwargs)
    sched_ours = scheduler(opt_ours) if scheduler else None
    sched_ref = scheduler(opt_ref) if scheduler else None
    x, y = _data()
    for _ in range(STEPS):
        losses = []
        for model, opt in ((model_ours, opt_ours), (model_ref, opt_ref)):

            def closure(model=model, opt=opt):
                opt.zero_grad()
                loss = _loss(model, x, y)
                loss.backward()
                return loss

            if use_closure:
                losses.append(opt.step(closure))
            else:
                losses.append(closure())
                opt.step()
        torch.testing.assert_close(losses[0], losses[1], **TOL)
        for p_ours, p_ref in zip(model_ours.parameters(), model_ref.parameters()):
            torch.testing.assert_close(p_ours, p_ref, **TOL)
        if scheduler:
            sched_ours.step()
            sched_ref.step()
            assert sched_ours.get_last_lr() == pytest.approx(sched_ref.get_last_lr(), rel=1e-12)
    return model_ours, opt_ours


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
]
ADAM_CASES = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True, weight_decay=0.05),
]


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_trajectory(kwargs):
    _run_pair(optim.SGD, torch.optim.SGD, kwargs)


@pytest.mark.parametrize("kwargs", ADAM_CASES)
def test_adam_trajectory(kwargs):
    _run_pair(optim.Adam, torch.optim.Adam, kwargs)


@pytest.mark.parametrize("kwargs", ADAM_CASES + [dict(lr=0.02, weight_decay=0.5)])
def test_adamw_trajectory(kwargs):
    _run_pair(optim.AdamW, torch.optim.AdamW, kwargs)


def test_param_groups_and_closure():
    groups = [dict(lr=0.2, momentum=0.5), dict(weight_decay=0.1, nesterov=True, momentum=0.9)]
    _run_pair(optim.SGD, torch.optim.SGD, dict(lr=0.05), group_kwargs=groups, use_closure=True)
    groups = [dict(lr=0.03, betas=(0.5, 0.9)), dict(amsgrad=True, weight_decay=0.2)]
    _run_pair(optim.Adam, torch.optim.Adam, dict(lr=0.01), group_kwargs=groups, use_closure=True)
    _run_pair(optim.AdamW, torch.optim.AdamW, dict(lr=0.01), group_kwargs=groups, use_closure=True)


def test_works_with_torch_lr_schedulers():
    step_lr = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    _run_pair(optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9), scheduler=step_lr)
    # OneCycleLR also cycles the momentum (SGD's momentum, Adam's beta1)
    cycle = lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=STEPS)
    _run_pair(optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9), scheduler=cycle)
    _run_pair(optim.AdamW, torch.optim.AdamW, dict(lr=0.01), scheduler=cycle)


def test_state_dict_round_trip_and_from_torch():
    """Our state_dict reloads into ours; torch.optim.Adam's state_dict loads into ours too."""
    model, opt = _run_pair(optim.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True))
    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=0.01, amsgrad=True)
    x, y = _data()
    for _ in range(3):  # give torch's optimiser some state of its own
        ref_opt.zero_grad()
        _loss(ref_model, x, y).backward()
        ref_opt.step()
    pairs = []
    for source_model, source_opt in ((model, opt), (ref_model, ref_opt)):
        clone_model = copy.deepcopy(source_model)
        clone_opt = optim.Adam(clone_model.parameters(), lr=0.01, amsgrad=True)
        # deepcopy: load_state_dict keeps references to the tensors it is given
        clone_opt.load_state_dict(copy.deepcopy(source_opt.state_dict()))
        pairs.append(((source_model, source_opt), (clone_model, clone_opt)))
    for (m, o), (cm, co) in pairs:
        for model_, opt_ in ((m, o), (cm, co)):
            opt_.zero_grad()
            _loss(model_, x, y).backward()
            opt_.step()
        for a, b in zip(m.parameters(), cm.parameters()):
            torch.testing.assert_close(a, b, **TOL)


def test_argument_validation():
    params = [nn.Parameter(torch.zeros(2))]
    for cls in (optim.SGD, optim.Adam, optim.AdamW):
        with pytest.raises(ValueError, match="learning rate"):
            cls(params, lr=-0.1)
        with pytest.raises(ValueError, match="weight_decay"):
            cls(params, lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)  # momentum 0
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(params, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="epsilon"):
        optim.AdamW(params, eps=-1e-8)


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total_steps,max_lr,pct_start,div_factor,final_div_factor",
    [(100, 0.1, 0.3, 25.0, 1e4), (37, 3e-3, 0.25, 10.0, 100.0), (20, 1.0, 0.5, 5.0, 1e3)],
)
def test_one_cycle_matches_torch(total_steps, max_lr, pct_start, div_factor, final_div_factor):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    kw = dict(pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=total_steps, anneal_strategy="cos", three_phase=False, **kw
    )
    for step in range(total_steps):
        assert optim.one_cycle(step, total_steps, max_lr, **kw) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-12
        )
        opt.step()
        sched.step()
    assert optim.one_cycle(total_steps - 1, total_steps, max_lr, **kw) == pytest.approx(
        max_lr / div_factor / final_div_factor
    )


def test_warmup_cosine_shape():
    total, warmup, base, floor = 100, 10, 0.5, 0.01
    lrs = [optim.warmup_cosine(t, total, warmup, base, floor) for t in range(total + 5)]
    assert lrs[0] == pytest.approx(base / warmup)
    assert lrs[warmup - 1] == pytest.approx(base)  # warm-up ends at the peak
    assert lrs[warmup] == pytest.approx(base)  # decay starts from the peak
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup]))  # rising
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))  # then falling
    mid = warmup + (total - warmup) // 2
    assert lrs[mid] == pytest.approx(floor + (base - floor) / 2)
    assert all(lr == floor for lr in lrs[total:])
    assert optim.warmup_cosine(0, 10, 0, 1.0) == 1.0  # no warm-up
    expected = 0.5 * (1 + math.cos(math.pi * 3 / 10))
    assert optim.warmup_cosine(3, 10, 0, 1.0) == pytest.approx(expected)


def test_schedule_errors():
    with pytest.raises(ValueError):
        optim.warmup_cosine(0, 10, 11, 1.0)
    with pytest.raises(ValueError):
        optim.warmup_cosine(-1, 10, 2, 1.0)
    with pytest.raises(ValueError):
        optim.one_cycle(11, 10, 1.0)


def test_lambda_schedule_sets_the_learning_rate():
    model = _model()
    opt = optim.AdamW(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5}], lr=1e-3
    )
    fn = lambda t: optim.warmup_cosine(t, 30, 5, 3e-3, 1e-5)
    sched = optim.lambda_schedule(opt, fn)
    x, y = _data()
    for step in range(30):
        for group in opt.param_groups:
            assert group["lr"] == pytest.approx(fn(step), rel=1e-12)
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
        sched.step()
