"""The figures a verdict shows are rounded a batch at a time: to the same digits, bit for
bit, as Python's ``round`` of each, whatever the value; in numpy and compiled alike."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector import kernels
from services.detector.rules import rounded_array

DIGITS = st.sampled_from([1, 2, 3])
# Each way of rounding a batch the rules use: numpy's, and the compiled kernel's.
ROUNDINGS = st.sampled_from([rounded_array, kernels.rounded_array])


def rounded(values: np.ndarray, digits: int, rounding: object = rounded_array) -> list[float]:
    return rounding(values, digits).tolist()  # type: ignore[operator]


def same(a: float, b: float) -> bool:
    """Equal to the bit: NaN as NaN, and -0.0 apart from 0.0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# No deadline: the first example may compile the kernel.
@settings(deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50), DIGITS,
       ROUNDINGS)
def test_any_float_rounds_as_python_rounds_it(values: list[float], digits: int,
                                              rounding: object) -> None:
    got = rounded(np.array(values, np.float64), digits, rounding)
    assert all(same(mine, round(value, digits))
               for mine, value in zip(got, values, strict=True))


@settings(deadline=None)
@given(st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=50), DIGITS,
       st.sampled_from([-2, -1, 0, 1, 2]), ROUNDINGS)
def test_values_at_a_half_and_a_hair_beside_it_round_as_python_rounds_them(
        units: list[int], digits: int, ulps: int, rounding: object) -> None:
    """The hard cases: decimals ending in 5 one digit further, where the scaling
    rounds, and their neighbours a few ulps away."""
    values = [(unit + 0.5) / 10**digits for unit in units]
    for _ in range(abs(ulps)):
        values = [math.nextafter(value, math.copysign(math.inf, ulps)) for value in values]
    got = rounded(np.array(values, np.float64), digits, rounding)
    assert all(same(mine, round(value, digits))
               for mine, value in zip(got, values, strict=True))


def test_an_empty_batch_rounds_to_nothing() -> None:
    assert rounded(np.array([], np.float64), 2) == []
    assert rounded(np.array([], np.float64), 2, kernels.rounded_array) == []
