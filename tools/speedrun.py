"""The laptop speed-run: a class-conditional MNIST generator trained from scratch inside a wall-clock budget.

    .venv/bin/python tools/speedrun.py                      # seed 0, 600 s, 2 torch threads, into a temp folder
    .venv/bin/python tools/speedrun.py --seeds 0 1 2        # the spread over three seeds
    .venv/bin/python tools/speedrun.py --ship               # write the best run as the shipped speedrun_mnist
    .venv/bin/python tools/speedrun.py --ablation           # what each choice buys, at the shipped run's steps

Each run trains ``speedrun_mnist``'s recipe (:mod:`companion.recipes.speedrun`: a small autoencoder, then
class-conditional flow matching in its latent) with a live progress bar, evaluates it with the course's
protocol (2,000 samples, 200 per class, against the held-out MNIST-test[8000:]; FLD in chapter 13's features,
the floor of 2,000 random training images, class agreement by chapter 04's classifier), writes a checkpoint
and card, and prints one row per run and the targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import data, hub  # noqa: E402
from companion.checkpoints import WEIGHTS_DIR, atomic_write_text, card_path, round_to_storage  # noqa: E402
from companion.profile import get_profile  # noqa: E402
from companion.recipes import speedrun as S  # noqa: E402
from companion.speedrun import LatentFlow  # noqa: E402

NAME = "speedrun_mnist"
TARGET_AGREEMENT, TARGET_RATIO, TARGET_SECONDS = 0.98, 2.0, 600.0
ABLATION = ROOT / "book" / "_static" / "speedrun_ablation.json"
RUNS = ROOT / "book" / "_static" / "speedrun_runs.json"
#: ``(row, what it changes, config changes, training changes, sampling changes)``: one choice undone at a time
VARIANTS = [
    ("speed-run", "as shipped", {}, {}, {}),
    ("no guidance", "guidance 1 (the conditional model alone)", {}, {}, {"guidance": 1.0}),
    ("Euler sampler", "Euler, 20 steps (as many network calls as Heun's 10)", {}, {},
     {"sampler": "euler", "steps": 20}),
    ("fewer sampler steps", "Heun, 4 steps", {}, {}, {"steps": 4}),
    ("no weight average", "the last weights instead of their running average", {}, {"ema": None}, {}),
    ("uniform times", "training times uniform on [0, 1] instead of logit-normal", {"time_sampling": "uniform"}, {}, {}),
    ("on pixels", "the same MLP flow on the 784 pixels, no autoencoder", {"latent": False}, {}, {}),
]


def ablation(codec_steps: int, flow_steps: int, n: int, seed: int = 0) -> dict:
    """Train each variant of :data:`VARIANTS` and score it with the speed-run's protocol.

    The variants that keep the latent reuse the first run's trained autoencoder (its weights copied, only the
    flow retrained), so a row differs from the first in the one choice it names; sampling variants reuse the
    first run's model.
    """
    train, heldout, _ = data.mnist_splits("cpu")
    x, y = train.tensors
    trained: dict[str, LatentFlow] = {}
    base: LatentFlow | None = None
    rows = []
    for name, what, config, fit, sampling in VARIANTS:
        key = json.dumps([config, fit], sort_keys=True)
        if key not in trained:
            torch.manual_seed(0)
            model = LatentFlow(dataclasses.replace(S.CONFIG, **config))
            steps = codec_steps
            if base is not None and model.config.latent:
                model.codec.load_state_dict(base.codec.state_dict())
                steps = 0
            S.fit_speedrun(model, x, y, codec_steps=steps, flow_steps=flow_steps, seed=seed, **fit)
            trained[key] = round_to_storage(model, S.STORAGE)
            base = base or trained[key]
        m = S.evaluate(trained[key], n, x, heldout.tensors[0], **sampling)
        rows.append({"variant": name, "change": what, **m})
        print(f"{name:>20}: agreement {100 * m['class_agreement']:.2f} %, FLD {m['fld']:.3f} "
              f"({m['fld_ratio']:.2f}x the floor)", flush=True)
    return {"codec_steps": codec_steps, "flow_steps": flow_steps, "n": n, "seed": seed, "rows": rows,
            "hardware": hub.hardware(), "torch": torch.__version__,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")}


def row(seed: int, m: dict) -> str:
    ok = m["class_agreement"] >= TARGET_AGREEMENT and m["fld_ratio"] <= TARGET_RATIO
    return (f"| {seed} | {m['train_seconds']:.0f} | {m['codec_steps']} + {m['flow_steps']} | "
            f"{100 * m['class_agreement']:.2f} % | {m['fld']:.3f} | {m['fld_floor']:.3f} | {m['fld_ratio']:.2f}x | "
            f"{'yes' if ok else 'no'} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", type=float, default=S.BUDGET["cpu"], help="seconds of training (default 600)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--profile", default="cpu", help="sizes of the evaluation (ci: 100 samples; cpu: 2,000)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the runs' checkpoints (default: a temp folder)")
    ap.add_argument("--ship", action="store_true", help="copy the best run into the shipped folder")
    ap.add_argument("--record", action="store_true", help=f"write the runs' table to {RUNS.relative_to(ROOT)}")
    ap.add_argument("--ablation", action="store_true",
                    help=f"train the variants at fixed steps and write {ABLATION.relative_to(ROOT)}")
    ap.add_argument("--codec-steps", type=int, default=None, help="ablation: autoencoder steps (default: the card's)")
    ap.add_argument("--flow-steps", type=int, default=None, help="ablation: flow steps (default: the card's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ablation:
        steps = (args.codec_steps, args.flow_steps)
        if None in steps:
            shipped = hub.card(NAME)["metrics"]
            steps = (args.codec_steps or shipped["codec_steps"], args.flow_steps or shipped["flow_steps"])
        result = ablation(*steps, S.EVAL_N[args.profile], seed=args.seeds[0])
        atomic_write_text(json.dumps(result, indent=1) + "\n", ABLATION)
        print(f"wrote {ABLATION}")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="speedrun-"))
    original_budget = dict(S.BUDGET)
    S.BUDGET[args.profile] = args.budget
    cards = {}
    try:
        for seed in args.seeds:
            folder = out / f"seed{seed}"
            profile = dataclasses.replace(get_profile(args.profile), seed=seed)
            cards[seed] = hub.retrain(NAME, profile, directory=folder)
    finally:
        S.BUDGET.update(original_budget)
    print(f"\nspeed-run · budget {args.budget:.0f} s · {args.threads} torch threads · {hub.hardware()} · "
          f"torch {torch.__version__}")
    print("| seed | train s | steps (codec + flow) | class agreement | FLD | floor | FLD / floor | both targets |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, card in cards.items():
        print(row(seed, card["metrics"]))
    if len(cards) > 1:
        for key in ("class_agreement", "fld_ratio", "train_seconds"):
            values = [c["metrics"][key] for c in cards.values()]
            print(f"{key}: mean {statistics.mean(values):.4g}, min {min(values):.4g}, max {max(values):.4g}")
    print(f"targets: class agreement >= {TARGET_AGREEMENT:.0%}, FLD <= {TARGET_RATIO:g}x the floor, "
          f"training <= {TARGET_SECONDS:.0f} s")
    best = min(cards, key=lambda s: (cards[s]["metrics"]["class_agreement"] < TARGET_AGREEMENT,
                                     cards[s]["metrics"]["fld_ratio"]))
    print(f"best: seed {best}; checkpoints under {out}")
    if args.record:
        keep = ("train_seconds", "codec_steps", "flow_steps", "class_agreement", "fld", "fld_floor", "fld_ratio",
                "samples", "sampler", "sampling_steps", "guidance", "torch_threads")
        runs = {"budget": args.budget, "threads": args.threads, "hardware": hub.hardware(), "torch": torch.__version__,
                "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), "shipped_seed": best if args.ship else None,
                "runs": [{"seed": s, **{k: c["metrics"][k] for k in keep}} for s, c in cards.items()]}
        atomic_write_text(json.dumps(runs, indent=1) + "\n", RUNS)
        print(f"wrote {RUNS}")
    if args.ship:
        src = out / f"seed{best}"
        for old in WEIGHTS_DIR.glob(f"{NAME}*"):
            old.unlink()
        for f in src.glob(f"{NAME}*"):
            shutil.copy2(f, WEIGHTS_DIR / f.name)
        print(f"shipped seed {best}: {card_path(NAME, WEIGHTS_DIR)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
