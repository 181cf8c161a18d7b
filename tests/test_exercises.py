"""Every exercise stub reports "not attempted", every solution passes its check, wrong answers fail clearly."""

import importlib.util
import math

import course
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_course import exercise_cells
from torch import nn

from companion import exercises

CASES = []
for _nb in course.chapter_paths():
    for _ex_id, _fn, _cell in exercise_cells(nbformat.read(_nb, as_version=4)):
        CASES.append((_nb, _ex_id, _fn.name, _cell.source))


def _solutions(stem):
    spec = importlib.util.spec_from_file_location(f"solutions_{stem}", course.SOLUTIONS / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("nb", "ex_id", "name", "source"), CASES, ids=[c[1] for c in CASES])
def test_stub_reports_not_attempted(nb, ex_id, name, source, capsys):
    namespace = {"torch": torch, "nn": nn, "F": F, "np": np, "math": math}
    exec(compile(source, f"{nb.stem}:{ex_id}", "exec"), namespace)
    res = exercises.result(ex_id, namespace[name])
    assert res.status == "not attempted", res.line()
    returned = exercises.check(ex_id, namespace[name])
    assert returned is res.exercise.reference
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize(("nb", "ex_id", "name", "source"), CASES, ids=[c[1] for c in CASES])
def test_solution_passes(nb, ex_id, name, source):
    fn = getattr(_solutions(nb.stem), name)
    res = exercises.result(ex_id, fn)
    assert res.status == "passed", res.line()
    assert exercises.check(ex_id, fn) is fn


@pytest.mark.parametrize(("nb", "ex_id", "name", "source"), CASES, ids=[c[1] for c in CASES])
def test_wrong_answer_fails_with_evidence(nb, ex_id, name, source):
    def wrong(*args, **kwargs):
        out = exercises.get(ex_id).reference(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out * 1.5 + 0.25
        if isinstance(out, tuple):
            return tuple(o * 1.5 + 0.25 if isinstance(o, torch.Tensor) else o for o in out)
        return out * 1.5 + 0.25

    res = exercises.result(ex_id, wrong)
    assert res.status == "failed", res.line()
    assert res.message


def test_unknown_exercise_and_bad_ids():
    with pytest.raises(KeyError, match="no exercise"):
        exercises.get("99.9")
    with pytest.raises(ValueError, match="look like"):
        exercises.get("1.1")


def test_a_raising_function_is_reported_not_raised():
    def boom(*a, **k):
        raise ZeroDivisionError("oops")

    res = exercises.result(CASES[0][1], boom)
    assert res.status == "failed" and "ZeroDivisionError" in res.message


def test_expect_close_messages():
    with pytest.raises(AssertionError, match=r"your shape \(2,\) / expected shape \(3,\)"):
        exercises.expect_close("x", torch.zeros(2), torch.zeros(3))
    with pytest.raises(AssertionError, match="your value 1 / expected 0"):
        exercises.expect_close("x", torch.ones(3), torch.zeros(3))
    with pytest.raises(AssertionError, match="your value 2 / expected 1"):
        exercises.expect_close("x", 2.0, 1.0)
    assert exercises.expect_close("x", torch.ones(3), torch.ones(3)) == 0.0
