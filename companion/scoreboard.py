"""The scoreboard: every shipped generative model judged with chapter 13's tools at one fixed N.

``python -m companion.scoreboard`` samples :data:`companion.evaluation.EVAL_N` images from each shipped
generative checkpoint with :func:`companion.generate` and scores them against the held-out reference set
(MNIST-test[8000:10000:2], never trained on by any shipped model): FLD and its ratio to the real-data floor
(FLD of the other held-out half against the same reference), KID, precision and recall, the share of each class
(and, for a conditional model, the share of samples the chapter-04 classifier labels as asked), the network
function evaluations per image (NFE), the sampling time per image on this machine, the parameters and the
checkpoint's size. It writes ``book/scoreboard.md`` with the table, one sample grid per model, the hardware
and the date; the book shows that page.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import time
from pathlib import Path
from typing import Any

import torch

from . import checkpoints, data, evaluation, hub
from .ddpm import DDPM
from .distill import DistilledSet
from .flow_matching import FlowMatching
from .generation import VQSampler, family_of, generate, load_generative
from .latent_diffusion import LatentDiffusion
from .recipes import RECIPES
from .score import ScoreNet
from .speedrun import LatentFlow
from .text2image import TextToImage
from .vae_variants import BetaSweep

__all__ = ["GENERATIVE_FAMILIES", "generative_checkpoints", "nfe", "score", "scoreboard_page", "main"]

#: Recipe families whose checkpoints generate images.
GENERATIVE_FAMILIES = ("vae", "prior", "gan", "diffusion", "flow", "score")
#: Conditional checkpoints' labels: classes 0-9 in turn.
CLASSES = 10
ROOT = Path(__file__).resolve().parents[1]


def generative_checkpoints() -> list[str]:
    """The shipped checkpoints that generate images, in chapter order."""
    return sorted((n for n, r in RECIPES.items() if r.family in GENERATIVE_FAMILIES),
                  key=lambda n: (RECIPES[n].chapter, n))


def nfe(model: torch.nn.Module, steps: int | None = None, sampler: str | None = None,
        guidance: float | None = None) -> int:
    """Network function evaluations per generated image: forward passes of a network the sampler makes.

    A DDPM makes one per visited timestep: ``steps``, or all ``T`` (what :func:`generate` visits by default).
    A flow-matching model makes one per Euler step and two per Heun or midpoint step, doubled by classifier-free
    guidance (a conditional and an unconditional pass); a distilled student one per step; a latent diffusion
    model as a flow-matching one, plus one decoder pass.
    """
    if isinstance(model, DDPM):
        return int(steps) if steps is not None else model.config.T
    if isinstance(model, VQSampler):
        return model.prior.config.seq_len + 1  # one prior pass per code, one decoder pass
    if isinstance(model, ScoreNet):  # chapter 17: steps per level at every level, and a final denoising step
        return model.config.levels * (int(steps) if steps is not None else 3) + 1
    if isinstance(model, LatentDiffusion):  # chapter 20: the flow's steps in the latent, then one decoder pass
        per_step = 1 if (sampler or "euler") == "euler" else 2
        guided = 2 if guidance is not None and float(guidance) != 1.0 else 1
        return int(steps or 1) * per_step * guided + 1
    if isinstance(model, (FlowMatching, LatentFlow, TextToImage)):  # flow-matching samplers, pixels or latents
        per_step = 1 if (sampler or "euler") == "euler" else 2
        guided = 2 if guidance is not None and float(guidance) != 1.0 else 1
        return int(steps or 1) * per_step * guided
    if isinstance(model, DistilledSet):
        return int(steps) if steps is not None else 4
    return 1


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def score(name: str, reference: torch.Tensor, floor_fld: float, n: int = evaluation.EVAL_N,
          seed: int = 0) -> dict[str, Any]:
    """One checkpoint's row (see the module docstring); ``reference`` are held-out MNIST images ``[N, 1, 28, 28]``."""
    model, note = load_generative(name), ""
    if isinstance(model, BetaSweep):  # one row per checkpoint: the sweep's first β stands for it
        model, note = model[model.betas[0]], f"the β = {model.betas[0]:g} model of the sweep; "
    fam = family_of(model)
    labels = torch.arange(n) % CLASSES if fam.classes is not None else None
    card = hub.card(name)
    # an iterative model is sampled as its card was measured (sampler and number of steps), and the row says so
    kw = {k: card["metrics"][c] for k, c in (("sampler", "sampler"), ("steps", "sampling_steps"),
                                                        ("steps", "langevin_steps"))
          if k in fam.accepts and c in card.get("metrics", {})}
    prompts = None
    if "prompt" in fam.accepts:  # chapter 20: one prompt per image, those of the card's held-out draw
        from .recipes.text2image import card_prompts

        prompts, attributes = card_prompts(n)
        kw["prompt"] = prompts
    start = time.perf_counter()
    x = generate(model, n, labels=labels, seed=seed, progress=False, **kw)
    kw.pop("prompt", None)
    seconds = time.perf_counter() - start
    family = fam.name + (f" ({kw['sampler']}, {kw['steps']} steps)" if "sampler" in kw
                         else f" ({kw['steps']} Langevin steps per level)" if kw and isinstance(model, ScoreNet)
                         else f" ({kw['steps']} steps)" if kw else "")
    row: dict[str, Any] = {"name": name, "chapter": RECIPES[name].chapter, "family": family, "images": x,
                           "nfe": nfe(model, kw.get("steps"), kw.get("sampler"),
                                                  fam.defaults.get("guidance") if "guidance" in fam.accepts else None), "ms_per_image": 1000 * seconds / n,
                           "parameters": _parameters(model),
                           "bytes": card["bytes"] + sum(hub.card(d)["bytes"] for d in RECIPES[name].needs
                                                        if isinstance(model, VQSampler))}
    if prompts is not None:  # agreement: the attribute classifier sees all four attributes of the prompt
        from .text2image import attribute_agreement

        row["agreement"] = attribute_agreement(hub.load_model("shapes_attributes"), x, attributes)["all"]
    if x.shape[1:] != (1, 28, 28):
        row["note"] = note + f"{'×'.join(map(str, x.shape[1:]))} images of another dataset, not scored against MNIST"
        return row
    m = evaluation.sample_metrics(x, reference)
    probs = evaluation.class_probabilities(x)
    pred = probs.argmax(1)
    share = torch.bincount(pred, minlength=CLASSES).float() / n
    row.update(fld=m["fld"], fld_ratio=m["fld"] / floor_fld, kid=m["kid"], precision=m["precision"],
               recall=m["recall"], min_class_share=float(share.min()))
    if labels is not None:
        classifier = hub.load_model("lenet_mnist")
        with torch.no_grad():
            row["agreement"] = float((classifier(x).argmax(1) == labels).float().mean())
    return row


def _grid(images: torch.Tensor, path: Path, rows: int = 4, cols: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    k = min(rows * cols, len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(images[i].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
    fig.subplots_adjust(0, 0, 1, 1, 0.04, 0.04)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _fmt(v: Any, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def scoreboard_page(rows: list[dict[str, Any]], floor_fld: float, n: int, machine: str, date: str) -> str:
    """The markdown page of the scoreboard (images referenced as ``scoreboard/NAME.png``)."""
    lines = [
        "# Scoreboard",
        "",
        f"Every shipped generative model of the course, judged the same way: {n:,} samples from "
        "`companion.generate` (seed 0; conditional models get classes 0–9 in turn) against the "
        f"{n:,} held-out reference images MNIST-test[8000:10000:2], which no shipped model was trained on, with "
        "chapter 13's feature network. **FLD/floor** divides by the real-data floor, the FLD of the other "
        f"held-out half against the same reference ({floor_fld:.3f}): a perfect model of the data scores about 1. "
        "**Agreement** is the share of a conditional model's samples that the chapter-04 classifier labels as "
        "asked (for the text-to-image model: the share whose shape, colour, size and position the chapter-20 "
        "attribute classifier reads as the prompt says, for prompts of held-out attribute combinations); **min class** the smallest share of any digit among the samples (1/10 for perfect balance). "
        "**NFE** counts network evaluations per image; the time per image is the sampling time on the machine "
        "named below, in one process, batches of 500.",
        "",
        "| model | chapter | family | FLD | FLD/floor | KID | precision | recall | min class | agreement | NFE "
        "| ms / image | parameters | size (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {r['chapter']} | {r['family']} | {_fmt(r.get('fld'), '.2f')} | "
            f"{_fmt(r.get('fld_ratio'), '.1f')} | {_fmt(r.get('kid'), '.3f')} | {_fmt(r.get('precision'), '.2f')} | "
            f"{_fmt(r.get('recall'), '.2f')} | {_fmt(r.get('min_class_share'), '.1%')} | "
            f"{_fmt(r.get('agreement'), '.1%')} | {r['nfe']} | {r['ms_per_image']:.2f} | {r['parameters']:,} | "
            f"{r['bytes'] / 1e6:.2f} |")
    notes = [f"`{r['name']}`: {r['note']}." for r in rows if r.get("note")]
    if notes:
        lines += ["", *notes]
    lines += ["", f"Measured on {machine}, {date}, torch {torch.__version__}. Rebuild this page with "
              "`.venv/bin/python -m companion.scoreboard`.", "", "## Samples", ""]
    for r in rows:
        lines += [f"**`{r['name']}`** ({r['family']}, chapter {r['chapter']})", "",
                  f"![samples of {r['name']}](scoreboard/{r['name']}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "book" / "scoreboard.md", help="the page to write")
    ap.add_argument("--n", type=int, default=evaluation.EVAL_N, help="samples per model (and reference images)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    test = data.mnist("test").tensors[0]
    reference, floor = test[evaluation.REFERENCE][: args.n], test[evaluation.FLOOR][: args.n]
    floor_fld = evaluation.fld(floor, reference)
    rows = []
    for name in generative_checkpoints():
        print(f"scoring {name} …", flush=True)
        r = score(name, reference, floor_fld, n=args.n)
        _grid(r.pop("images"), args.out.parent / "scoreboard" / f"{name}.png")
        rows.append(r)
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    page = scoreboard_page(rows, floor_fld, args.n, hub.hardware(), _dt.date.today().isoformat())
    checkpoints.atomic_write_text(page + "\n", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
