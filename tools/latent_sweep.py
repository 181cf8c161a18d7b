"""Chapter 20's controlled sweep, precomputed: KL weight x latent scaling, one DiT and one budget for all.

    python tools/latent_sweep.py [--profile cpu] [--out book/_static/latent_sweep.json]

For each KL weight of ``companion.recipes.latent.SWEEP_KL_WEIGHTS`` it trains one autoencoder on
MNIST-test[:8000] (``SWEEP_AE_STEPS``), then the same DiT (``SWEEP_DIT``, ``SWEEP_DIT_STEPS``) on its latents
scaled to unit variance and on the raw latents, and scores each with ``sweep_condition`` (FLD against
MNIST-test[8000:10000:2]). The JSON holds every number, the loss curves and 20 samples per condition (uint8,
base64), the profile, the machine and the wall time. The chapter reads it; ``sweep_condition`` is the code it
also runs live at a smaller size.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import data, hub  # noqa: E402
from companion.recipes import latent  # noqa: E402
from companion.recipes.diffusion import reference_sets  # noqa: E402


def _shipped_ae_ready() -> bool:
    try:
        return hub.card("latent_ae_mnist").get("profile") == "cpu"
    except Exception:  # not written yet
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("ci", "cpu"))
    ap.add_argument("--out", default=str(ROOT / "book" / "_static" / "latent_sweep.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    train, _, desc = data.mnist_splits(args.profile)
    images, labels = train.tensors
    p = args.profile
    n = latent.SWEEP_N[p]
    ref = reference_sets(n)
    aes = {}
    shipped = latent.AE_CONFIG.kl_weight
    # the shipped latent_ae_mnist is the sweep's autoencoder at its KL weight (same recipe, steps, seed and data):
    # it is loaded, not trained again; the others are trained first, while it may still be training
    for w in sorted(latent.SWEEP_KL_WEIGHTS, key=lambda w: (p == "cpu" and w == shipped, w)):
        if p == "cpu" and w == shipped:
            while not _shipped_ae_ready():
                time.sleep(30)
            aes[w] = hub.load_model("latent_ae_mnist")
        else:
            aes[w], _ = latent.sweep_autoencoder(w, images, steps=latent.SWEEP_AE_STEPS[p], progress=True)
    rows = []
    for w in latent.SWEEP_KL_WEIGHTS:
        ae = aes[w]
        for scaled in (True, False):
            r = latent.sweep_condition(ae, images, labels, scaled=scaled, steps=latent.SWEEP_DIT_STEPS[p], n=n,
                                       progress=True, reference=ref)
            r["samples"] = base64.b64encode(r["samples"].numpy().tobytes()).decode()
            rows.append(r)
            print({k: v for k, v in r.items() if k not in ("samples", "losses")}, flush=True)
    c = latent.SWEEP_DIT
    out = {"profile": p, "data": desc, "hardware": hub.hardware(), "wall_s": round(time.perf_counter() - started),
           "ae_steps": latent.SWEEP_AE_STEPS[p], "dit_steps": latent.SWEEP_DIT_STEPS[p], "samples": n,
           "sample_steps": latent.SWEEP_SAMPLE_STEPS, "dit": {"dim": c.dim, "depth": c.depth, "heads": c.heads},
           "made_by": "python tools/latent_sweep.py --profile " + p, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} ({out['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
