"""Course-level drift checks: pins, table of contents, Colab cells, check cells, exercises ↔ solutions."""

import ast
import re

import course
import nbformat
import pytest

ROOT = course.ROOT
CHAPTERS = course.chapter_paths()
IDS = [p.stem for p in CHAPTERS]


def _pins(lines):
    return sorted(ln.strip().lstrip("- ").strip() for ln in lines if "==" in ln and not ln.strip().startswith("#"))


def test_requirements_and_environment_pin_the_same_packages():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = _pins((ROOT / "environment.yml").read_text().split("- pip:", 1)[1].splitlines())
    assert req == env
    assert "torch==2.13.0" in req
    assert any(p.startswith("jupyter-book==1.") for p in req)


def test_pyproject_ships_the_package_and_loose_torch():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["companion"' in text
    assert re.search(r'"torch>=[0-9.]+"', text), "companion must not pin torch (Colab brings its own)"


def _toc_files():
    return re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())


def test_toc_lists_exactly_the_chapters_and_solutions():
    files = _toc_files()
    assert [f for f in files if f.startswith("chapters/")] == [f"chapters/{s}" for s in IDS]
    assert [f for f in files if f.startswith("solutions/")] == [f"solutions/{s}" for s in IDS]
    for f in files:
        if f.startswith("book/"):
            assert (ROOT / f"{f}.md").is_file(), f"_toc.yml names {f} but book/{f}.md is missing"


def test_every_chapter_has_a_solutions_module():
    for nb in CHAPTERS:
        assert (course.SOLUTIONS / f"{nb.stem}.py").is_file(), f"solutions/{nb.stem}.py is missing"


@pytest.fixture(params=CHAPTERS, ids=IDS)
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_colab_badge_and_install_cell_come_from_config(nb):
    path, book = nb
    line, install = course.expected_head(path)
    assert book.cells[0].cell_type == "markdown"
    assert line in book.cells[0].source, "Colab badge drifted from _config.yml: run python tools/course.py sync"
    first_code = next(c for c in book.cells if c.cell_type == "code")
    assert first_code.source.strip() == install.strip()
    assert {"remove-cell", "nbval-skip"} <= set(first_code.metadata.get("tags", []))


def test_parameters_cell_sets_profile(nb):
    _, book = nb
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.search(r"^PROFILE\s*=", params[0].source, re.M)
    assert "COURSE_PROFILE" in params[0].source


def test_committed_stripped_with_check_cells_only(nb):
    _, book = nb
    checks = 0
    for c in book.cells:
        if c.cell_type != "code":
            continue
        tags = c.metadata.get("tags", [])
        if "nbval-check-output" in tags:
            checks += 1
            assert c.metadata.get("keep_output"), "a check cell needs metadata keep_output: true"
            assert c.outputs, "a check cell must keep its expected output"
        elif c.outputs:
            pytest.fail(f"cell with outputs outside a check cell: {c.source[:60]!r}")
    assert checks >= 3, "each chapter has at least three nbval check cells"


def test_chapter_contract_sections(nb):
    _, book = nb
    text = "\n".join(c.source for c in book.cells if c.cell_type == "markdown")
    for heading in ("Objectives", "Key findings", "References", "Experiment"):
        assert re.search(rf"^#+ .*{heading}", text, re.M | re.I), f"missing a '{heading}' section"
    assert "$" in text, "the maths is written in LaTeX"


# ----------------------------------------------------------------------------- exercises ↔ solutions


def exercise_cells(book):
    """(exercise id, function node, cell) for every cell tagged ``exercise``."""
    out = []
    for c in book.cells:
        if c.cell_type == "code" and "exercise" in c.metadata.get("tags", []):
            tree = ast.parse(c.source)
            funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
            assert len(funcs) == 1, f"an exercise cell defines exactly one function:\n{c.source[:200]}"
            m = re.search(r'raise NotImplementedError\("Exercise (\d\d\.\d+)"\)', c.source)
            assert m, f"stub must end with raise NotImplementedError(\"Exercise NN.M\"):\n{c.source[:200]}"
            out.append((m.group(1), funcs[0], c))
    return out


def _signature(fn: ast.FunctionDef) -> str:
    return ast.unparse(fn.args) + " -> " + (ast.unparse(fn.returns) if fn.returns else "")


def test_stubs_and_solutions_cannot_drift(nb):
    path, book = nb
    sol_path = course.SOLUTIONS / f"{path.stem}.py"
    sol_funcs = course.solution_functions(sol_path)
    table = course.solution_exercises(sol_path)
    stubs = exercise_cells(book)
    assert len(stubs) >= 3, "each chapter has at least three exercises"
    assert sorted(i for i, _, _ in stubs) == sorted(table), "exercise ids differ between chapter and solutions"
    sources = [c.source for c in book.cells]
    md = "\n".join(c.source for c in book.cells if c.cell_type == "markdown")
    for ex_id, stub, _ in stubs:
        assert ex_id.startswith(path.stem[:2]), f"exercise {ex_id} sits in chapter {path.stem}"
        sol = sol_funcs[table[ex_id]]
        assert stub.name == sol.name
        assert _signature(stub) == _signature(sol), f"{stub.name}: signature differs from the solution"
        assert ast.get_docstring(stub) == ast.get_docstring(sol), f"{stub.name}: docstring differs"
        body = [n for n in stub.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert len(body) == 1 and isinstance(body[0], ast.Raise), f"{stub.name}: the stub body is only the raise"
        call = f'{stub.name} = check("{ex_id}", {stub.name})'
        assert any(call in s for s in sources), f"no check cell `{call}`"
        label = "sol-" + ex_id.replace(".", "-")
        assert f"(#{label})" in md, f"exercise {ex_id}: no link to its solution (#{label})"


def test_solutions_page_renders_every_exercise():
    for sol in (course.SOLUTIONS / f"{s}.py" for s in IDS):
        page = course.solution_page(sol)
        for ex_id in course.solution_exercises(sol):
            assert f"(sol-{ex_id.replace('.', '-')})=" in page


def test_readme_has_exactly_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make book" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_page_names_the_run_it_shows(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · A chapter"), nbformat.v4.new_code_cell("setup()")]
    nb.cells[1].outputs = [nbformat.v4.new_output(
        "stream", name="stdout",
        text="GenerateVision · profile=cpu · device=cpu · data=MNIST from somewhere · seed=3\n")]
    src = tmp_path / "99_a_chapter.ipynb"
    nbformat.write(nb, src)
    course.prepare_page(src, tmp_path / "out.ipynb")
    page = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "the `cpu` profile" in page.cells[1].source and "seed 3" in page.cells[1].source
    assert course.run_banner(nbformat.v4.new_notebook(), "x") == ""


def test_glue_records_numbers_and_refuses_other_things():
    from companion import book

    assert book.glue("gap", 0.25) == 0.25
    assert book.glue("name", "plain-56") == "plain-56"
    with pytest.raises(ValueError, match="identifier"):
        book.glue("not a name", 1.0)
    with pytest.raises(ValueError, match="number or a string"):
        book.glue("x", [1, 2])


def test_pyproject_lists_every_subpackage():
    """A subpackage missing from ``packages`` installs from git without its files (Colab's path)."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(companion(?:\.\w+)*)"', text.split("packages =", 1)[1].split("]", 1)[0]))
    on_disk = {"companion." + p.parent.relative_to(ROOT / "companion").as_posix().replace("/", ".")
               for p in (ROOT / "companion").rglob("__init__.py") if p.parent != ROOT / "companion"}
    assert on_disk <= listed, f"add to pyproject.toml's packages: {sorted(on_disk - listed)}"
