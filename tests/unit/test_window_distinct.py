"""``KeyedEvents.distinct`` against ``add``: the same figure and the same state, for any
stream, window and restore, whichever way each record was answered."""

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.detector.rules import FanIn, RuleSettings
from services.detector.windows import KeyedEvents, SlidingWindow

KEYS = "abc"
# Mostly on in time, at times back.
_STEP = st.one_of(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60),
                  st.integers(-400, 0))


def _record() -> st.SearchStrategy[tuple[Any, ...]]:
    """A record: its key, a step in time from the newest record (back, within the grace
    or beyond it, at times: out of order, or late), its tag, and its order (None: its time; else its
    time and a little, or the same order as the one before)."""
    return st.tuples(st.just("record"), st.sampled_from(KEYS), _STEP, st.integers(0, 12),
                     st.one_of(st.none(), st.integers(0, 40), st.just("same")))


_OPS = st.one_of(
    _record(), _record(), _record(), _record(), _record(), _record(),
    st.tuples(st.just("add"), st.sampled_from(KEYS), _STEP,
              st.integers(0, 12), st.one_of(st.none(), st.integers(0, 40))),
    st.tuples(st.just("takeover")),  # a fresh store from the compacted changelog
    st.tuples(st.just("reload"), st.sampled_from(KEYS)),  # a key's own state back
    st.tuples(st.just("forget"), st.sampled_from(KEYS)),  # a tombstone
    # The window set anew, as a control command does (``FanIn.configure``).
    st.tuples(st.just("configure"), st.integers(1, 3000), st.integers(0, 1000)),
)


def _fresh(window: SlidingWindow, log: dict[str, Any], few: int = KeyedEvents.few
           ) -> KeyedEvents:
    store = KeyedEvents(window)
    store.few = few
    for key, state in log.items():
        store.restore(key, state)
    return store


@settings(max_examples=150, deadline=None)
@given(st.lists(_OPS, min_size=20, max_size=200), st.integers(1, 3000), st.integers(0, 1000),
       st.sampled_from((1, 2, KeyedEvents.counted_from)),
       st.sampled_from((1, 2, KeyedEvents.few)))
def test_distinct_counts_what_add_sees_and_keeps_the_same_state(
    ops: list[tuple[Any, ...]], length: int, grace: int, counted_from: int, few: int
) -> None:
    """``counted_from``: from how big a window on the tags are counted, not sliced;
    ``few``: how many events a key holds as a tuple at most."""
    window = SlidingWindow(length, grace)
    reference, tested = KeyedEvents(window), KeyedEvents(window)
    tested.counted_from = counted_from
    tested.few = few
    logs: tuple[dict[str, Any], dict[str, Any]] = ({}, {})  # compacted changelogs
    base, order = 1000, 1000
    for op in ops:
        kind = op[0]
        if kind in ("record", "add"):
            _, key, step, tag, then = op
            ts = max(0, base + step)  # back: this record only, out of order or late
            base = max(base, ts)
            if then != "same":  # "same": the order of the record before
                order = ts + then if then is not None else None
            expected = reference.add(key, ts, f"t{tag}", order)
            if kind == "add":  # add keeps distinct's counts right as well
                assert tested.add(key, ts, f"t{tag}", order) == expected
            else:
                assert tested.distinct(key, ts, f"t{tag}", order) == (
                    None if expected is None else len(set(expected)))
            order = ts if order is None else order
        elif kind == "takeover":
            reference, tested = _fresh(window, logs[0]), _fresh(window, logs[1], few)
            tested.counted_from = counted_from
        elif kind == "configure":
            window = reference.window = tested.window = SlidingWindow(op[1], op[2])
        elif kind == "reload":
            tested.restore(op[1], tested.state_of(op[1]))
        else:
            reference.restore(op[1], None)
            tested.restore(op[1], None)
            logs[0][op[1]] = logs[1][op[1]] = None
        for store, log in zip((reference, tested), logs, strict=True):
            log.update(store.changes())
        assert logs[0] == logs[1]
        assert (tested.late, len(tested)) == (reference.late, len(reference))
        for key in ("", *KEYS):
            assert tested.state_of(key) == reference.state_of(key)


def test_a_target_paid_often_keeps_its_payers_counted() -> None:
    """In order, a window of many events is counted, not sliced, and stays exact as
    payers come back and leave the window."""
    reference = KeyedEvents(SlidingWindow(length_ms=1000, grace_ms=100))
    tested = KeyedEvents(SlidingWindow(length_ms=1000, grace_ms=100))
    for i in range(0, 5000):
        ts, payer = i * 7, f"p{i * i % 37}"
        assert tested.distinct("shop", ts, payer, ts) == len(set(reference.add(
            "shop", ts, payer, ts) or ()))
    assert getattr(tested._keys["shop"], "counts", None) is not None
    assert tested.state_of("shop") == reference.state_of("shop")


class _Sliced(KeyedEvents):
    """``distinct`` as fan-in counted before it: a set of what ``add`` gives."""

    def distinct(self, key: str, ts: int, tag: Any = None,
                 order: int | None = None) -> int | None:
        seen = self.add(key, ts, tag, order)
        return None if seen is None else len(set(seen))


_PAYMENT = st.tuples(
    st.sampled_from(("shop", "mule")), st.integers(0, 30), _STEP,
    st.one_of(st.none(), st.integers(0, 40), st.just("same")),
    st.one_of(st.none(), st.fixed_dictionaries(
        {"new_account": st.sampled_from((0.0, 1.0))},
        optional={"history": st.integers(0, 3),
                  "amount_ratio": st.sampled_from((0.5, 1.0, 5.0, 9.0))})))


@settings(max_examples=60, deadline=None)
@given(st.lists(_PAYMENT, max_size=200), st.integers(1, 6), st.integers(0, 3),
       st.sampled_from((0.0, 1.0, 3.0)))
def test_fan_in_judges_as_it_did_by_slices(
    payments: list[tuple[Any, ...]], window_s: int, sources: int, grace_s: float
) -> None:
    """Every figure and hit of ``FanIn.judge``, counted or sliced, is the same, and so
    is every store's state."""
    rules = RuleSettings(fan_in_window_s=window_s, fan_in_new_window_s=2 * window_s,
                         fan_in_sources=sources, fan_in_new_payers=sources,
                         window_grace_s=grace_s)
    counted, sliced = FanIn(rules), FanIn(rules)
    counted.events.counted_from = counted.suspects.counted_from = 2
    counted.newcomers.counted_from = 2
    sliced.events, sliced.suspects, sliced.newcomers = (
        _Sliced(store.window) for store in (sliced.events, sliced.suspects, sliced.newcomers))
    base, order = 10_000, 10_000
    hits = 0
    for target, payer, step, then, figures in payments:
        ts = max(0, base + step * 10)
        base = max(base, ts)
        if then != "same":
            order = ts + then * 10 if then is not None else None
        judged = counted.judge(target, f"p{payer}", ts, figures, order)
        assert judged == sliced.judge(target, f"p{payer}", ts, figures, order)
        hits += judged[3] is not None
        order = ts if order is None else order
    for mine, theirs in ((counted.events, sliced.events), (counted.suspects, sliced.suspects),
                         (counted.newcomers, sliced.newcomers)):
        assert dict(mine.changes()) == dict(theirs.changes())
    assert (counted.events.late, counted.mix.state_of("shop")) == (
        sliced.events.late, sliced.mix.state_of("shop"))
    event("hits" if hits else "no hit")
