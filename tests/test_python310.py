"""The package promises Python >= 3.10 (Colab's Python must work), while local work uses 3.11.

What the student runs on Colab (``companion``, ``solutions``, the chapters' code cells) must parse as
Python 3.10 and use no standard-library name added in 3.11 or later; ``pyproject.toml`` says so to the
installer (``requires-python``) and to ruff (``target-version``).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOOR = (3, 10)

#: Standard-library names that are newer than Python 3.10: ``{module: {attribute: version}}``.
NEWER: dict[str, dict[str, str]] = {
    "datetime": {"UTC": "3.11"},
    "typing": {name: "3.11" for name in ("Self", "LiteralString", "Never", "assert_never", "assert_type",
                                         "reveal_type", "TypeVarTuple", "Unpack", "Required", "NotRequired",
                                         "dataclass_transform", "get_overloads", "clear_overloads")}
    | {"override": "3.12", "TypeAliasType": "3.12"},
    "enum": {name: "3.11" for name in ("StrEnum", "ReprEnum", "EnumCheck", "FlagBoundary", "verify", "member",
                                       "nonmember", "global_enum")},
    "hashlib": {"file_digest": "3.11"},
    "asyncio": {"TaskGroup": "3.11", "Runner": "3.11", "timeout": "3.11"},
    "contextlib": {"chdir": "3.11"},
    "math": {"cbrt": "3.11", "exp2": "3.11"},
    "operator": {"call": "3.11"},
    "itertools": {"batched": "3.12"},
}
NEWER_MODULES = {"tomllib": "3.11", "wsgiref.types": "3.11"}
NEWER_BUILTINS = {"ExceptionGroup": "3.11", "BaseExceptionGroup": "3.11"}


def _python_sources() -> list[tuple[str, str]]:
    """(label, source) of every file Colab runs: companion/**/*.py, solutions/*.py, chapter code cells."""
    sources = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "companion").rglob("*.py"))]
    sources += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "solutions").glob("*.py"))]
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                # IPython's shell (!pip) and magic (%matplotlib) lines are not Python
                code = "\n".join(re.sub(r"^(\s*)[!%].*", r"\1pass", line) for line in lines)
                sources.append((f"{nb.relative_to(ROOT)} cell {i}", code))
    return sources


SOURCES = _python_sources()


def newer_names(tree: ast.AST) -> list[str]:
    """Uses of standard-library names newer than 3.10, as ``"line N: datetime.UTC (3.11)"``."""
    found = []
    aliases: dict[str, str] = {}  # local name -> module, from ``import datetime as _dt``
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in NEWER_MODULES:
                    found.append(f"line {node.lineno}: import {a.name} ({NEWER_MODULES[a.name]})")
                if a.name in NEWER:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES:
                found.append(f"line {node.lineno}: from {node.module} ({NEWER_MODULES[node.module]})")
            for a in node.names:
                if a.name in NEWER.get(node.module, {}):
                    found.append(f"line {node.lineno}: from {node.module} import {a.name} "
                                 f"({NEWER[node.module][a.name]})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            if node.attr in NEWER[module]:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr} = {module}.{node.attr} "
                             f"({NEWER[module][node.attr]})")
        elif isinstance(node, ast.Name) and node.id in NEWER_BUILTINS:
            found.append(f"line {node.lineno}: {node.id} ({NEWER_BUILTINS[node.id]})")
    return found


def test_sources_were_found():
    labels = [label for label, _ in SOURCES]
    assert any(label.startswith("companion/") for label in labels)
    assert any(label.startswith("solutions/") for label in labels)
    assert any(label.startswith("chapters/") for label in labels)


@pytest.mark.parametrize("label,source", SOURCES, ids=[label for label, _ in SOURCES])
def test_parses_as_python_310(label, source):
    try:
        ast.parse(source, filename=label, feature_version=FLOOR)
    except SyntaxError as e:
        pytest.fail(f"{label}: line {e.lineno}: {e.msg} (requires-python is >= 3.10)")


def test_no_standard_library_name_newer_than_310():
    offenders = [f"{label}: {hit}" for label, source in SOURCES for hit in newer_names(ast.parse(source))]
    assert not offenders, "Python >= 3.11 only (use e.g. datetime.timezone.utc):\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source,expected",
    [
        ("import datetime\ndatetime.datetime.now(datetime.UTC)", "datetime.UTC"),
        ("import datetime as _dt\n_dt.datetime.now(_dt.UTC)", "_dt.UTC"),
        ("from datetime import UTC", "import UTC"),
        ("import tomllib", "tomllib"),
        ("from typing import Self", "import Self"),
        ("from itertools import batched", "batched"),
        ("raise ExceptionGroup('x', [])", "ExceptionGroup"),
    ],
)
def test_the_scanner_finds_newer_names(source, expected):
    hits = newer_names(ast.parse(source))
    assert len(hits) == 1 and expected in hits[0], hits


def test_the_scanner_passes_310_code():
    ok = "import datetime as _dt\n_dt.datetime.now(_dt.timezone.utc)\nfrom typing import Any\nimport itertools\n"
    assert newer_names(ast.parse(ok)) == []


def test_the_parser_refuses_311_syntax():
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=FLOOR)


def test_pyproject_promises_310_and_an_spdx_licence():
    tomllib = pytest.importorskip("tomllib")  # 3.11+: this test runs where the project is developed
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = config["project"]
    assert project["requires-python"] == ">=3.10"
    assert project["license"] == "MIT", "the licence is an SPDX expression string, not a table (PEP 639)"
    floor = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    assert floor and tuple(int(v) for v in re.findall(r">=\s*(\d+)", floor[0])) >= (77,), floor
    assert config["tool"]["ruff"]["target-version"] == "py310"
