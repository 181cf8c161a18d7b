"""Two processes with gloo train to the same weights as one process on the same global batches."""

import subprocess
import sys
import textwrap

import pytest
import torch

from companion.train import TensorBatches, distributed, fit

SCRIPT = textwrap.dedent('''
    import sys, torch
    from torch import nn
    from companion.train import TensorBatches, distributed, fit
    torch.set_num_threads(1)
    assert distributed.init_from_env()
    rank, size = distributed.world()
    x, y = {data}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = TensorBatches(torch.arange(len(x)), batch_size={batch}, seed=0)
    loss = lambda m, b: nn.functional.cross_entropy(m(x[b[0]]), y[b[0]])
    h = fit(model, loader, loss, opt, epochs=2, progress=False, seed=0)
    if rank == 0:
        torch.save({{"state": model.state_dict(), "loss": h.series("loss")[1]}}, sys.argv[1])
''')


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g)


def _single(batch):
    x, y = _data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = TensorBatches(torch.arange(len(x)), batch_size=batch, seed=0)
    h = fit(model, loader, lambda m, b: torch.nn.functional.cross_entropy(m(x[b[0]]), y[b[0]]), opt, epochs=2,
            progress=False, seed=0)
    return model.state_dict(), h.series("loss")[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(data="(lambda g: (torch.randn(48, 6, generator=g), "
                                         "torch.randint(0, 3, (48,), generator=g)))(torch.Generator().manual_seed(1))",
                                    batch=8))
    out = tmp_path / "ddp.pt"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                          str(script), str(out)], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    ddp = torch.load(out, weights_only=True)
    single, single_loss = _single(batch=8)
    # 12 Adam steps; gradients are averaged by an all-reduce in another order than one process sums them, so
    # the weights agree to float32 round-off, not bit for bit
    for k, v in single.items():
        assert torch.allclose(ddp["state"][k], v, rtol=1e-5, atol=1e-6), k
    assert ddp["loss"] == pytest.approx(single_loss, rel=1e-5, abs=1e-6)


def test_shard_takes_every_nth_row_and_refuses_uneven_batches():
    x = torch.arange(12).view(6, 2)
    a, b = distributed.shard((x, {"y": torch.arange(6)}), 0, 2), distributed.shard((x, {"y": torch.arange(6)}), 1, 2)
    assert torch.equal(torch.cat([a[0], b[0]]).sort(0).values, x)
    assert a[1]["y"].tolist() == [0, 2, 4] and b[1]["y"].tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="cannot be split evenly over 4 processes"):
        distributed.shard(x, 0, 4)


def test_without_a_process_group_nothing_changes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world() == (0, 1) and distributed.is_main() and distributed.init_from_env() is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.init_from_env()


def test_precision_is_checked_and_bf16_trains():
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = TensorBatches(torch.randn(16, 4), batch_size=4)
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        fit(model, loader, lambda m, b: m(b[0]).pow(2).mean(), opt, precision="fp16", progress=False)
    h = fit(model, loader, lambda m, b: m(b[0]).float().pow(2).mean(), opt, precision="bf16", progress=False)
    assert all(torch.isfinite(torch.tensor(v)) for v in h.series("loss")[1])
    assert next(model.parameters()).dtype == torch.float32
