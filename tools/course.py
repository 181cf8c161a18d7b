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

KERNEL_BACKEND = "module://matplotlib_inline.backend_inline"
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
    # The kernel inherits this process's environment: under pytest (MPLBACKEND=Agg, set by the root conftest)
    # every plt.show() would draw nothing and the book would have no figures. The kernel always draws inline.
    saved_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = KERNEL_BACKEND
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb_path),
            str(out_dir / nb_path.name),
            parameters={"PROFILE": profile},
            kernel_name="python3",
            cwd=str(nb_path.parent),
            progress_bar=False,
            log_output=False,
        )
    finally:
        if saved_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved_backend
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
    # Kernels run side by side: give each its share of the cores (two 2-thread kernels on 2 cores thrash).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    print(f"executing {len(paths)} chapter(s) at profile={profile} with {jobs} job(s), "
          f"{os.environ['OMP_NUM_THREADS']} thread(s) each …", flush=True)
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


# ----------------------------------------------------------------------------- what an executed copy must hold

CHECK_TAG = "nbval-check-output"
# nbval's defaults without --nbdime: these keys of an output are never compared.
SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")
# A code cell draws when its top-level code calls plt.show() or one of companion.plot's figure makers.
PLOT_CALL = re.compile(r"\bplt\.show\(|\bplot\.(show_images|compare|interpolation_strip|plot_history|plot_curves)\(")


def _top_level_code(source: str) -> str:
    """The cell's code outside ``def``/``class`` bodies (magics blanked), where a call really runs."""
    lines = [("" if ln.lstrip().startswith(("%", "!")) else ln) for ln in source.splitlines()]
    code = "\n".join(lines)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    keep = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return "\n".join(ast.get_source_segment(code, n) or "" for n in keep)


def plotting_cells(nb) -> list[int]:
    """Indices of the code cells of ``nb`` whose top-level code draws a figure."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and PLOT_CALL.search(_top_level_code(c.source))]


def image_count(cell) -> int:
    return sum(1 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}))


def missing_figures(source_nb, executed_nb) -> list[str]:
    """Plotting cells of the source whose executed counterpart (matched by cell id) holds no image."""
    by_id = {c.get("id"): c for c in executed_nb.cells}
    out = []
    for i in plotting_cells(source_nb):
        cell = source_nb.cells[i]
        ran = by_id.get(cell.get("id"))
        if ran is None or not image_count(ran):
            first = cell.source.strip().splitlines()[0][:70] if cell.source.strip() else ""
            out.append(f"cell {i} ({first!r}) draws a figure, but its executed copy holds no image")
    return out


def _comparable(outputs) -> dict[str, list]:
    """nbval's normalisation: coalesce streams, flatten ``data`` by MIME type, drop the skipped keys."""
    from nbval.plugin import coalesce_streams, transform_streams_for_comparison

    flat: dict[str, list] = {}
    for out in transform_streams_for_comparison(coalesce_streams([o for o in outputs])):
        for key, value in out.items():
            if key in SKIP_COMPARE:
                continue
            if key == "data":
                for mime, v in value.items():
                    if mime not in SKIP_COMPARE:
                        flat.setdefault(mime, []).append(v)
            else:
                flat.setdefault(key, []).append(value)
    return flat


def check_cell_mismatches(source_nb, executed_nb) -> list[str]:
    """Compare every ``nbval-check-output`` cell's committed outputs with the executed copy's (``--nbval-lax``).

    Same rules as nbval: streams coalesced (carriage returns and backspaces applied), outputs compared per key /
    MIME type in order, images, metadata and execution counts ignored. Figures a check cell draws are ignored, as
    ``bless`` never stores them.
    """
    import copy
    import difflib

    by_id = {c.get("id"): c for c in executed_nb.cells}
    problems = []
    for i, cell in enumerate(source_nb.cells):
        if cell.cell_type != "code" or CHECK_TAG not in cell.metadata.get("tags", []):
            continue
        if cell.execution_count is None:
            continue  # nbval does not compare a reference cell that was never run
        ran = by_id.get(cell.get("id"))
        if ran is None:
            problems.append(f"check cell {i}: not found in the executed copy (cell id {cell.get('id')})")
            continue
        test = [o for o in copy.deepcopy(ran.outputs)
                if not (o.get("output_type") == "display_data" and any(k.startswith("image/") for k in o.get("data", {})))]
        ref, got = _comparable(copy.deepcopy(cell.outputs)), _comparable(test)
        if set(ref) != set(got):
            problems.append(f"check cell {i}: output fields differ: committed {sorted(ref)}, executed {sorted(got)}")
            continue
        for key in ref:
            if ref[key] == got[key]:
                continue
            a = "\n".join(map(str, ref[key])).splitlines()
            b = "\n".join(map(str, got[key])).splitlines()
            diff = "\n".join(difflib.unified_diff(a, b, "committed", "executed", lineterm="", n=1))
            problems.append(f"check cell {i} ({cell.source.strip().splitlines()[0][:60]!r}): {key!r} differs\n{diff}")
            break
    return problems


OBJECT_REPR = re.compile(r"<(?:matplotlib|mpl_toolkits|torch|PIL|ipywidgets)\.[^<>\n]*\bat 0x[0-9a-fA-F]+>")
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|home|tmp|root|Users|private/var)/[\w.-]")


def _output_texts(cell):
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            yield o.get("name", "stream"), o.get("text", "")
        elif o.get("output_type") == "error":
            yield "error", "\n".join(o.get("traceback", []))
        else:
            for mime, v in o.get("data", {}).items():
                if mime.startswith("text/"):
                    yield mime, v if isinstance(v, str) else "".join(v)


def unclean_outputs(executed_nb) -> list[str]:
    """Outputs a reader should not see: bare object reprs (``<matplotlib.… at 0x…>``) and this machine's paths."""
    out = []
    for i, cell in enumerate(executed_nb.cells):
        if cell.cell_type != "code":
            continue
        for kind, text in _output_texts(cell):
            for rx, what in ((OBJECT_REPR, "an object repr (end the line with ';' or assign it)"),
                             (MACHINE_PATH, "a path on this machine")):
                m = rx.search(text)
                if m:
                    line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
                    out.append(f"cell {i} {kind}: {what}: {line.strip()[:120]!r}")
    return out


def html_image_count(page: Path) -> int:
    """Images a built chapter page shows (``<img`` tags of the notebook's figures)."""
    return len(re.findall(r"<img[^>]+src=\"[^\"]*_images/", page.read_text(errors="replace")))


def html_figure_shortfall(html_dir: Path = BUILD / "html") -> list[str]:
    """Chapter pages of the built site that show fewer images than their source has plotting cells."""
    import nbformat

    out = []
    for p in chapter_paths():
        page = html_dir / "chapters" / f"{p.stem}.html"
        if not page.is_file():
            out.append(f"{p.stem}: no page {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}")
            continue
        need, have = len(plotting_cells(nbformat.read(p, as_version=4))), html_image_count(page)
        if have < need:
            out.append(f"{p.stem}: the page shows {have} image(s), the chapter has {need} plotting cells")
    return out


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
                f"[Back to exercise {ex_id}](#{exercise_label(ex_id)}) in the chapter.", "",
                "```python", fn_src, "```", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- review questions

REVIEW_HEADING = "## Check your understanding"
QUESTION_RE = re.compile(r"^\*\*Q(\d+)\.\*\*[ \t]+(.+?)(?=\n[ \t]*\n|\Z)", re.M | re.S)
ANSWER_RE = re.compile(r"^:::\{dropdown\} Answer[ \t]*\n(.*?)\n:::[ \t]*$", re.M | re.S)


def review_label(chapter: str) -> str:
    """The anchor of a chapter's *Check your understanding* section (``review-NN``)."""
    return "review-" + chapter[:2]


def review_section(nb) -> list:
    """The cells of a chapter's *Check your understanding* section: from its heading to the next ``## `` heading."""
    start = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                  and re.search(rf"^{re.escape(REVIEW_HEADING)}\s*$", c.source, re.M)), None)
    if start is None:
        return []
    cells = [nb.cells[start]]
    for c in nb.cells[start + 1:]:
        if c.cell_type == "markdown" and re.search(r"^## ", c.source, re.M):
            break
        cells.append(c)
    return cells


def review_questions(nb) -> list[dict]:
    """The questions of a chapter's review section, in order: ``{"number", "question", "answer", "computed"}``.

    A question is a paragraph starting ``**Qn.**``; its worked answer is the next ``:::{dropdown} Answer`` block;
    it is *computed* when a code cell follows the question before its answer.
    """
    tokens = []  # ("q", number, text) / ("code", source) / ("a", text), in reading order
    for c in review_section(nb):
        if c.cell_type == "code":
            tokens.append(("code", c.source))
            continue
        found = [(m.start(), ("q", int(m.group(1)), " ".join(m.group(2).split()))) for m in QUESTION_RE.finditer(c.source)]
        found += [(m.start(), ("a", m.group(1).strip())) for m in ANSWER_RE.finditer(c.source)]
        tokens += [t for _, t in sorted(found, key=lambda x: x[0])]
    out: list[dict] = []
    for tok in tokens:
        if tok[0] == "q":
            out.append({"number": tok[1], "question": tok[2], "answer": "", "computed": False})
        elif out and tok[0] == "code" and not out[-1]["answer"]:
            out[-1]["computed"] = True
        elif out and tok[0] == "a" and not out[-1]["answer"]:
            out[-1]["answer"] = tok[1]
    return out


def chapter_title(nb) -> str:
    """A chapter's title, from its first heading (``# 01 · Images as tensors``)."""
    m = re.search(r"^# (.+)$", nb.cells[0].source, re.M)
    return m.group(1).strip() if m else ""


def toc_parts() -> list[tuple[str, list[str]]]:
    """``(caption, [chapter stem, ...])`` for every part of ``_toc.yml`` that lists chapters."""
    parts, caption = [], None
    for line in (ROOT / "_toc.yml").read_text().splitlines():
        m = re.match(r"\s*-\s*caption:\s*(.+)$", line)
        if m:
            caption = m.group(1).strip()
            parts.append((caption, []))
            continue
        m = re.match(r"\s*-\s*file:\s*chapters/(\S+)$", line)
        if m and parts:
            parts[-1][1].append(m.group(1))
    return [(c, stems) for c, stems in parts if stems]


def review_page() -> str:
    """Markdown appended to book/review.md: every chapter's review questions, by part, linked to the chapter."""
    import nbformat

    out = []
    for caption, stems in toc_parts():
        out += [f"## {caption}", ""]
        for stem in stems:
            path = CHAPTERS / f"{stem}.ipynb"
            if not path.is_file():
                continue
            nb = nbformat.read(path, as_version=4)
            qs = review_questions(nb)
            if not qs:
                continue
            out += [f"### [{chapter_title(nb)}](#{review_label(stem)})", ""]
            for q in qs:
                tail = " *(computed in the chapter)*" if q["computed"] else ""
                out.append(f"{q['number']}. {q['question']}{tail}")
            out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- the site

REMOTE_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "../book/_static/colab-badge.svg"  # from _build/src/chapters/: the site serves its own copy
EXERCISE_HEADING_RE = re.compile(r"^(#+ Exercise (\d\d\.\d+)\b)", re.M)


def exercise_label(ex_id: str) -> str:
    """The anchor of exercise ``ex_id`` in its chapter page (solutions link back to it)."""
    return "ex-" + ex_id.replace(".", "-")


def prepare_page(executed: Path, dest: Path) -> None:
    """Copy an executed chapter into the site source, ready to render.

    The notebook keeps everything; only the page changes: papermill's injected-parameters cell is tagged
    ``remove-cell`` (the chapter's own parameters cell stays), the Colab badge image is the site's local copy
    (the link still opens the notebook in Colab), and every ``Exercise NN.M`` heading gets the label
    ``ex-NN-M`` that its solution links back to.
    """
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    labelled = {m for c in nb.cells if c.cell_type == "markdown" for m in re.findall(r"^\((ex-[\w-]+)\)=", c.source, re.M)}
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", []) if cell.cell_type == "code" else cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if cell.cell_type == "markdown":
            src = cell.source.replace(REMOTE_BADGE, LOCAL_BADGE)

            def label(m: re.Match) -> str:
                name = exercise_label(m.group(2))
                return m.group(1) if name in labelled else f"\n({name})=\n{m.group(1)}"

            cell.source = EXERCISE_HEADING_RE.sub(label, src)
    banner = run_banner(nb, executed.stem)
    if banner:
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(banner, metadata={"tags": ["run-banner"]}))
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)


STATUS_RE = re.compile(r"GenerateVision · profile=(\w+)[^\n]*?· device=(\S+)[^\n]*?· seed=(\d+)")

PROFILE_SCOPE = {
    "ci": "the `ci` profile: a smoke run with tiny data and a few training steps, so that every cell is shown "
          "working. Its numbers show that the code runs, not what the methods achieve; run the notebook at "
          "`PROFILE = \"cpu\"` (or open it in Colab) for the results the chapter discusses",
    "cpu": "the `cpu` profile: the chapter's experiments at the size a laptop CPU runs in a few minutes",
    "gpu": "the `gpu` profile: the chapter's experiments at full size on a GPU",
}


def run_banner(nb, stem: str) -> str:
    """The note under a page's title saying which run it shows: profile, device, seed, wall time, machine.

    Read from the chapter's own status line (``profile.setup`` prints it) so the note cannot disagree with the
    outputs below it; the numbers the prose quotes are glued from the same run.
    """
    for cell in nb.cells:
        for _, text in _output_texts(cell) if cell.cell_type == "code" else []:
            m = STATUS_RE.search(text)
            if m:
                profile, device, seed = m.groups()
                timing = TIMINGS / f"{stem}.json"
                took = ""
                if timing.is_file():
                    t = json.loads(timing.read_text())
                    if t.get("profile") == profile:
                        took = f" It took {t['seconds']:.0f} s"
                scope = PROFILE_SCOPE.get(profile, f"the `{profile}` profile")
                return (f":::{{note}}\n**This page shows one run of the notebook** at {scope}.\n"
                        f"Device `{device}`, seed {seed}.{took + ' on ' + platform_line() + '.' if took else ''} "
                        "Every number the text states about a result is taken from this run's outputs.\n:::")
    return ""


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


def _metric_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):  # a small group of numbers (e.g. one per factor): inline
        return ", ".join(f"{k} {_metric_value(x)}" for k, x in v.items())
    return str(v)


def _metric_rows(metrics: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``(name, value)`` rows of a card's metrics: nested groups flattened to ``group · name``; a group of plain
    numbers below the top level stays on one row."""
    rows = []
    for k, v in metrics.items():
        name = f"{prefix} · {k}" if prefix else k
        if isinstance(v, dict) and (not prefix or any(isinstance(x, dict) for x in v.values())):
            rows += _metric_rows(v, name)
        else:
            rows.append((name, _metric_value(v)))
    return rows


def _metrics_table(metrics: dict) -> list[str]:
    """A card's metrics as a MyST list-table: one column per group when the card holds parallel groups
    (e.g. one per beta), else metric | value."""
    groups = list(metrics.values())
    parallel = len(groups) > 1 and all(isinstance(g, dict) for g in groups) and \
        all(list(g) == list(groups[0]) for g in groups)
    lines = ["```{list-table}", ":header-rows: 1", ":class: checkpoint-metrics", ""]
    if parallel:
        lines += ["* - metric", *[f"  - {g}" for g in metrics]]
        for key in groups[0]:
            lines += [f"* - {key}", *[f"  - {_metric_value(g[key])}" for g in groups]]
    else:
        lines += ["* - metric", "  - value"]
        for k, v in _metric_rows(metrics):
            lines += [f"* - {k}", f"  - {v}"]
    return [*lines, "```"]


def metrics_summary(metrics: dict, limit: int = 3) -> str:
    """A card's headline metrics on one short line: its first scalar metrics, or per group its first one."""
    scalars = [(k, v) for k, v in metrics.items() if not isinstance(v, dict)]
    if scalars:
        return ", ".join(f"{k} = {_metric_value(v)}" for k, v in scalars[:limit])
    parts = []
    for group, v in metrics.items():
        first = next(((k, x) for k, x in v.items() if not isinstance(x, dict)), None)
        if first:
            parts.append(f"{group}: {first[0]} = {_metric_value(first[1])}")
    return "; ".join(parts)


def checkpoint_label(name: str) -> str:
    """The anchor of a checkpoint's details on the checkpoints page."""
    return "ckpt-" + name.replace("_", "-")


def checkpoint_cards() -> list[dict]:
    """The cards of every shipped checkpoint, found through ``companion.hub`` (wherever the files live)."""
    sys.path.insert(0, str(ROOT))
    from companion import hub

    cards = []
    for name in hub.available():
        weights, card_path = hub.paths(name)
        if card_path.is_file():
            c = dict(hub.card(name))
            c.setdefault("name", name)
            c["_folder"] = weights.parent
            cards.append(c)
    return cards


def checkpoint_table() -> str:
    """Markdown for book/checkpoints.md: a summary table of the shipped checkpoints, then each card in full."""
    cards = checkpoint_cards()
    if not cards:
        return "(none shipped yet)"
    folder = cards[0]["_folder"]
    try:
        folder = folder.relative_to(ROOT).as_posix()
    except ValueError:
        folder = folder.as_posix()
    out = [f"The files live in `{folder}/`.", "",
           "| checkpoint | chapter | parameters | steps | profile | headline metrics |",
           "|---|---|---:|---:|---|---|"]
    for c in cards:
        params = f"{c['parameters']:,}" if isinstance(c.get("parameters"), int) else ""
        out.append(f"| [`{c['name']}`](#{checkpoint_label(c['name'])}) | {c.get('chapter', '')} | {params} | {c['steps']:,} | "
                   f"{c['profile']} | {metrics_summary(c['metrics'])} |")
    out += ["", "## Each checkpoint", ""]
    for c in cards:
        size = f"{c['bytes'] / 1e6:.1f} MB" if isinstance(c.get("bytes"), int) else ""
        facts = [f"chapter {c['chapter']}" if c.get("chapter") else "", f"profile `{c['profile']}`",
                 f"{c['steps']:,} steps", f"{c['parameters']:,} parameters" if c.get("parameters") else "", size]
        out += [f"({checkpoint_label(c['name'])})=", f"### `{c['name']}`", "", c.get("description", ""), "",
                "- " + " · ".join(f for f in facts if f),
                f"- **data:** {c['data']}",
                f"- **trained on:** {c['hardware']}, torch {c['torch_version']}"
                + (f", {c['created']}" if c.get("created") else ""),
                f"- **sha256:** `{c['sha256']}`"]
        if c.get("retrain"):
            out.append(f"- **retrain:** `{c['retrain']}`")
        out += ["", *_metrics_table(c["metrics"]), ""]
    return "\n".join(out)


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
        prepare_page(EXECUTED / p.name, SRC / "chapters" / p.name)
    with open(SRC / "book" / "checkpoints.md", "a") as f:
        f.write("\n" + checkpoint_table() + "\n")
    with open(SRC / "book" / "review.md", "a") as f:
        f.write("\n" + review_page() + "\n")
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
    dedupe_inline_scripts(BUILD / "html")
    short = html_figure_shortfall()
    if short:
        raise SystemExit("the site is missing figures:\n  " + "\n  ".join(short))
    print(f"site built: {BUILD / 'html' / 'index.html'}")


def dedupe_inline_scripts(html_dir: Path) -> None:
    """Drop repeated identical inline ``<script>`` lines from each page's head.

    Jupyter Book 1 registers some extensions' inline configuration twice (``const THEBE_JS_URL = ...`` among
    them), and a repeated ``const`` is a script error in the reader's console.
    """
    for page in html_dir.rglob("*.html"):
        text = page.read_text()
        head, sep, body = text.partition("</head>")
        if not sep:
            continue
        seen, lines = set(), []
        for line in head.split("\n"):
            key = line.strip()
            if key.startswith("<script>") and key.endswith("</script>"):
                if key in seen:
                    continue
                seen.add(key)
            lines.append(line)
        new = "\n".join(lines) + sep + body
        if new != text:
            page.write_text(new)


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
