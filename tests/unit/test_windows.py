"""Event-time windows: what each record sees, in order and out of it, at the edges."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.detector.windows import KeyedEvents, KeyedTimes, SlidingWindow


def test_a_record_sees_its_key_within_the_window_and_itself() -> None:
    events = KeyedEvents(SlidingWindow(length_ms=1000))
    assert events.add("a", 0, "t0") == ["t0"]
    assert events.add("a", 500, "t1") == ["t0", "t1"]
    assert events.add("b", 600, "u0") == ["u0"]  # keys never mix
    assert events.add("a", 999, "t2") == ["t0", "t1", "t2"]


def test_the_window_is_open_at_its_start_and_closed_at_its_end() -> None:
    events = KeyedEvents(SlidingWindow(length_ms=1000))
    events.add("a", 0, "t0")
    assert events.add("a", 1000, "t1") == ["t1"]  # (1000 - 1000, 1000] leaves out 0
    assert events.add("a", 1000, "t2") == ["t1", "t2"]  # same instant: both inside


def test_out_of_order_within_grace_takes_its_place_in_event_time() -> None:
    events = KeyedEvents(SlidingWindow(length_ms=1000, grace_ms=500))
    events.add("a", 1000, "t1000")
    events.add("a", 1400, "t1400")
    # 1200 arrives after 1400: it sees what came before it in event time, not after.
    assert events.add("a", 1200, "t1200") == ["t1000", "t1200"]
    assert events.add("a", 1500, "t1500") == ["t1000", "t1200", "t1400", "t1500"]
    assert events.late == 0


def test_a_record_older_than_the_grace_is_late_and_changes_nothing() -> None:
    events = KeyedEvents(SlidingWindow(length_ms=1000, grace_ms=500))
    events.add("a", 2000, "now")
    assert events.add("a", 1499, "too late") is None
    assert events.late == 1
    assert events.add("a", 1500, "just in time") == ["just in time"]
    assert events.add("a", 2100, "later") == ["just in time", "now", "later"]


def test_state_stays_bounded_by_the_window() -> None:
    events = KeyedEvents(SlidingWindow(length_ms=1000, grace_ms=100))
    for ts in range(0, 100_000, 10):
        events.add(f"key-{ts}", ts)
    assert len(events) <= (1000 + 100) // 10 * 2 + 2  # about one window and one grace


def test_an_invalid_window_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid window"):
        SlidingWindow(length_ms=0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5000)), max_size=60),
       st.integers(1, 2000), st.integers(0, 1000))
def test_every_answer_matches_a_recount_of_the_timely_events(
    stream: list[tuple[str, int]], length: int, grace: int
) -> None:
    """Whatever the order: a timely record sees exactly the timely events of its key that
    arrived before it in (ts - length, ts]."""
    events = KeyedEvents(SlidingWindow(length, grace))
    kept: list[tuple[str, int, int]] = []
    newest = -(2**63)
    for i, (key, ts) in enumerate(stream):
        seen = events.add(key, ts, i)
        if ts < newest - grace:
            assert seen is None
            continue
        newest = max(newest, ts)
        kept.append((key, ts, i))
        expected = sorted((t, j) for k, t, j in kept if k == key and ts - length < t <= ts)
        assert seen == [j for _, j in expected]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5000)), max_size=60),
       st.integers(1, 2000), st.integers(0, 1000))
def test_a_count_only_window_counts_what_the_full_one_sees(
    stream: list[tuple[str, int]], length: int, grace: int
) -> None:
    events = KeyedEvents(SlidingWindow(length, grace))
    times = KeyedTimes(SlidingWindow(length, grace))
    for i, (key, ts) in enumerate(stream):
        seen = events.add(key, ts, i)
        assert times.count(key, ts) == (None if seen is None else len(seen))
    assert (times.late, len(times)) == (events.late, len(events))


def test_a_count_only_window_shares_the_changelog_format() -> None:
    times = KeyedTimes(SlidingWindow(length_ms=1000, grace_ms=100))
    for ts in (0, 200, 400):
        times.count("a", ts)
    changes = dict(times.changes())
    assert changes == {"a": [[0, 200, 400], [None, None, None]], "": 400}
    full = KeyedEvents(SlidingWindow(length_ms=1000, grace_ms=100))
    back = KeyedTimes(SlidingWindow(length_ms=1000, grace_ms=100))
    for key, state in changes.items():
        full.restore(key, state)
        back.restore(key, state)
    assert full.add("a", 600) == [None] * 4
    assert back.count("a", 600) == 4
    back.restore("a", None)
    assert back.count("a", 700) == 1
