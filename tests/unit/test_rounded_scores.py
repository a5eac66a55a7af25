"""The model's scores go into verdicts rounded as Python's ``round(score, 4)`` rounds
them, to the last bit, though a batch is rounded in a few vectorised steps.
Property-based (Hypothesis)."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.routing import rounded_scores

# Halves of the fourth decimal and their neighbours, where a product's rounding error
# could tip the integer either way.
HALVES = st.integers(0, 9_999).map(lambda k: (k + 0.5) / 1e4)
NEAR_HALVES = st.tuples(HALVES, st.integers(-3, 3)).map(
    lambda h: float(np.nextafter(h[0], math.inf if h[1] > 0 else -math.inf))
    if h[1] else h[0])
SCORES = st.one_of(st.floats(0.0, 1.0), NEAR_HALVES,
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                 st.floats(allow_nan=False))


@settings(max_examples=500, deadline=None)
@given(st.lists(SCORES, max_size=50))
def test_a_batch_is_rounded_as_round_rounds_each(scores: list[float]) -> None:
    got = rounded_scores(np.array(scores, dtype=float))
    want = [round(score, 4) for score in scores]
    assert [math.copysign(1, x) for x in got] == [math.copysign(1, x) for x in want]
    assert got == want


def test_every_half_and_its_neighbours() -> None:
    halves = (np.arange(10_000) + 0.5) / 1e4
    scores = np.concatenate([halves, np.nextafter(halves, 2), np.nextafter(halves, -1),
                             np.linspace(0, 1, 100_001)])
    assert rounded_scores(scores) == [round(score, 4) for score in scores.tolist()]
