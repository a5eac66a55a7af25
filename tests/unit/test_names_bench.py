"""bench.names, from runs small enough for a unit test."""

from __future__ import annotations

from bench.names import per_new_name, pool_made_anew


def test_a_small_run_times_each_table_a_new_name() -> None:
    figures = per_new_name(batch=20, new=5, held=50, calls=40)
    assert set(figures) == {"numbers", "release", "slots"}
    # Names left once more than 50 were held: every table did its part.
    assert all(us > 0 for us in figures.values())


def test_the_pool_is_timed_on_the_call_that_finds_it_full() -> None:
    assert pool_made_anew(5_000) > 0
