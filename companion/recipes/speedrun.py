"""Recipe of the laptop speed-run (chapter 19): ``speedrun_mnist``, a class-conditional generator trained from
scratch inside a wall-clock budget, and the evaluation protocol its result is judged by.

The budget is spent in two phases, the autoencoder (:data:`CODEC_SHARE` of it) and then the latent flow.
Each phase first times a few steps (:func:`calibrate`) and turns its share of the budget into a fixed step
count, so that the learning-rate schedule knows its length and a run retrained with the recorded step counts
(``codec_steps=``, ``flow_steps=``) repeats the same arithmetic. The protocol (:func:`evaluate`): ``N = 2000``
samples, 200 per class, against the held-out MNIST-test[8000:], with FLD in chapter 13's features, the floor
(2,000 random training images against the same held-out images), and class agreement by ``lenet_mnist``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import data, evaluation
from ..checkpoints import round_to_storage
from ..profile import Profile, seed_everything
from ..speedrun import LatentFlow, SpeedrunConfig
from ..train import History, TensorBatches, train_model
from ._common import card_info, shipped_sha256
from .flow_matching import class_agreement

#: the generator
CONFIG = SpeedrunConfig()
#: seconds of training per profile: everything from the first step to the last, calibration included
BUDGET = {"ci": 4.0, "cpu": 600.0, "gpu": 600.0}
#: the share of the budget the autoencoder gets, and the share of a phase's remaining time its steps are sized to
#: (the rest covers the weight average, logging and encoding the training set)
CODEC_SHARE = 0.2
SAFETY = 0.93
CODEC_BATCH, CODEC_LR = 128, 2e-3
BATCH, LR, EMA, WARMUP = 256, 1e-3, 0.999, 100
#: how the weights are stored (2.2 M parameters: 4.3 MB in float16, over 5 MB in float32)
STORAGE = "float16"
#: the card's sampler
SAMPLER, STEPS, GUIDANCE = "heun", 10, 1.5
#: the evaluation: samples (balanced over the ten classes), the noise seed, the floor's draw of training images
EVAL_N = {"ci": 100, "cpu": 2000, "gpu": 2000}
NOISE_SEED, FLOOR_SEED = 1234, 0


def build_speedrun_mnist() -> LatentFlow:
    """The untrained model of checkpoint ``speedrun_mnist`` (seed 0). Introduced in chapter 19."""
    torch.manual_seed(0)
    return LatentFlow(CONFIG)


def calibrate(step: Any, n: int = 8) -> float:
    """Seconds per call of ``step()``, the median of ``n`` calls after two warm-up calls."""
    for _ in range(2):
        step()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def _steps_for(seconds: float, per_step: float, minimum: int = 2) -> int:
    return max(minimum, int(seconds / per_step))


def fit_speedrun(model: LatentFlow, images: torch.Tensor, labels: torch.Tensor, *, budget: float | None = None,
                 codec_steps: int | None = None, flow_steps: int | None = None, seed: int = 0,
                 ema: float | None = EMA, progress: bool = True) -> dict[str, Any]:
    """Train ``model`` on ``images [N, 1, 28, 28]`` in ``[0, 1]`` with ``labels [N]``: codec, scale, then the flow.

    With ``budget`` (seconds) each phase's step count comes from timing a few of its steps; with
    ``codec_steps``/``flow_steps`` they are fixed. Returns the step counts, the phases' seconds, the latent
    scale and both loss histories.
    """
    if budget is None and (codec_steps is None or flow_steps is None):
        raise ValueError("fit_speedrun: give budget= (seconds) or both codec_steps= and flow_steps=")
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed + 1)
    x, y = images.float(), labels.long()
    index = torch.arange(len(x))

    def codec_loss(m: LatentFlow, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return m.codec_loss(x[batch[0]], g)

    if not model.config.latent:  # the ablation on pixels: no codec to train
        codec_steps = 0
    if codec_steps is None:
        probe = torch.optim.Adam(model.codec.parameters(), lr=0.0)  # lr 0: timing only, weights unchanged
        sample_idx = torch.arange(CODEC_BATCH)

        def one() -> None:
            probe.zero_grad()
            codec_loss(model, (sample_idx,)).backward()
            probe.step()
        per = calibrate(one)
        codec_steps = _steps_for(SAFETY * (budget * CODEC_SHARE - (time.perf_counter() - started)), per)
    codec_history = None
    if codec_steps:
        codec_history = train_model(model.codec, TensorBatches(index, CODEC_BATCH, seed),
                                    lambda _, b: codec_loss(model, b), steps=codec_steps, lr=CODEC_LR,
                                    schedule="cosine", generators=(g,), seed=seed, progress=progress,
                                    desc="speed-run · autoencoder", log_every=20)
    codec_s = time.perf_counter() - started
    model.codec.eval()
    shift, scale = model.codec.fit_scale(x)
    with torch.no_grad():
        z = torch.cat([model.encode(xb) for xb in x.split(1000)])

    def flow_loss(m: LatentFlow, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return model.loss(z[batch[0]], y[batch[0]], g)

    if flow_steps is None:
        probe = torch.optim.Adam(model.velocity_net.parameters(), lr=0.0)
        sample_idx = torch.arange(BATCH)

        def one() -> None:
            probe.zero_grad()
            flow_loss(model, (sample_idx,)).backward()
            probe.step()
        per = calibrate(one)
        flow_steps = _steps_for(SAFETY * (budget - (time.perf_counter() - started)), per)
    flow_history = train_model(model.velocity_net, TensorBatches(index, BATCH, seed), flow_loss, steps=flow_steps,
                               lr=LR, schedule="warmup_cosine", warmup=min(WARMUP, flow_steps // 10), ema=ema,
                               generators=(g,), seed=seed, progress=progress, desc="speed-run · latent flow",
                               log_every=20)
    model.eval()
    return {"codec_steps": int(codec_steps), "flow_steps": int(flow_steps), "codec_seconds": codec_s,
            "seconds": time.perf_counter() - started, "shift": shift, "scale": scale,
            "codec_history": codec_history, "flow_history": flow_history}


def final_loss(history: History) -> float:
    losses = [r["loss"] for r in history.train if "loss" in r]
    return sum(losses[-10:]) / len(losses[-10:])


@torch.no_grad()
def samples(model: LatentFlow, n: int, *, sampler: str = SAMPLER, steps: int = STEPS, guidance: float = GUIDANCE,
            seed: int = NOISE_SEED, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images with labels ``i % 10`` from latent noise seeded ``seed``, and the labels."""
    noise = torch.randn(n, *model.latent_shape, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % 10
    out = [model.sample(zb, yb, sampler=sampler, steps=steps, guidance=guidance)
           for zb, yb in zip(noise.split(batch_size), labels.split(batch_size), strict=True)]
    return torch.cat(out), labels


def reference_and_floor(n: int, train: torch.Tensor, heldout: torch.Tensor,
                        seed: int = FLOOR_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out images (first ``n``) and ``n`` random training images: the floor's perfect generator."""
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return heldout[:n], train[pick]


def evaluate(model: LatentFlow, n: int, train: torch.Tensor, heldout: torch.Tensor, *, sampler: str = SAMPLER,
             steps: int = STEPS, guidance: float = GUIDANCE) -> dict[str, Any]:
    """The speed-run's protocol: FLD, the floor, their ratio and class agreement of ``n`` balanced samples."""
    started = time.perf_counter()
    x, labels = samples(model, n, sampler=sampler, steps=steps, guidance=guidance)
    sample_s = time.perf_counter() - started
    reference, floor_images = reference_and_floor(n, train, heldout)
    fld = evaluation.fld(x, reference)
    floor = evaluation.fld(floor_images, reference)
    return {"fld": round(fld, 4), "fld_floor": round(floor, 4), "fld_ratio": round(fld / floor, 3),
            "class_agreement": round(class_agreement(x, labels), 4), "samples": n, "sampler": sampler,
            "sampling_steps": steps, "guidance": guidance, "sample_seconds": round(sample_s, 1)}


def train_speedrun_mnist(profile: Profile) -> tuple[LatentFlow, dict[str, Any]]:
    """Train checkpoint ``speedrun_mnist`` in :data:`BUDGET` seconds of the profile; see the module."""
    return train_speedrun(profile)


def train_speedrun(profile: Profile, *, budget: float | None = None, codec_steps: int | None = None,
                   flow_steps: int | None = None) -> tuple[LatentFlow, dict[str, Any]]:
    """``speedrun_mnist``'s training: in ``budget`` seconds (default :data:`BUDGET`), or the given step counts."""
    splits = data.mnist_splits(profile.name)
    train, heldout, desc = splits
    if budget is None and codec_steps is None:
        budget = BUDGET[profile.name]
    seed_everything(profile.seed)
    model = build_speedrun_mnist()
    run = fit_speedrun(model, train.tensors[0], train.tensors[1], budget=budget, codec_steps=codec_steps,
                       flow_steps=flow_steps, seed=profile.seed)
    model = round_to_storage(model, STORAGE)  # measured as shipped
    metrics = evaluate(model, EVAL_N[profile.name], train.tensors[0], heldout.tensors[0])
    params = sum(p.numel() for p in model.parameters())
    threads = torch.get_num_threads()
    metrics.update({"train_seconds": round(run["seconds"], 1), "codec_steps": run["codec_steps"],
                    "flow_steps": run["flow_steps"], "final_loss": round(final_loss(run["flow_history"]), 4),
                    "parameters": params, "torch_threads": threads})
    c = CONFIG
    description = (
        f"the laptop speed-run, chapter 19: class-conditional flow matching in the latent of a small autoencoder "
        f"(1x28x28 -> {c.latent_channels}x7x7, width {c.codec_width}, binary cross-entropy, latents standardised: "
        f"shift {run['shift']:.3f}, scale {run['scale']:.3f}) with a residual MLP velocity (width {c.width}, "
        f"{c.depth} blocks, 10 labels plus 'no label', label dropout {c.label_dropout:g}), {params:,} parameters; "
        f"trained from scratch in {run['seconds']:.0f} s of wall time ({threads} torch threads; budget "
        f"{budget if budget is not None else 'fixed steps'} s): {run['codec_steps']} autoencoder steps (batch "
        f"{CODEC_BATCH}, Adam lr {CODEC_LR:g} cosine), then {run['flow_steps']} flow steps (batch {BATCH}, Adam "
        f"lr {LR:g} warm-up + cosine, weight average {EMA} shipped), seed {profile.seed}. Metrics: {metrics['samples']} "
        f"samples (labels i % 10, {SAMPLER} {STEPS} steps, guidance {GUIDANCE:g}, noise seed {NOISE_SEED}) against "
        f"the first as many held-out images; the floor is as many random training images (seed {FLOOR_SEED}) "
        f"against the same; features of mnist_features (sha256 {shipped_sha256('mnist_features')}); "
        f"class_agreement by lenet_mnist.")
    return model, card_info(description, desc + f" [profile {profile.name}]", run["codec_steps"] + run["flow_steps"],
                            metrics, splits.info)
