"""Execute every chapter once, with papermill at the ci profile, and test the executed copy that feeds the book.

One class per chapter: under ``pytest -n 2 --dist loadscope`` each class runs on one worker, in order, so a
chapter is executed exactly once per session (``test_executes``) and the tests after it read its executed copy:

* the ``nbval-check-output`` cells print what their committed outputs say (nbval's ``--nbval-lax`` semantics and
  normalisation, without a second execution);
* every cell that draws a figure left an image in the executed copy (the book shows what the kernel drew);
* no output shows a bare object repr (``<matplotlib.… at 0x…>``) or a path on the machine that ran it.
"""

from __future__ import annotations

import course
import nbformat
import pytest

CHAPTERS = course.chapter_paths()
_EXECUTED: dict[str, float] = {}  # chapters executed in this session (name -> seconds)


def _executed(nb_path):
    """The executed copy of ``nb_path``, executing it first if this session has not yet done so."""
    if nb_path.name not in _EXECUTED:
        _EXECUTED[nb_path.name] = course.execute_chapter(nb_path, profile="ci")
    return nbformat.read(course.EXECUTED / nb_path.name, as_version=4)


class _Chapter:
    path = None

    def test_executes(self):
        _executed(self.path)
        assert (course.EXECUTED / self.path.name).is_file()
        # Report, don't assert, the 45 s budget (timing depends on the machine): see the table at the end.
        print(f"{self.path.stem}: {_EXECUTED[self.path.name]:.1f} s")

    def test_check_cells_match(self):
        problems = course.check_cell_mismatches(nbformat.read(self.path, as_version=4), _executed(self.path))
        assert not problems, "\n".join(problems)

    def test_figures_reach_the_executed_copy(self):
        source, done = nbformat.read(self.path, as_version=4), _executed(self.path)
        need = len(course.plotting_cells(source))
        have = sum(course.image_count(c) for c in done.cells)
        missing = course.missing_figures(source, done)
        assert have >= need and not missing, (
            f"{have} image(s) in the executed copy, {need} plotting cells in the source:\n" + "\n".join(missing))

    def test_outputs_are_clean(self):
        problems = course.unclean_outputs(_executed(self.path))
        assert not problems, "\n".join(problems)


for _p in CHAPTERS:
    _name = "TestChapter" + _p.stem.split("_", 1)[0]
    globals()[_name] = type(_name, (_Chapter,), {"path": _p, "__doc__": f"chapters/{_p.name}"})


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


def test_kernel_draws_inline_whatever_the_runner_sets():
    """The root conftest sets MPLBACKEND=Agg for the tests; the chapters' kernels must not inherit it."""
    assert course.KERNEL_BACKEND.endswith("backend_inline")
    import matplotlib_inline.backend_inline  # noqa: F401  (the backend the kernel loads)


def test_check_cell_comparison_catches_a_change():
    nb_path = CHAPTERS[0]
    source = nbformat.read(nb_path, as_version=4)
    executed = nbformat.read(nb_path, as_version=4)  # the committed outputs compared with themselves: no change
    assert course.check_cell_mismatches(source, executed) == []
    cell = next(c for c in executed.cells if course.CHECK_TAG in c.metadata.get("tags", []) and c.outputs)
    out = next(o for o in cell.outputs if o.output_type == "stream")
    out.text = out.text + "one more line\n"
    problems = course.check_cell_mismatches(source, executed)
    assert len(problems) == 1 and "one more line" in problems[0]


@pytest.mark.parametrize(("text", "bad"), [
    ("<matplotlib.colorbar.Colorbar at 0x7f3a2c1d>", True),
    ("Warning: /work/wt/book/.venv/lib/python3.11/site-packages/matplotlib/pyplot.py:1: RuntimeWarning", True),
    ("saved to /tmp/x.png", True),
    ("accuracy 0.961 on 2,000 images; ratio 3/4; data/mnist", False),
])
def test_unclean_output_scanner(text, bad):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "x", outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)])])
    assert bool(course.unclean_outputs(nb)) == bad


def test_the_status_line_names_no_machine_path(tmp_path, monkeypatch):
    """The first line a chapter prints names where its data came from (``COURSE_DATA``), not this machine's path."""
    from companion import data

    (tmp_path / "mnist").mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "mnist" / f"{stem}.gz").write_bytes(b"")
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    line = data.data_source("mnist")
    assert "COURSE_DATA" in line and "test split" in line, line
    assert str(tmp_path) not in line and "/" not in line, line
