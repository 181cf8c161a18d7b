"""FLD against the number of sampling steps for every sampler of chapter 19, written to a JSON file.

Usage::

    OMP_NUM_THREADS=1 python tools/steps_vs_fld.py                      # the default grid, N = 200
    python tools/steps_vs_fld.py --models ddpm_mnist --n 200           # only the DDPM samplers
    python tools/steps_vs_fld.py --models fm_mnist fm_reflow_mnist     # add the flow-matching models

Every cell (model, sampler, steps) samples the same ``N`` starting noises (seed 0; the ancestral sampler's
fresh noise from seed 1) and scores them with chapter 13's FLD against the first ``N`` images of
``evaluation.REFERENCE``; the floor is as many images of ``evaluation.FLOOR`` against the same reference. The
noise-prediction samplers run on the shipped ``ddpm_mnist`` (ancestral with clipping, as its card; DDIM, Euler,
Heun, DPM-Solver++(2M) without), the flow samplers on the shipped flow-matching models with balanced labels
(``i % 10``), conditional (guidance 1, one network call per evaluation; ``--guidance`` to change). Cells run cheapest first (by network evaluations)
and the JSON is rewritten after each one, so an interrupted run keeps what it measured; a rerun skips the cells
the file already holds (``--fresh`` starts over). 1,000-step cells on the CPU take most of the time: about
5 ms per image and network evaluation on one core.
"""

from __future__ import annotations

import argparse
import datetime
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

OUT = Path(__file__).resolve().parents[1] / "book" / "_static" / "steps_vs_fld.json"
STEPS = (1, 2, 4, 8, 10, 20, 50, 100, 200, 500, 1000)
DDPM_SAMPLERS = ("ancestral", "ddim", "euler", "heun", "dpmpp_2m")
FLOW_SAMPLERS = ("flow_euler", "flow_heun")


def nfe(sampler: str, steps: int) -> int:
    """Network evaluations of one run: Heun on the DDPM skips the second call on its last step."""
    if sampler == "heun":
        return 2 * steps - 1
    if sampler == "flow_heun":
        return 2 * steps
    return steps


def sample_ddpm_model(model, sampler: str, steps: int, noise: torch.Tensor) -> torch.Tensor:
    ab = model.alpha_bar
    ts = D.spaced_timesteps(model.config.T, steps)
    if sampler == "ancestral":
        out = ancestral_sample(model, noise, ab, ts, generator=torch.Generator().manual_seed(1))
    else:
        fn = {"ddim": D.sample_ddim, "euler": D.sample_euler, "heun": D.sample_heun,
              "dpmpp_2m": D.sample_dpmpp_2m}[sampler]
        out = fn(model, noise, ab, ts)
    return to_image_range(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ddpm_mnist"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--samplers", nargs="+", default=None, help="only these samplers")
    parser.add_argument("--merge", type=Path, nargs="+", default=(), help="add these files' cells to --out, then stop")
    parser.add_argument("--max-steps", type=int, default=1000, help="skip cells with more steps than this")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance of the flow models")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    if args.merge:
        record = json.loads(args.out.read_text())
        have = {(c["model"], c["sampler"], c["steps"]) for c in record["cells"]}
        for path in args.merge:
            other = json.loads(Path(path).read_text())
            if other["n"] != record["n"]:
                raise SystemExit(f"{path} holds N = {other['n']}, {args.out} N = {record['n']}")
            record["cells"] += [c for c in other["cells"] if (c["model"], c["sampler"], c["steps"]) not in have]
        record["cells"].sort(key=lambda c: (c["model"], c["sampler"], c["steps"]))
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        return 0
    reference, floor_images = reference_sets(args.n)
    feats = evaluation.feature_extractor()
    record = {} if args.fresh or not args.out.exists() else json.loads(args.out.read_text())
    if record.get("n", args.n) != args.n:
        raise SystemExit(f"{args.out} holds N = {record['n']}; pass --n {record['n']} or --fresh")
    record.update({"n": args.n, "hardware": hub.hardware(), "torch": torch.__version__,
                   "floor": round(evaluation.fld(floor_images, reference, feats), 4),
                   "reference": f"first {args.n} of MNIST-test[8000:10000:2]", "noise_seed": 0})
    record.setdefault("cells", [])
    done = {(c["model"], c["sampler"], c["steps"]) for c in record["cells"]}
    noise = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.n) % 10

    cells = []
    for name in args.models:
        samplers = DDPM_SAMPLERS if name.startswith("ddpm") else FLOW_SAMPLERS
        for s in samplers:
            if args.samplers and s not in args.samplers:
                continue
            for k in args.steps:
                if k <= args.max_steps and (name, s, k) not in done:
                    cells.append((nfe(s, k), name, s, k))
    cells.sort()
    models: dict[str, torch.nn.Module] = {}
    for cost, name, sampler, steps in cells:
        if name not in models:
            models[name] = hub.load_model(name).eval()
        model = models[name]
        started = time.perf_counter()
        with torch.no_grad():
            if name.startswith("ddpm"):
                x = sample_ddpm_model(model, sampler, steps, noise)
                extra = {}
            else:
                x = model.sample(noise, labels, sampler=sampler.removeprefix("flow_"), steps=steps,
                                 guidance=args.guidance)
                extra = {"guidance": args.guidance}
        seconds = time.perf_counter() - started
        value = evaluation.fld(x, reference, feats)
        record["cells"].append({"model": name, "sampler": sampler, "steps": steps, "nfe": cost,
                                "fld": round(value, 4), "seconds": round(seconds, 1), **extra})
        record["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name:16s} {sampler:10s} {steps:5d} steps ({cost:5d} NFE): FLD {value:.3f}  [{seconds:.0f} s]",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
