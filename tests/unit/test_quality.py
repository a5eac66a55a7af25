"""The evaluator's arithmetic and join, on hand-made verdicts and labels."""

from __future__ import annotations

import orjson
import pytest

from services.evaluator import report
from services.evaluator.quality import Evaluator, Join, Label, Outcome, Verdict, Window, tally

T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC, in ms


def verdict(tx_id: str, ts: int, *rules: str) -> bytes:
    """A record of the legit or fraud topic, as the detector writes it."""
    return orjson.dumps({
        "id": tx_id, "ts": ts, "source": "A", "target": "B", "amount": 10.0,
        "currency": "EUR", "detection": {
            "fraud": bool(rules), "rules": [{"rule": r, "reason": "..."} for r in rules],
            "score": None, "threshold": 900.0, "instance": "detector-1"}})


def label(tx_id: str, ts: int, scenario: str | None = None) -> bytes:
    return orjson.dumps({"id": tx_id, "ts": ts, "fraud": scenario is not None,
                         "scenario": scenario, "case": None})


# Ten transactions, one second apart: (id, rules that fired, scenario it belongs to).
EXAMPLE = [
    ("t0", (), None),                                      # true negative
    ("t1", ("amount_threshold",), "large_amount"),         # caught
    ("t2", ("velocity",), "card_testing"),                 # caught
    ("t3", (), "card_testing"),                            # missed
    ("t4", ("velocity", "amount_threshold"), None),        # false alarm, two rules
    ("t5", ("fan_in",), "mule_fan_in"),                    # caught
    ("t6", (), "mule_fan_in"),                             # missed
    ("t7", (), None),                                      # true negative
    ("t8", ("amount_threshold",), "large_amount"),         # caught
    ("t9", ("velocity",), None),                           # false alarm
]


def fed(evaluator: Evaluator, labels_first: bool) -> Evaluator:
    verdicts = [verdict(i, T0 + n * 1000, *rules) for n, (i, rules, _) in enumerate(EXAMPLE)]
    labels = [label(i, T0 + n * 1000, s) for n, (i, _, s) in enumerate(EXAMPLE)]
    first, second = (labels, verdicts) if labels_first else (verdicts, labels)
    for raw in first:
        (evaluator.label if labels_first else evaluator.verdict)(raw)
    for raw in second:
        (evaluator.verdict if labels_first else evaluator.label)(raw)
    return evaluator


@pytest.mark.parametrize("labels_first", [True, False], ids=["labels first", "verdicts first"])
def test_the_hand_made_example_gives_the_figures_worked_out_by_hand(labels_first: bool) -> None:
    evaluator = fed(Evaluator(window_seconds=60), labels_first)
    figures = evaluator.window.tally()

    # 4 caught, 2 false alarms, 2 missed, 2 right to let through.
    assert (figures.tp, figures.fp, figures.fn, figures.tn) == (4, 2, 2, 2)
    assert figures.precision == pytest.approx(4 / 6)
    assert figures.recall == pytest.approx(4 / 6)
    assert figures.f1 == pytest.approx(4 / 6)
    assert figures.scenarios == {"large_amount": [2, 2], "card_testing": [2, 1],
                                 "mule_fan_in": [2, 1]}
    # velocity fired 3 times, once on a fraud; amount_threshold 3 times, twice on fraud.
    assert figures.rules == {"amount_threshold": [3, 2], "velocity": [3, 1], "fan_in": [1, 1]}
    assert evaluator.counters()["joined"] == 10
    assert evaluator.join.pending == (0, 0)


def test_interleaved_arrival_joins_each_pair_once() -> None:
    evaluator = Evaluator()
    evaluator.verdict(verdict("a", T0, "velocity"))
    evaluator.label(label("b", T0, None))
    evaluator.label(label("a", T0, "card_testing"))
    evaluator.verdict(verdict("b", T0))
    evaluator.verdict(verdict("a", T0, "velocity"))  # redelivered: not counted twice
    evaluator.label(label("b", T0, None))

    figures = evaluator.window.tally()
    assert (figures.tp, figures.fp, figures.fn, figures.tn) == (1, 0, 0, 1)
    assert evaluator.counters()["duplicates"] == 2


def test_the_window_slides_with_event_time() -> None:
    window = Window(seconds=10)
    for second in range(10):  # seconds 0..9: frauds, all caught
        window.add(Outcome(T0 + second * 1000, True, True, "card_testing", ("velocity",)))
    assert (window.tally().tp, window.tally().fn) == (10, 0)

    # Seconds 10..14: frauds missed. The window keeps seconds 5..14.
    for second in range(10, 15):
        window.add(Outcome(T0 + second * 1000 + 999, False, True, "card_testing", ()))
    figures = window.tally()
    assert (figures.tp, figures.fn) == (5, 5)
    assert figures.recall == 0.5
    assert figures.rules == {"velocity": [5, 5]}
    assert window.span_ms() == (T0 + 5000, T0 + 15_000)

    # Out of order but inside the window: counted. Before it: late, not counted.
    assert window.add(Outcome(T0 + 7000, True, True, "card_testing", ()))
    assert not window.add(Outcome(T0 + 4999, True, True, "card_testing", ()))
    assert window.late == 1
    assert window.tally().tp == 6


def test_moving_the_threshold_moves_the_figures_as_the_window_slides() -> None:
    """What a console user sees after ``[``: more caught, more false alarms, over time."""
    evaluator = Evaluator(window_seconds=20)
    amounts = [(950.0, True), (600.0, True), (700.0, False), (100.0, False)] * 10

    def second(start: int, threshold: float) -> None:
        for n, (amount, fraud) in enumerate(amounts):
            tx_id = f"{start}-{n}"
            rules = ("amount_threshold",) if amount >= threshold else ()
            ts = T0 + start * 1000 + n
            evaluator.verdict(verdict(tx_id, ts, *rules))
            evaluator.label(label(tx_id, ts, "large_amount" if fraud else None))

    for s in range(20):
        second(s, threshold=900.0)
    before = evaluator.window.tally()
    assert (before.precision, before.recall) == (1.0, 0.5)
    for s in range(20, 30):  # threshold lowered to 500: half the window judged by it
        second(s, threshold=500.0)
    half = evaluator.window.tally()
    assert half.recall == pytest.approx(0.75)
    assert half.precision == pytest.approx(300 / 400)
    for s in range(30, 40):
        second(s, threshold=500.0)
    after = evaluator.window.tally()
    assert (after.recall, after.precision) == (1.0, pytest.approx(2 / 3))


def test_a_partner_that_never_comes_is_counted_as_unmatched() -> None:
    join = Join(wait_ms=5_000, max_pending=1000)
    join.add_verdict("lonely-verdict", Verdict(T0, False, ()))
    join.add_label("lonely-label", Label(T0, True, "card_testing"))
    assert join.pending == (1, 1)
    # Both streams move on past the wait: neither partner is coming any more.
    join.add_verdict("later", Verdict(T0 + 6_000, False, ()))
    join.add_label("later", Label(T0 + 6_000, False, None))
    assert join.pending == (0, 0)
    assert (join.counters.unmatched_verdicts, join.counters.unmatched_labels) == (1, 1)
    assert join.counters.joined == 1


def test_the_waiting_rooms_are_bounded() -> None:
    """The tutorial profile has no labels: verdicts wait, up to the bound, then go."""
    join = Join(wait_ms=60_000, max_pending=100)
    for n in range(250):
        join.add_verdict(f"v{n}", Verdict(T0 + n, False, ()))
    assert join.pending == (100, 0)
    assert join.counters.unmatched_verdicts == 150


@pytest.mark.parametrize("raw", [
    None, b"", b"not json", b"[]", b'{"id": "x"}', b'{"id": "x", "ts": -1, "detection": {}}',
    b'{"id": "", "ts": 1, "detection": {"fraud": true}}',
    b'{"id": "x", "ts": 1, "detection": {"fraud": "yes"}}',
    b'{"id": "x", "ts": 1, "detection": {"fraud": true, "rules": [{"reason": "?"}]}}',
    b"\xff\xfe",
])
def test_bad_records_are_counted_and_skipped(raw: bytes | None) -> None:
    evaluator = Evaluator()
    evaluator.verdict(raw)
    evaluator.label(raw)
    evaluator.verdict(verdict("ok", T0))
    evaluator.label(label("ok", T0))
    counters = evaluator.counters()
    assert (counters["bad_verdicts"], counters["bad_labels"]) == (1, 1)
    assert counters["joined"] == 1


def test_a_record_from_the_far_future_cannot_freeze_the_window() -> None:
    evaluator = Evaluator(window_seconds=60, clock=lambda: T0 / 1000)
    evaluator.verdict(verdict("x", T0 + 3_600_000, "velocity"))  # an hour ahead
    evaluator.label(label("x", T0 + 3_600_000, "card_testing"))
    evaluator.verdict(verdict("y", T0 + 1000))
    evaluator.label(label("y", T0 + 1000))
    assert evaluator.counters()["future"] == 2
    assert evaluator.window.tally().tn == 1  # "y" counts; the window ends at T0 + 1 s
    assert evaluator.window.span_ms() == (T0 + 2000 - 60_000, T0 + 2000)


def test_a_label_without_ts_takes_the_record_timestamp() -> None:
    evaluator = Evaluator(window_seconds=5)
    evaluator.verdict(verdict("x", T0 + 100))
    evaluator.label(orjson.dumps({"id": "x", "fraud": False}), record_ts_ms=T0 + 150)
    assert evaluator.window.tally().tn == 1


def test_the_quality_message_reads_back_as_it_was_written() -> None:
    evaluator = fed(Evaluator(window_seconds=60), labels_first=True)
    raw = report.encode("evaluator", "evaluator-1", T0 + 10_000, 60,
                        evaluator.window.span_ms(), evaluator.window.tally(),
                        evaluator.counters())
    body = orjson.loads(raw)
    assert (body["v"], body["kind"]) == (1, "quality")
    assert body["window"] == {"seconds": 60, "start": T0 - 50_000, "end": T0 + 10_000}
    assert body["precision"] == pytest.approx(4 / 6)

    quality = report.parse(raw)
    assert quality is not None
    assert (quality.joined, quality.tp, quality.fp, quality.fn, quality.tn) == (10, 4, 2, 2, 2)
    assert quality.recall == pytest.approx(4 / 6)
    recall = {s.name: s.recall for s in quality.scenarios}
    assert recall == {"card_testing": 0.5, "large_amount": 1.0, "mule_fan_in": 0.5}
    precision = {r.name: r.precision for r in quality.rules}
    assert precision == {"amount_threshold": pytest.approx(2 / 3),
                         "fan_in": 1.0, "velocity": pytest.approx(1 / 3)}
    # A rule's recall: the share of the window's six frauds it fired on.
    frauds = {r.name: r.frauds for r in quality.rules}
    assert frauds == {"amount_threshold": 2, "fan_in": 1, "velocity": 1}
    for rule in quality.rules:
        assert rule.recall == pytest.approx(rule.frauds / 6)
        assert rule.f1 == pytest.approx(2 * rule.precision * rule.recall
                                        / (rule.precision + rule.recall))
        written = body["rules"][rule.name]
        assert (written["precision"], written["recall"], written["f1"]) == \
            (pytest.approx(rule.precision), pytest.approx(rule.recall), pytest.approx(rule.f1))
    assert quality.totals["joined"] == 10


def test_nothing_joined_has_no_figures_rather_than_zeros() -> None:
    raw = report.encode("evaluator", "evaluator-1", T0, 60, None, tally([]), {})
    quality = report.parse(raw)
    assert quality is not None and quality.joined == 0
    assert (quality.precision, quality.recall, quality.f1) == (None, None, None)
    assert orjson.loads(raw)["window"]["start"] is None


@pytest.mark.parametrize("raw", [
    None, b"garbage quality", b'{"kind": "quality"}',
    b'{"v": 2, "kind": "quality", "instance": "e", "ts": 1, "window": {"seconds": 60},'
    b' "counts": {"tp": 1, "fp": 0, "fn": 0, "tn": 0}}',
    b'{"v": 1, "kind": "quality", "instance": "e", "ts": 1, "window": {"seconds": 60},'
    b' "counts": {"tp": -1, "fp": 0, "fn": 0, "tn": 0}}',
    b'{"v": 1, "kind": "heartbeat", "service": "detector", "instance": "d"}',
])
def test_what_is_not_a_quality_message_is_ignored(raw: bytes | None) -> None:
    assert report.parse(raw) is None


def test_the_console_shows_the_newest_quality_and_how_old_it_is() -> None:
    from tests.tui.scripted import FakeClock
    from tui.model import Aggregator

    clock = FakeClock(T0 / 1000)
    aggregator = Aggregator(clock)
    assert aggregator.snapshot().quality is None  # no evaluator: the panel says no labels

    evaluator = fed(Evaluator(window_seconds=60), labels_first=False)
    newer = report.encode("evaluator", "evaluator-2", T0 + 2000, 60,
                          evaluator.window.span_ms(), evaluator.window.tally(), {})
    older = report.encode("evaluator", "evaluator-1", T0 + 1000, 60, None, tally([]), {})
    aggregator.add_status([newer, older, b"not a status"])
    clock.now += 7
    snapshot = aggregator.snapshot()
    assert snapshot.quality is not None and snapshot.quality.instance == "evaluator-2"
    assert snapshot.quality.joined == 10
    assert snapshot.quality_age == 7
    assert snapshot.services == ()  # a quality message is not a heartbeat


def scored_verdict(tx_id: str, ts: int, amount: float, score: float | None,
                   *rules: str) -> bytes:
    """A verdict of the full detector: amount, the model's score and the rules' hits."""
    return orjson.dumps({
        "id": tx_id, "ts": ts, "source": "A", "target": "B", "amount": amount,
        "currency": "EUR", "detection": {
            "fraud": bool(rules), "rules": [{"rule": r, "reason": "..."} for r in rules],
            "score": score, "threshold": 900.0, "instance": "detector-1"}})


def labelled_set(size: int) -> list[tuple[str, float, float | None, tuple[str, ...], bool]]:
    """A fixed labelled set: amounts on and between the bins' edges, scores or none,
    each verdict's rules as the detector would name them at threshold 900 and cutoff 0.2."""
    import random

    rng = random.Random(20)
    rows = []
    for n in range(size):
        fraud = rng.random() < 0.3
        amount = rng.choice([0.5, 1.0, 49.99, 50.0, 899.99, 900.0, 950.0, 60_000.0]) \
            if n % 3 == 0 else round(rng.uniform(0, 3_000 if fraud else 1_200), 2)
        score = None if n % 7 == 0 else round(rng.random() ** (0.5 if fraud else 3), 4)
        rules = []
        if amount >= 900:
            rules.append("amount_threshold")
        if rng.random() < (0.2 if fraud else 0.03):
            rules.append("velocity")
        if score is not None and score >= 0.2:
            rules.append("model")
        rows.append((f"t{n}", amount, score, tuple(rules), fraud))
    return rows


def test_the_tuning_curves_match_a_brute_force_count_on_a_labelled_set() -> None:
    """At every edge of either axis, precision and recall from the published bins equal
    those counted one transaction at a time: fraud when another rule fired, or when the
    swept value is at or above the edge."""
    rows = labelled_set(3_000)
    evaluator = Evaluator(window_seconds=60)
    for n, (tx_id, amount, score, rules, fraud) in enumerate(rows):
        ts = T0 + n  # all within one window
        evaluator.verdict(scored_verdict(tx_id, ts, amount, score, *rules))
        evaluator.label(label(tx_id, ts, "large_amount" if fraud else None))
    quality = report.parse(report.encode(
        "evaluator", "e-1", T0, 60, evaluator.window.span_ms(), evaluator.window.tally(),
        evaluator.counters()))
    assert quality is not None and quality.joined == len(rows)
    frauds = sum(fraud for *_, fraud in rows)

    checked = 0
    for name, own_rule in (("amount", "amount_threshold"), ("score", "model")):
        curve = quality.curves[name]
        assert curve.rule == own_rule
        for index, edge in enumerate(curve.edges):
            flagged = []
            for _, amount, score, rules, fraud in rows:
                value = amount if name == "amount" else score
                if any(r != own_rule for r in rules) or (value is not None and value >= edge):
                    flagged.append(fraud)
            caught = sum(flagged)
            assert curve.flagged_at(index) == (caught, len(flagged) - caught), (name, edge)
            assert curve.precision_at(index) == (caught / len(flagged) if flagged else None)
            assert curve.recall_at(index) == caught / frauds
            checked += 1
    assert checked == len(quality.curves["amount"].edges) + len(quality.curves["score"].edges)


def test_the_curve_at_the_threshold_in_force_is_the_headline() -> None:
    """With the threshold the only rule, the amount curve at the threshold in force gives
    the precision and recall the evaluator publishes for the detector itself."""
    rows = [(tx_id, amount, None, tuple(r for r in rules if r == "amount_threshold"), fraud)
            for tx_id, amount, _, rules, fraud in labelled_set(1_000)]
    evaluator = Evaluator(window_seconds=60)
    for n, (tx_id, amount, score, rules, fraud) in enumerate(rows):
        evaluator.verdict(scored_verdict(tx_id, T0 + n, amount, score, *rules))
        evaluator.label(label(tx_id, T0 + n, "large_amount" if fraud else None))
    tally = evaluator.window.tally()
    quality = report.parse(report.encode("evaluator", "e-1", T0, 60, None, tally, {}))
    assert quality is not None
    curve = quality.curves["amount"]
    at = curve.index_of(900.0)
    assert curve.edges[at] == 900.0
    assert (curve.precision_at(at), curve.recall_at(at)) == (tally.precision, tally.recall)


@pytest.mark.parametrize("curves", [
    {"amount": {"rule": "amount_threshold", "edges": [0, 10], "fraud": [1], "legit": [1, 2]}},
    {"amount": {"rule": "amount_threshold", "edges": [10, 0], "fraud": [1, 1],
                "legit": [1, 2]}},
    {"amount": {"rule": "amount_threshold", "edges": [0, 10], "fraud": [1, -1],
                "legit": [1, 2]}},
], ids=["bins do not match edges", "edges fall", "a negative count"])
def test_a_quality_message_with_a_broken_curve_is_refused(curves: dict) -> None:
    body = orjson.loads(report.encode("evaluator", "e-1", T0, 60, None,
                                      Evaluator().window.tally(), {}))
    body["curves"] = curves
    assert report.parse(orjson.dumps(body)) is None
