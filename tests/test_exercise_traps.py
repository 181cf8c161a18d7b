"""The classic wrong answers fail every exercise check; only the right answer (the solution) passes.

Every exercise is fed four impostors besides its solution:

* ``nan``        — returns ``float("nan")`` whatever it is given;
* ``nan_shaped`` — the right answer with every number replaced by NaN (same shapes, types, tuple lengths);
* ``input``      — returns its first argument unchanged;
* ``zeros``      — the right answer with every number replaced by 0.

``LEGITIMATE`` lists the (exercise, impostor) pairs whose answer is correct for every case the check tries;
it is empty: each check includes at least one case where the input, zeros and NaN are all wrong.
"""

from __future__ import annotations

import importlib.util
import math

import course
import nbformat
import pytest
import torch
from test_course import exercise_cells

from companion import exercises

IMPOSTORS = ("nan", "nan_shaped", "input", "zeros")

# (exercise id, impostor) pairs that would be right on every case a check tries. None today: a check that
# lets one of these through does not test what its exercise asks.
LEGITIMATE: set[tuple[str, str]] = set()

CASES = []  # (exercise id, function name, solutions module stem)
for _nb in course.chapter_paths():
    for _ex_id, _fn, _cell in exercise_cells(nbformat.read(_nb, as_version=4)):
        CASES.append((_ex_id, _fn.name, _nb.stem))
IDS = [c[0] for c in CASES]


def _solution(stem: str, name: str):
    spec = importlib.util.spec_from_file_location(f"traps_solutions_{stem}", course.SOLUTIONS / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def _fill(out, value: float):
    """``out`` with every number replaced by ``value``, keeping shapes, containers and (float) dtypes."""
    if isinstance(out, torch.Tensor):
        dtype = out.dtype if out.is_floating_point() else torch.float32
        return torch.full(out.shape, value, dtype=dtype)
    if isinstance(out, bool):
        return out
    if isinstance(out, (int, float)):
        return value if (math.isnan(value) or isinstance(out, float)) else type(out)(value)
    if isinstance(out, (tuple, list)):
        return type(out)(_fill(o, value) for o in out)
    return value


def impostor(kind: str, reference):
    def answer(*args, **kwargs):
        if kind == "nan":
            return float("nan")
        if kind == "input":
            return args[0] if args else next(iter(kwargs.values()))
        out = reference(*args, **kwargs)
        return _fill(out, float("nan") if kind == "nan_shaped" else 0.0)

    return answer


@pytest.mark.parametrize(("ex_id", "name", "stem"), CASES, ids=IDS)
def test_only_the_right_answer_passes(ex_id, name, stem):
    ex = exercises.get(ex_id)
    solution = exercises.result(ex_id, _solution(stem, name))
    assert solution.status == "passed", solution.line()
    passed = {kind for kind in IMPOSTORS if exercises.result(ex_id, impostor(kind, ex.reference)).passed}
    expected = {kind for (i, kind) in LEGITIMATE if i == ex_id}
    assert passed == expected, f"exercise {ex_id}: wrong answers {sorted(passed - expected)} pass its check"


@pytest.mark.parametrize(("ex_id", "name", "stem"), CASES, ids=IDS)
def test_a_nan_answer_is_named_as_not_finite(ex_id, name, stem):
    """An answer shaped right but full of NaN is told that its value is not finite (not just 'nan / 0.3')."""
    res = exercises.result(ex_id, impostor("nan_shaped", exercises.get(ex_id).reference))
    assert res.status == "failed"
    if "not finite" not in res.message:
        # a few checks reject NaN earlier for a reason of their own (an int was expected, an index tensor, ...)
        assert any(w in res.message for w in ("expected the int", "dtype", "is a float", "expected a number",
                                              "raised")), res.message


def test_expect_close_rejects_non_finite_values():
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(AssertionError, match="not finite"):
            exercises.expect_close("x", bad, 1.0)
        with pytest.raises(AssertionError, match="not finite"):
            exercises.expect_close("x", torch.tensor(bad), 1.0)
        with pytest.raises(AssertionError, match="not finite"):
            exercises.expect_close("x", torch.tensor([0.0, bad]), torch.zeros(2))
        with pytest.raises(AssertionError, match="not finite"):
            exercises.expect_close("x", bad, 3)
    # an expected infinity is matched only by the same infinity
    assert exercises.expect_close("x", torch.tensor([1.0, float("inf")]), torch.tensor([1.0, float("inf")])) == 0.0
    with pytest.raises(AssertionError):
        exercises.expect_close("x", torch.tensor([1.0, 5.0]), torch.tensor([1.0, float("inf")]))


def test_perplexity_with_zero_log_zero_is_named():
    """12.4's classic bug: summing p log p over all K codes gives 0 * log 0 = NaN for an unused code."""

    def naive(indices, num_codes):
        p = torch.bincount(indices.flatten(), minlength=num_codes).double() / indices.numel()
        return float(torch.exp(-(p * p.log()).sum()))

    res = exercises.result("12.4", naive)
    assert res.status == "failed" and "not finite" in res.message, res.line()


def test_nearest_code_may_not_call_cdist():
    def with_cdist(z, codebook):
        return torch.cdist(z, codebook).argmin(dim=1)

    res = exercises.result("12.1", with_cdist)
    assert res.status == "failed" and "torch.cdist" in res.message, res.line()
    assert torch.cdist is not None and torch.cdist(torch.zeros(1, 2), torch.ones(1, 2)).shape == (1, 1)


def test_ema_update_names_in_place_mutation():
    ref = exercises.get("12.3").reference

    def in_place(cluster_size, embed_sum, z, indices, decay, eps):
        new = ref(cluster_size, embed_sum, z, indices, decay, eps)
        cluster_size.copy_(new[0])
        embed_sum.copy_(new[1])
        return cluster_size, embed_sum, new[2]

    res = exercises.result("12.3", in_place)
    assert res.status == "failed" and "in place" in res.message, res.line()
