"""Two questions the recorded steps-vs-FLD grid cannot answer, measured into a small JSON file (chapter 19).

Usage::

    OMP_NUM_THREADS=1 python tools/steps_vs_fld_checks.py      # about 25 minutes on one CPU core

``book/_static/steps_vs_fld.json`` (``tools/steps_vs_fld.py``) scores every sampler of ``ddpm_mnist`` at N = 200,
where the real-data floor is high and the 1,000-step ancestral baseline sits on it. This script asks, with the
grid's noise (seed 0; the ancestral sampler's fresh noise seed 1), reference and feature network:

* does the gap between the deterministic samplers and the ancestral one survive N = 1000 (DDIM-50 and
  DPM-Solver++(2M)-20 there, next to the ``ddpm_mnist`` card's clipped ancestral value at the same N)?
* how much of it is clipping? The grid's ancestral sampler clips the x0 estimate to [-1, 1] at every step and the
  ODE samplers do not; the ``*_clip`` cells clip theirs the same way (through a noise-prediction wrapper), and
  ``ancestral_noclip`` removes the ancestral sampler's clipping.

Writes ``book/_static/steps_vs_fld_checks.json`` after every cell.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from companion import diffusion as D  # noqa: E402
from companion import evaluation, hub  # noqa: E402
from companion.ddpm import ancestral_sample, to_image_range  # noqa: E402
from companion.recipes.diffusion import reference_sets  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "book" / "_static" / "steps_vs_fld_checks.json"
ABOUT = ("Checks of the recorded grid: ddpm_mnist, the grid's noise (seed 0; the ancestral sampler's fresh noise "
         "seed 1), reference (first N of MNIST-test[8000:10000:2]) and feature network; cells named *_clip clip "
         "the x0 estimate to [-1, 1] at every step (as the ancestral sampler of the grid does), "
         "ancestral_noclip does not. Measured on {hardware}, torch {torch}, {date}.")


def clipped(model, ab):
    """``model`` with its x0 estimate clipped to [-1, 1], returned as the noise that estimate implies."""
    def eps_model(x, t, **cond):
        eps = model(x, t)
        a = ab.to(x.device)[t].reshape(-1, 1, 1, 1).to(x.dtype)
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()
    return eps_model


def main() -> int:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = hub.load_model("ddpm_mnist").eval()
    ab = model.alpha_bar
    feats = evaluation.feature_extractor()
    record = {"about": ABOUT.format(hardware=hub.hardware(), torch=torch.__version__,
                                    date=time.strftime("%Y-%m-%d", time.gmtime())), "cells": []}

    def gen():
        return torch.Generator().manual_seed(1)

    cells = [
        (200, "ancestral_noclip", 50, lambda x, ts: ancestral_sample(model, x, ab, ts, clip=False, generator=gen())),
        (200, "ddim_clip", 50, lambda x, ts: D.sample_ddim(clipped(model, ab), x, ab, ts)),
        (200, "dpmpp_2m_clip", 20, lambda x, ts: D.sample_dpmpp_2m(clipped(model, ab), x, ab, ts)),
        (1000, "dpmpp_2m", 20, lambda x, ts: D.sample_dpmpp_2m(model, x, ab, ts)),
        (1000, "ddim", 50, lambda x, ts: D.sample_ddim(model, x, ab, ts)),
        (1000, "ddim_clip", 50, lambda x, ts: D.sample_ddim(clipped(model, ab), x, ab, ts)),
    ]
    for n, name, steps, run in cells:
        reference, floor_images = reference_sets(n)
        noise = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        started = time.perf_counter()
        with torch.no_grad():
            x = to_image_range(run(noise, D.spaced_timesteps(1000, steps)))
        seconds = time.perf_counter() - started
        value, floor = evaluation.fld(x, reference, feats), evaluation.fld(floor_images, reference, feats)
        record["cells"].append({"n": n, "cell": name, "steps": steps, "fld": round(value, 4), "floor": round(floor, 4),
                                "seconds": round(seconds, 1)})
        record["cells"].sort(key=lambda c: (c["n"], c["cell"]))
        OUT.write_text(json.dumps(record, indent=1) + "\n")
        print(f"N = {n:4d} {name:18s} {steps:4d} steps: FLD {value:.3f} (floor {floor:.3f}) [{seconds:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
