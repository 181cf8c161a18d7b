"""Time the companion's from-scratch ops against PyTorch's built-ins, forward + backward.

Usage::

    python tools/benchmark.py            # full run, prints a markdown table
    python tools/benchmark.py --repeats 5 --quick
    python tools/benchmark.py --threads 1  # less sensitive to other processes
    python tools/benchmark.py --out book/benchmark_table.md  # also write the table the book's performance page includes

Each row is the median wall time of ``forward + backward`` (gradients for every input)
over ``--repeats`` runs after warm-up, for ``companion.ops`` and for ``torch.nn.functional``
measured alternately in the same process, and the median of the per-pair ratios. Other
processes on the machine disturb the times (the load average is printed); the ratio is the
robust number. Targets: conv <= 3x F.conv2d; attention <= 1.5x
F.scaled_dot_product_attention (at <= 65 tokens).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from companion import ops  # noqa: E402

# (label, input shape, weight shape, stride, padding)
CONV_CASES = [
    ("LeNet conv1", (64, 1, 28, 28), (6, 1, 5, 5), 1, 0),
    ("LeNet conv2", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    ("VGG 3x3", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ("ResNet 3x3", (64, 16, 32, 32), (16, 16, 3, 3), 1, 1),
    ("ResNet 3x3 s2", (64, 16, 32, 32), (32, 16, 3, 3), 2, 1),
]
# (label, q/k/v shape [B, heads, tokens, head_dim])
ATTN_CASES = [
    ("ViT 4x4 patches (17 tok)", (64, 4, 17, 32)),
    ("ViT 7x7 patches (50 tok)", (64, 4, 50, 32)),
    ("ViT 8x8 patches (65 tok)", (64, 4, 65, 32)),
]
CONV_TARGET = 3.0
ATTN_TARGET = 1.5


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def paired_times(
    ours: Callable[[], None], ref: Callable[[], None], repeats: int, warmup: int = 3
) -> tuple[float, float, float]:
    """Median seconds of each, and the median of per-pair ratios ours/ref.

    The two are run alternately (ours, ref, ref, ours, ...) so that load from other processes
    and clock changes hit both alike; the per-pair ratio is more stable than a ratio of medians.
    """
    for _ in range(warmup):
        ours()
        ref()
    t_ours, t_ref = [], []
    for i in range(repeats):
        for fn, times in ((ours, t_ours), (ref, t_ref))[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(t_ours, t_ref)]
    return statistics.median(t_ours), statistics.median(t_ref), statistics.median(ratios)


def fwd_bwd(op: Callable[..., torch.Tensor], inputs: list[torch.Tensor], **kwargs) -> Callable[[], None]:
    """A closure running ``op(*inputs).backward(g)`` with gradients for every input."""
    with torch.no_grad():
        grad_out = torch.randn_like(op(*inputs, **kwargs))

    def run() -> None:
        for t in inputs:
            t.grad = None
        op(*inputs, **kwargs).backward(grad_out)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per op (default 15)")
    parser.add_argument("--quick", action="store_true", help="conv: only the first two cases")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the printed table to this markdown file")
    args = parser.parse_args()
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    emit(
        f"Hardware: {cpu_model()} ({os.cpu_count()} logical CPUs), {torch.get_num_threads()} torch threads; "
        f"torch {torch.__version__}, Python {platform.python_version()}; 1-min load average {load:.1f} at start"
    )
    emit()
    emit("| op | shape | ours (ms) | PyTorch (ms) | ratio | target | pass |")
    emit("|---|---|---:|---:|---:|---:|:---:|")
    failures = 0

    conv_cases = CONV_CASES[:2] if args.quick else CONV_CASES
    for label, x_shape, w_shape, stride, padding in conv_cases:
        x = torch.randn(x_shape, requires_grad=True)
        w = (torch.randn(w_shape) * 0.1).requires_grad_()
        b = torch.zeros(w_shape[0], requires_grad=True)
        kw = {"stride": stride, "padding": padding}
        t_ours, t_ref, ratio = paired_times(
            fwd_bwd(ops.conv2d, [x, w, b], **kw), fwd_bwd(F.conv2d, [x, w, b], **kw), args.repeats
        )
        ok = ratio <= CONV_TARGET
        failures += not ok
        shape = f"{list(x_shape)} x {list(w_shape)}" + (f" s{stride}" if stride != 1 else "")
        emit(
            f"| conv2d {label} | {shape} | {t_ours * 1e3:.2f} | {t_ref * 1e3:.2f} | {ratio:.2f}x "
            f"| <= {CONV_TARGET:g}x | {'pass' if ok else 'FAIL'} |"
        )

    for label, shape in ATTN_CASES:
        q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
        t_ours, t_ref, ratio = paired_times(
            fwd_bwd(ops.scaled_dot_product_attention, [q, k, v]),
            fwd_bwd(F.scaled_dot_product_attention, [q, k, v]),
            args.repeats,
        )
        ok = ratio <= ATTN_TARGET
        failures += not ok
        emit(
            f"| attention {label} | {list(shape)} | {t_ours * 1e3:.2f} | {t_ref * 1e3:.2f} | {ratio:.2f}x "
            f"| <= {ATTN_TARGET:g}x | {'pass' if ok else 'FAIL'} |"
        )

    emit()
    emit(f"{failures} of the rows above miss their target." if failures else "All rows meet their targets.")
    if args.out is not None:
        stamp = time.strftime("%Y-%m-%d")
        args.out.write_text(f"<!-- written by `python tools/benchmark.py --out {args.out}` on {stamp} -->\n"
                            + "\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
