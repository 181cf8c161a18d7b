"""Every chapter ends with *Check your understanding*: 5–8 questions, worked answers, one computed answer.

The section sits just before the chapter's references; each question is a paragraph ``**Qn.** …`` followed by a
collapsed ``:::{dropdown} Answer`` block, and at least one question per chapter is answered by a code cell that
follows it directly. ``book/review.md`` gathers every chapter's questions at build time (``course.review_page``).
"""

import ast
import re

import course
import nbformat
import pytest
from test_text import authoring_words, maths_problems

CHAPTERS = course.chapter_paths()
IDS = [p.stem for p in CHAPTERS]


@pytest.fixture(params=CHAPTERS, ids=IDS)
def chapter(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_every_chapter_has_the_section_before_its_references(chapter):
    path, nb = chapter
    section = course.review_section(nb)
    assert section, f"{path.stem} has no '{course.REVIEW_HEADING}' section"
    start = nb.cells.index(section[0])
    refs = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and re.search(r"^## References", c.source, re.M))
    assert start + len(section) == refs, "the review section ends just before the cell with the references"
    assert f"({course.review_label(path.stem)})=" in section[0].source, "the section carries its anchor label"


def test_five_to_eight_questions_each_with_a_worked_answer(chapter):
    _, nb = chapter
    qs = course.review_questions(nb)
    assert 5 <= len(qs) <= 8, f"{len(qs)} questions"
    assert [q["number"] for q in qs] == list(range(1, len(qs) + 1)), "questions are numbered Q1, Q2, … in order"
    for q in qs:
        assert q["question"].strip(), f"Q{q['number']} has no text"
        assert len(q["answer"].split()) >= 15, f"Q{q['number']}: the answer block is empty or a stub"
    text = "\n".join(c.source for c in course.review_section(nb) if c.cell_type == "markdown")
    assert len(course.ANSWER_RE.findall(text)) == len(qs), "one answer block per question, no stray ones"
    assert text.count(":::{dropdown}") == len(qs), "every dropdown is a well-formed answer block"


def companion_names(nb) -> set[str]:
    """The names a chapter binds to the course package: ``from companion import vae`` binds ``vae``,
    ``from companion import vae_variants as vv`` binds ``vv``, ``from companion.train import fit`` binds ``fit``."""
    names = set()
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        try:
            tree = ast.parse(re.sub(r"(?m)^\s*[%!].*$", "", c.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "companion":
                names |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.asname for a in node.names if a.asname and a.name.split(".")[0] == "companion"}
    return names


def test_at_least_one_answer_is_computed_with_companion(chapter):
    _, nb = chapter
    computed = [q for q in course.review_questions(nb) if q["computed"]]
    assert computed, "at least one question is answered by a code cell right after it"
    code = [c for c in course.review_section(nb) if c.cell_type == "code"]
    for c in code:
        assert "print(" in c.source, "a computed answer prints its result"
        assert "nbval-check-output" not in c.metadata.get("tags", []), "a computed answer is not a check cell"
    names = companion_names(nb) - {"check"}
    used = {n for c in code for n in names if re.search(rf"\b{re.escape(n)}\b", c.source)}
    assert used, f"the computation uses the course package (one of {sorted(names)})"


def test_answers_read_clean(chapter):
    _, nb = chapter
    for q in course.review_questions(nb):
        for text in (q["question"], q["answer"]):
            assert not maths_problems(text), maths_problems(text)
            assert not authoring_words(text), authoring_words(text)


def test_review_page_gathers_every_chapter_by_part():
    page = course.review_page()
    parts = [caption for caption, _ in course.toc_parts()]
    assert [m for m in re.findall(r"^## (.+)$", page, re.M)] == parts
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        assert f"](#{course.review_label(path.stem)})" in page, f"{path.stem} is missing from the review page"
        for q in course.review_questions(nb):
            assert q["question"] in page
    assert not maths_problems(page) and not authoring_words(page)


def test_question_parser():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("(review-99)=\n## Check your understanding\n\n**Q1.** Why $x$?\n\n"
                                      ":::{dropdown} Answer\nBecause.\n:::\n\n**Q2.** How\nmuch?"),
        nbformat.v4.new_code_cell("print(1)"),
        nbformat.v4.new_markdown_cell(":::{dropdown} Answer\nThat much.\n:::"),
        nbformat.v4.new_markdown_cell("## References\n\n**Q3.** not a question of the section"),
    ])
    qs = course.review_questions(nb)
    assert [(q["number"], q["question"], q["answer"], q["computed"]) for q in qs] == [
        (1, "Why $x$?", "Because.", False), (2, "How much?", "That much.", True)]
