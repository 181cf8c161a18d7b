"""Chapter 16's initialisation experiment: ``stylegan_mnist``'s recipe trained twice, with the course's He
initialisation of the mapping network and style affines and with PyTorch's default ``nn.Linear`` one.

    .venv/bin/python tools/stylegan_init.py                       # both variants, one after the other
    .venv/bin/python tools/stylegan_init.py --variant he          # one variant (run two processes side by side)
    .venv/bin/python tools/stylegan_init.py --merge               # join the variants' files into the record

Everything else is the same: the configuration, the seeds, the discriminator, the loss, the optimiser and the steps
(:func:`companion.recipes.cond_gans.train_style_pair`). Each run is scored with the card's protocol
(:func:`companion.recipes.cond_gans.style_report`: 1,000 samples against the held-out MNIST-test[8000:10000:2]).
The record, ``book/_static/stylegan_init.json``, is what chapter 16 reads.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import data, hub  # noqa: E402
from companion.checkpoints import atomic_write_text  # noqa: E402
from companion.recipes import cond_gans as R  # noqa: E402

RECORD = ROOT / "book" / "_static" / "stylegan_init.json"
VARIANTS = ("he", "default")


def run(variant: str, steps: int) -> dict:
    """Train and score one variant; returns its row."""
    train, _, desc = data.mnist_splits("cpu")
    G = R.build_stylegan_mnist()
    if variant == "default":
        R.pytorch_default_init_(G)
    started = time.perf_counter()
    R.train_style_pair(G, train, steps, desc=f"stylegan ({variant} init)")
    seconds = time.perf_counter() - started
    m = R.style_report(G.eval(), 1000)
    return {"variant": variant, "steps": steps, "train_seconds": round(seconds), "data": desc, **m}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=VARIANTS, default=None, help="one variant only (default: both)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true", help="join the per-variant files into the record")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    part = lambda v: RECORD.with_name(f"stylegan_init_{v}.json")  # noqa: E731
    if not args.merge:
        for v in [args.variant] if args.variant else VARIANTS:
            row = run(v, args.steps)
            print(json.dumps(row))
            atomic_write_text(json.dumps(row, indent=1) + "\n", part(v))
    if args.merge or not args.variant:
        rows = [json.loads(part(v).read_text()) for v in VARIANTS]
        record = {"what": "stylegan_mnist's recipe with He and with PyTorch's default initialisation of the mapping "
                          "network and style affines; everything else equal; one seed",
                  "hardware": hub.hardware(), "torch": torch.__version__,
                  "date": _dt.date.today().isoformat(), "runs": rows}
        atomic_write_text(json.dumps(record, indent=1) + "\n", RECORD)
        for v in VARIANTS:
            part(v).unlink()
        print(f"wrote {RECORD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
