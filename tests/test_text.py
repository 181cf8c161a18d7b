"""What a reader of the site gets: maths that parses and no authoring words in student text.

Scans every markdown cell of every chapter, the front matter (``book/*.md``) and the generated solutions pages.
"""

from __future__ import annotations

import re

import course
import nbformat
import pytest

ROOT = course.ROOT


def _strip_code(text: str) -> str:
    """Blank out fenced code blocks (keeping line numbers) and inline code spans."""
    text = re.sub(r"(?ms)^\s*(```|~~~).*?^\s*\1[^\n]*$", lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"`[^`\n]*`", "``", text)


_DOLLARS = re.compile(r"(?<!\\)\$\$")
_DOLLAR = re.compile(r"(?<!\\)\$")
_BLOCK_START = re.compile(r"\s*([-+*>]\s|#|\d+[.)]\s)")  # what markdown reads as a list, quote or heading


def maths_problems(text: str) -> list[str]:
    """Markdown maths that will not render as written.

    * display maths ``$$…$$`` must open a block: ``$$`` first on its line, after a blank line (inside a
      paragraph it renders as ``$`` + inline maths + ``$``), and nothing but an equation label after the closing ``$$``;
    * a line break inside inline ``$…$`` must not start the next line with ``- ``, ``+ ``, ``* ``, ``> ``, ``#``
      or ``1. `` (markdown starts a list, a quote or a heading there and the maths is cut in two);
    * ``$`` must be balanced in every paragraph.
    """
    out: list[str] = []
    lines = _strip_code(text).split("\n")
    in_display = False
    for i, line in enumerate(lines):
        s = line.strip()
        n = len(_DOLLARS.findall(line))
        if not n:
            continue
        closing_ok = bool(re.search(r"\$\$\s*(\(\S+\))?$", s))
        if in_display:
            if not closing_ok:
                out.append(f"line {i + 1}: text after the closing $$: {s[-60:]!r}")
            in_display = n % 2 == 0
            continue
        if not s.startswith("$$"):
            out.append(f"line {i + 1}: $$ after text on the same line: {s[:70]!r}")
        elif i and lines[i - 1].strip() and not lines[i - 1].strip().startswith("$$"):
            out.append(f"line {i + 1}: display maths inside a paragraph (add a blank line before $$): "
                       f"…{lines[i - 1].strip()[-50:]!r}")
        if n % 2:
            in_display = True
        elif not closing_ok:
            out.append(f"line {i + 1}: text after the closing $$: {s[-60:]!r}")
    for para in re.split(r"\n\s*\n", "\n".join(lines)):
        inline = re.sub(r"(?s)(?<!\\)\$\$.*?(?<!\\)\$\$", " ", para)
        marks = [m.start() for m in _DOLLAR.finditer(inline)]
        if len(marks) % 2:
            out.append(f"unbalanced $ in the paragraph {para.strip()[:80]!r}")
            continue
        for a, b in zip(marks[::2], marks[1::2]):
            for cont in inline[a:b + 1].split("\n")[1:]:
                if _BLOCK_START.match(cont):
                    out.append(f"inline maths wrapped onto a line that starts with {cont.strip()[:2]!r} "
                               f"(markdown reads a list or heading): {inline[a:b + 1][:80]!r}")
    return out


# Words from the course's authoring process that must not reach a reader. "issue" followed by a number is a
# journal issue (a reference) and a URL may contain /issues/; both are allowed.
_AUTHORING = re.compile(
    r"\bissue(s|'s)?\b(?!\s*(no\.?\s*)?\d)(?<!/issues)|\bissue-level\b|\btickets?\b|\bseed notes?\b|\bseeds/"
    r"|\breport of this chapter\b|\bthis chapter's report\b|\bthe chapter report\b",
    re.I,
)


def authoring_words(text: str) -> list[str]:
    text = re.sub(r"https?://\S+", "", _strip_code(text))
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r} in "
            f"{text[max(0, m.start() - 40):m.end() + 40]!r}" for m in _AUTHORING.finditer(text)]


def _documents():
    docs = []
    for nb_path in course.chapter_paths():
        book = nbformat.read(nb_path, as_version=4)
        for i, c in enumerate(book.cells):
            if c.cell_type == "markdown":
                docs.append((f"{nb_path.stem} cell {i}", c.source))
    for md in sorted((ROOT / "book").glob("*.md")):
        docs.append((f"book/{md.name}", md.read_text()))
    for nb_path in course.chapter_paths():
        sol = course.SOLUTIONS / f"{nb_path.stem}.py"
        page = course.solution_page(sol)
        prose = re.sub(r"(?s)```python\n.*?```", "", page)  # the code is code; the docstring is the page's prose
        docs.append((f"solutions/{nb_path.stem}", prose))
    return docs


DOCS = _documents()


@pytest.mark.parametrize("check", [maths_problems, authoring_words], ids=["maths", "authoring words"])
def test_student_text(check):
    problems = [f"{where}: {p}" for where, text in DOCS for p in check(text)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("text", "bad"), [
    ("a paragraph\n$$x = 1$$\nmore", True),
    ("a paragraph\n\n$$x = 1$$\nmore", False),
    ("* item text\n  $$x$$", True),
    ("* item text\n\n  $$x$$", False),
    ("see $(a\n- b)$ here", True),
    ("see $(a -\nb)$ here", False),
    ("one $x$ and a stray $ sign", True),
    ("costs \\$5 and $x$", False),
    ("$$\na\n= b\n$$ (eq-label)", False),
    ("`$` in code and `$$` too", False),
])
def test_maths_scanner(text, bad):
    assert bool(maths_problems(text)) == bad, maths_problems(text)


@pytest.mark.parametrize(("text", "bad"), [
    ("The issue's target of 99 %", True),
    ("the seed notes for this course", True),
    ("numbers from the report of this chapter", True),
    ("open a ticket", True),
    ("*Machine Learning* 8, issue 3, 229–256", False),
    ("https://github.com/x/y/issues/4", False),
    ("we report the training loss", False),
    ("`tissue` and reissued", False),
])
def test_authoring_scanner(text, bad):
    assert bool(authoring_words(text)) == bad, authoring_words(text)


# Prose that states what a run measured: a number there must be glued from the cell that computed it
# (``companion.book.glue`` + ``{glue:text}`name```), so the page cannot quote a different run from the one it shows.
# Numbers a sentence attributes to the literature (a year, "et al.", a table or figure of a paper) are exempt.
_RUN_NUMBER = re.compile(r"(?<![\w.:/])(\d+\.\d+|\d+(?:\.\d+)?\s?(?:%|×))")
_CITED = re.compile(r"et al\.|\{cite|\b(?:19|20)\d\d[a-z]?\b|\bTable \d|\bFig(?:ure|\.)? \d|\bpapers?'?s?\b"
                    r"|\bpublished\b|\breports?\b|\breported\b|\barXiv\b")


def _run_paragraphs(text: str) -> list[str]:
    """**Finding** paragraphs, the bullets of a "Key findings" section and review answers."""
    out = []
    key = re.search(r"(?m)^#+ Key findings\b", text)
    if key:
        rest = text[key.end():]
        end = re.search(r"(?m)^#", rest)
        out += re.split(r"\n(?=\s*[*-] )", rest[:end.start()] if end else rest)
        text = text[:key.start()] + (rest[end.start():] if end else "")
    out += re.findall(r"(?s):::\{dropdown\} Answer\n(.*?)\n:::", text)
    out += [p for p in re.split(r"\n\s*\n", text) if re.match(r"\s*\*\*Findings?\b", p)]
    return out


def unglued_run_numbers(text: str) -> list[str]:
    """Decimals, percentages and ratios stated as a run's result without being glued from the run."""
    out = []
    for para in _run_paragraphs(text):
        prose = re.sub(r"\{glue:\w+\}`[^`]*`", " G ", para)
        prose = re.sub(r"(?s)\$\$.*?\$\$|(?<!\\)\$[^$]*(?<!\\)\$|`[^`]*`|\[[^\]]*\]\([^)]*\)", " ", prose)
        for sentence in re.split(r"(?<=[.;!?])\s+(?=[A-Z(*])", prose):
            if _CITED.search(sentence):
                continue
            out += [f"{m.group(0)!r} in {' '.join(sentence.split())[:120]!r}" for m in _RUN_NUMBER.finditer(sentence)]
    return out


_GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(\w+)")
_GLUE_CALL = re.compile(r"""\bglue\(\s*(f?)(["'])(.+?)\2""")


def glued_names(nb) -> list[re.Pattern]:
    """The names a chapter's code glues (an f-string name matches any word where its fields are)."""
    pats = []
    for c in nb.cells:
        if c.cell_type == "code":
            for f, _, name in _GLUE_CALL.findall(c.source):
                pats.append(re.compile(re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(name)) if f else re.escape(name)))
    return pats


@pytest.mark.parametrize("nb_path", course.chapter_paths(), ids=lambda p: p.stem[:2])
def test_prose_quotes_its_own_run(nb_path):
    book = nbformat.read(nb_path, as_version=4)
    problems = [f"cell {i}: {p}" for i, c in enumerate(book.cells) if c.cell_type == "markdown"
                for p in unglued_run_numbers(c.source)]
    pats = glued_names(book)
    problems += [f"cell {i}: {{glue:text}}`{name}` is never glued in this chapter"
                 for i, c in enumerate(book.cells) if c.cell_type == "markdown"
                 for name in _GLUE_ROLE.findall(c.source) if not any(p.fullmatch(name) for p in pats)]
    assert not problems, (f"{len(problems)} numbers in {nb_path.name}'s findings, key findings or review answers are "
                          "not glued from the run the page shows (companion.book.glue + {glue:text}`name`):\n  "
                          + "\n  ".join(problems))


@pytest.mark.parametrize(("text", "bad"), [
    ("**Finding.** The gap was 0.44 nats.", True),
    ("**Finding.** The gap was {glue:text}`gap:.2f` nats.", False),
    ("**Finding.** Accuracy 96 % at the end.", True),
    ("**Finding.** He et al. (2016) measured 6.97 % error.", False),
    ("**Finding.** The maths $x = 0.5$ holds.", False),
    ("A paragraph that is not a finding: 0.44.", False),
    ("## Key findings\n\n* spread 1,716× at depth 56\n\n## References\n\nSmith 0.5", True),
    ("## Key findings\n\n* spread {glue:text}`s:,.0f`×\n\n## References\n\nSmith 2.5 (2020)", False),
    (":::{dropdown} Answer\nIt fell to 12.5 %.\n:::", True),
])
def test_run_number_scanner(text, bad):
    assert bool(unglued_run_numbers(text)) == bad, unglued_run_numbers(text)
