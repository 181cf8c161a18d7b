"""Course tooling: execute chapters with papermill, render solution pages, build the Jupyter Book site.

    python tools/course.py execute [--profile ci] [--jobs 2] [CHAPTER ...]   # → _build/executed/chapters/
    python tools/course.py build                                           # → _build/html/ (no execution)
    python tools/course.py book [--profile ci]                             # execute, then build
    python tools/course.py sync                                            # rewrite Colab badge/install cells
    python tools/course.py bless CHAPTER                                   # store check-cell outputs (ci run)

The site is built from the *executed copies* (``execute_notebooks: off``) with warnings as errors. The canonical
repository URL lives in one place, ``_config.yml`` (``repository.url``); ``sync`` derives every chapter's Colab
badge and install cell from it, and ``tests/test_course.py`` fails when a chapter drifts.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SOLUTIONS = ROOT / "solutions"
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed" / "chapters"
TIMINGS = BUILD / "timings"
SRC = BUILD / "src"

BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
INSTALL_TAGS = ["remove-cell", "nbval-skip"]


# ----------------------------------------------------------------------------- repository facts


def repository() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml`` — the one place the canonical repository is written."""
    text = (ROOT / "_config.yml").read_text()
    block = re.search(r"^repository:\n((?:[ \t]+.*\n?)+)", text, re.M)
    if not block:
        raise SystemExit("_config.yml has no repository: section")
    url = re.search(r"url:\s*(\S+)", block.group(1))
    branch = re.search(r"branch:\s*(\S+)", block.group(1))
    if not url:
        raise SystemExit("_config.yml repository: section has no url")
    return url.group(1).rstrip("/"), branch.group(1) if branch else "main"


def chapter_paths() -> list[Path]:
    """Chapter notebooks in reading order (``chapters/NN_*.ipynb``)."""
    return sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))


def colab_url(nb: Path) -> str:
    url, branch = repository()
    slug = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/chapters/{nb.name}"


def badge(nb: Path) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(nb)})"


def install_source() -> str:
    url, branch = repository()
    return (
        "# Colab only: install the course package (a local run uses the repository's .venv).\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q \"generatevision @ git+{url}@{branch}\"\n"
    )


def expected_head(nb: Path) -> tuple[str, str]:
    """The badge line and install-cell source a chapter must carry (derived from ``_config.yml``)."""
    return badge(nb), install_source()


def sync(paths: list[Path] | None = None) -> list[Path]:
    """Rewrite each chapter's Colab badge (first markdown cell) and install cell (first code cell)."""
    import nbformat

    changed = []
    for nb_path in paths or chapter_paths():
        nb = nbformat.read(nb_path, as_version=4)
        line, install = expected_head(nb_path)
        md = nb.cells[0]
        new_md = BADGE_RE.sub(line, md.source) if BADGE_RE.search(md.source) else md.source + "\n\n" + line
        code = next(c for c in nb.cells if c.cell_type == "code")
        before = (md.source, code.source, list(code.metadata.get("tags", [])))
        md.source = new_md
        code.source = install.rstrip("\n")
        tags = code.metadata.setdefault("tags", [])
        for t in INSTALL_TAGS:
            if t not in tags:
                tags.append(t)
        if before != (md.source, code.source, list(tags)):
            nbformat.write(nb, nb_path)
            changed.append(nb_path)
    return changed


# ----------------------------------------------------------------------------- execution


def execute_chapter(nb_path: Path, profile: str = "ci", out_dir: Path = EXECUTED) -> float:
    """Execute one chapter with papermill at ``profile``; write the executed copy and its wall time."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    TIMINGS.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_PROFILE"] = profile
    start = time.perf_counter()
    pm.execute_notebook(
        str(nb_path),
        str(out_dir / nb_path.name),
        parameters={"PROFILE": profile},
        kernel_name="python3",
        cwd=str(nb_path.parent),
        progress_bar=False,
        log_output=False,
    )
    seconds = time.perf_counter() - start
    (TIMINGS / f"{nb_path.stem}.json").write_text(
        json.dumps({"chapter": nb_path.stem, "profile": profile, "seconds": seconds, "finished": time.time()})
    )
    return seconds


def timing_table(since: float = 0.0) -> str:
    """Markdown table of chapter wall times recorded after ``since`` (slowest first)."""
    rows = []
    for f in TIMINGS.glob("*.json") if TIMINGS.exists() else []:
        r = json.loads(f.read_text())
        if r.get("finished", 0) >= since:
            rows.append(r)
    if not rows:
        return ""
    rows.sort(key=lambda r: -r["seconds"])
    lines = ["| chapter | profile | wall time (s) | ≤ 45 s (ci) |", "|---|---|---:|---|"]
    for r in rows:
        ok = "yes" if r["profile"] != "ci" or r["seconds"] <= 45 else "OVER"
        lines.append(f"| {r['chapter']} | {r['profile']} | {r['seconds']:.1f} | {ok} |")
    lines.append(f"| total | | {sum(r['seconds'] for r in rows):.1f} | |")
    return "\n".join(lines)


def execute_all(profile: str, jobs: int, names: list[str] | None = None) -> None:
    paths = [p for p in chapter_paths() if not names or any(p.stem.startswith(n) for n in names)]
    if not paths:
        raise SystemExit(f"no chapters match {names}")
    since = time.time()
    print(f"executing {len(paths)} chapter(s) at profile={profile} with {jobs} job(s) …", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            for p, s in zip(paths, pool.map(execute_chapter, paths, [profile] * len(paths))):
                print(f"  {p.stem}: {s:.1f} s", flush=True)
        except Exception as exc:  # a cell failed: its own error is the message, not the pool's traceback
            if type(exc).__name__ != "PapermillExecutionError":
                raise
            raise SystemExit(f"a chapter failed (executed copy in {EXECUTED.relative_to(ROOT)}):{exc}") from None
    print(timing_table(since))


def bless(names: list[str]) -> None:
    """Execute chapters at ci and copy the outputs of ``nbval-check-output`` cells into the sources.

    Only check cells keep outputs (``keep_output: true``); everything else stays stripped. Read the diff: a
    check cell must print deterministic invariants (shapes, counts, pass/fail), never raw floats.
    """
    import nbformat

    for p in [p for p in chapter_paths() if any(p.stem.startswith(n) for n in names)]:
        execute_chapter(p, "ci")
        done = nbformat.read(EXECUTED / p.name, as_version=4)
        src = nbformat.read(p, as_version=4)
        by_id = {c.get("id"): c for c in done.cells}
        for c in src.cells:
            if c.cell_type == "code":
                tags = c.metadata.get("tags", [])
                if "nbval-check-output" in tags:
                    c.metadata["keep_output"] = True
                    ran = by_id.get(c.get("id"))
                    if ran is None:
                        raise SystemExit(f"{p.name}: cell {c.get('id')} not found in the executed copy")
                    c.outputs = [o for o in ran.outputs if o.get("output_type") != "display_data"]
                    c.execution_count = ran.execution_count
                else:
                    c.outputs, c.execution_count = [], None
        nbformat.write(src, p)
        print(f"blessed check cells of {p.name}")


# ----------------------------------------------------------------------------- solution pages


def solution_functions(path: Path) -> dict[str, ast.FunctionDef]:
    """Top-level functions of a solutions module, by name."""
    tree = ast.parse(path.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def solution_exercises(path: Path) -> dict[str, str]:
    """The module's ``EXERCISES = {"01.1": function, ...}`` table as ``{id: function name}``."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXERCISES" for t in node.targets):
            if not isinstance(node.value, ast.Dict):
                break
            return {ast.literal_eval(k): v.id for k, v in zip(node.value.keys, node.value.values)}
    raise SystemExit(f"{path} has no EXERCISES = {{'NN.M': function, ...}} table")


def solution_page(path: Path) -> str:
    """Markdown for one chapter's solutions page: one labelled section per exercise with its code."""
    sys.path.insert(0, str(ROOT))
    from companion import exercises

    source = path.read_text()
    funcs = solution_functions(path)
    doc = ast.get_docstring(ast.parse(source)) or ""
    title = doc.splitlines()[0] if doc else path.stem
    out = [f"# {title}", "", "\n".join(doc.splitlines()[1:]).strip(), ""]
    for ex_id, name in solution_exercises(path).items():
        ex = exercises.get(ex_id)
        fn_src = ast.get_source_segment(source, funcs[name])
        label = "sol-" + ex_id.replace(".", "-")
        out += [f"({label})=", f"## Exercise {ex_id} · {ex.title}", "",
                f"Back to the exercise in [the chapter](../chapters/{path.stem}.ipynb).", "",
                "```python", fn_src, "```", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- the site


def platform_line() -> str:
    """The machine the chapters ran on, for the timing table: CPU model, core count, torch and Python versions."""
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, Python {platform.python_version()}"


def checkpoint_table() -> str:
    """Markdown table of the shipped checkpoints' cards (for book/checkpoints.md)."""
    rows = ["| checkpoint | chapter | data | steps | profile | metrics | hardware | torch | sha256 |",
            "|---|---|---|---:|---|---|---|---|---|"]
    for card_path in sorted((ROOT / "companion" / "checkpoints").glob("*.json")):
        c = json.loads(card_path.read_text())
        metrics = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in c["metrics"].items())
        rows.append(f"| `{c['name']}` | {c.get('chapter', '')} | {c['data']} | {c['steps']} | {c['profile']} | "
                    f"{metrics} | {c['hardware']} | {c['torch_version']} | `{c['sha256'][:12]}…` |")
    if len(rows) == 2:
        rows.append("| (none shipped yet) | | | | | | | | |")
    return "\n".join(rows)


def merged_bibliography() -> str:
    """``book/references.bib`` plus every chapter's ``book/bib/chNN.bib``, each key once (first wins)."""
    entries: dict[str, str] = {}
    files = [ROOT / "book" / "references.bib", *sorted((ROOT / "book" / "bib").glob("*.bib"))]
    for f in files:
        if not f.is_file():
            continue
        for chunk in re.split(r"(?m)^(?=@)", f.read_text()):
            m = re.match(r"@\w+\s*\{\s*([^,\s]+)\s*,", chunk)
            if m:
                entries.setdefault(m.group(1).lower(), chunk.strip() + "\n")
    return "\n".join(entries[k] for k in sorted(entries))


def assemble() -> None:
    """Lay out ``_build/src``: front matter, executed chapters, generated solution pages."""
    missing = [p.name for p in chapter_paths() if not (EXECUTED / p.name).is_file()]
    if missing:
        raise SystemExit(f"no executed copies of {missing} in {EXECUTED}: run `make book` (or `make test`) first")
    if SRC.exists():
        shutil.rmtree(SRC)
    shutil.copytree(ROOT / "book", SRC / "book", ignore=shutil.ignore_patterns("bib"))
    (SRC / "book" / "references.bib").write_text(merged_bibliography())
    (SRC / "chapters").mkdir(parents=True)
    for p in chapter_paths():
        shutil.copy2(EXECUTED / p.name, SRC / "chapters" / p.name)
    with open(SRC / "book" / "checkpoints.md", "a") as f:
        f.write("\n" + checkpoint_table() + "\n")
    with open(SRC / "book" / "performance.md", "a") as f:
        f.write("\n" + (timing_table() or "(no timings recorded: run `make book` or `make test`)") + "\n\n"
                + f"Measured on {platform_line()}.\n")
    (SRC / "solutions").mkdir()
    for sol in (SOLUTIONS / f"{p.stem}.py" for p in chapter_paths()):
        (SRC / "solutions" / f"{sol.stem}.md").write_text(solution_page(sol))


def build() -> None:
    assemble()
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(SRC), "--config", str(ROOT / "_config.yml"), "--toc", str(ROOT / "_toc.yml"),
           "--path-output", str(ROOT), "-W", "-n", "--keep-going", "--builder", "html"]
    print("building the site:", " ".join(cmd[1:3]), "…", flush=True)
    res = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    log = res.stdout + res.stderr
    (BUILD / "book-build.log").write_text(log)
    if res.returncode != 0:
        print(log[-6000:])
        raise SystemExit(f"jupyter-book build failed (exit {res.returncode}); full log: _build/book-build.log")
    print(f"site built: {BUILD / 'html' / 'index.html'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("execute", "book"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="ci", choices=("ci", "cpu", "gpu", "auto"))
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("chapters", nargs="*", help="chapter number prefixes, e.g. 01 02 (default: all)")
    sub.add_parser("build")
    sub.add_parser("sync")
    b = sub.add_parser("bless")
    b.add_argument("chapters", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd in ("execute", "book"):
        execute_all(args.profile, args.jobs, args.chapters)
    if args.cmd in ("build", "book"):
        build()
    if args.cmd == "bless":
        bless(args.chapters)
    if args.cmd == "sync":
        for p in sync():
            print(f"updated {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
