"""Comparisons for graded tests, with failure messages written for students.

Every function takes ``what``: the call and output being checked, in the
student's words (``"SegMetrics.update(int64 (2, 16, 16), int64 (2, 16, 16)), then
.confusion_matrix"``). A failure raises :class:`~dlvc.course.grader.graded.GradingFailure`
saying which output differs, where first, and by how much; the expected value of
this run may be shown (the inputs change with every grading run), the test's
source and the reference's code never are.
"""

import math
from collections.abc import Callable

import torch

from .graded import GradingFailure
from .sandbox import Remote, StudentError, describe_value
from ..sandboxed.wire import Number

SHOWN_VALUES = 6
"""Values of a small output shown in full in a message."""


def fail(message: str):
    """Fail the graded test with ``message``."""
    raise GradingFailure(message)


def as_number(value, what: str) -> float:
    """``value`` as a float: Python numbers, numpy scalars and one-element tensors are accepted."""
    if isinstance(value, bool):
        fail(f"{what}: expected a number, got the bool {value}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value.reshape(()).item())
    fail(f"{what}: expected a number (a Python float), got {_kind(value)}")


def expect_number(got, expected: float, what: str, atol: float = 1e-6, rtol: float = 1e-6) -> float:
    """``got`` is a number within ``atol + rtol * |expected|`` of ``expected`` (NaN only matches NaN)."""
    number = as_number(got, what)
    if math.isnan(expected) or math.isnan(number):
        if math.isnan(expected) != math.isnan(number):
            fail(f"{what}: expected {expected:.6g}, got {number:.6g}")
        return number
    if abs(number - expected) > atol + rtol * abs(expected):
        fail(f"{what}: expected {expected:.6g}, got {number:.6g} (off by {abs(number - expected):.3g}; tolerance {atol + rtol * abs(expected):.1g})")
    return number


def expect_tensor(
    got,
    expected: torch.Tensor,
    what: str,
    atol: float = 0.0,
    rtol: float = 0.0,
    check_dtype: bool = False,
) -> torch.Tensor:
    """``got`` is a tensor of ``expected``'s shape whose values match within the tolerances.

    With ``check_dtype`` the dtypes must be equal too. NaN matches NaN.
    """
    if not isinstance(got, torch.Tensor):
        fail(f"{what}: expected a tensor of shape {tuple(expected.shape)}, got {_kind(got)}")
    if got.shape != expected.shape:
        fail(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if check_dtype and got.dtype != expected.dtype:
        fail(f"{what}: expected dtype {_dtype(expected)}, got {_dtype(got)}")
    if got.is_complex() or expected.is_complex():
        fail(f"{what}: expected real values, got a complex tensor")
    actual, wanted = got.to(torch.float64), expected.to(torch.float64)
    if got.dtype == torch.bool or expected.dtype == torch.bool:
        actual, wanted = got.to(torch.bool).to(torch.float64), expected.to(torch.bool).to(torch.float64)
    wrong = ~torch.isclose(actual, wanted, atol=atol, rtol=rtol, equal_nan=True)
    if wrong.any():
        fail(f"{what}: {_difference(actual, wanted, wrong, atol, rtol)}")
    return got


def _difference(actual: torch.Tensor, wanted: torch.Tensor, wrong: torch.Tensor, atol: float, rtol: float) -> str:
    count, total = int(wrong.sum()), wrong.numel()
    first = tuple(int(index) for index in wrong.nonzero()[0])
    gap = (actual - wanted).abs()
    largest = float(gap[wrong & ~gap.isnan()].max()) if (wrong & ~gap.isnan()).any() else math.nan
    text = (
        f"{count} of {total} values differ; the first at index {list(first)}: "
        f"got {_value(actual[first])}, expected {_value(wanted[first])}"
    )
    if not math.isnan(largest):
        text += f"; the largest difference is {largest:.3g}"
    if atol or rtol:
        text += f" (tolerance: atol {atol:g}, rtol {rtol:g})"
    if total <= SHOWN_VALUES:
        text += f"\n  got      {[_value(v) for v in actual.flatten()]}\n  expected {[_value(v) for v in wanted.flatten()]}"
    return text


def expect_equal(got, expected, what: str):
    """``got == expected`` for plain data (lists, numbers, strings, None), compared in the grader."""
    if not _plain_equal(got, expected):
        fail(f"{what}: expected {expected!r}, got {_shown(got)}")
    return got


def _plain_equal(got, expected) -> bool:
    if isinstance(expected, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(expected) and all(map(_plain_equal, got, expected))
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, (int, float)):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == float(expected)
    raise TypeError(f"expect_equal compares plain data, got an expected {type(expected).__name__}")


def expect_raises(call: Callable[[], object], error: str, what: str) -> StudentError:
    """``call()`` makes the student's code raise ``error`` (a builtin's name, such as ``"ValueError"``) or a subclass."""
    try:
        result = call()
    except StudentError as raised:
        if not raised.is_a(error):
            fail(f"{what}: expected a {error}, got {raised.type_name}: {raised.message}")
        return raised
    fail(f"{what}: expected a {error}, but it returned {_shown(result)}")


def _kind(value) -> str:
    if isinstance(value, Remote):
        return f"an object of type {value.type_name}"
    if isinstance(value, Number):
        return f"a {value.type_name}"
    if isinstance(value, torch.Tensor):
        return f"a tensor {describe_value(value)}"
    return f"{type(value).__name__} {_shown(value)}"


def _shown(value) -> str:
    if isinstance(value, Remote):
        return f"an object of type {value.type_name}"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _value(number: torch.Tensor) -> str:
    value = float(number)
    return f"{int(value)}" if value.is_integer() and abs(value) < 2**53 else f"{value:.6g}"
