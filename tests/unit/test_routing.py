"""The detector's core routes every record exactly once, and says why."""

from dataclasses import dataclass

import orjson
import pytest

from services.detector.routing import DLQ, FRAUD, LEGIT, Router
from services.generator.synthetic import TutorialProfile
from services.transaction import MAX_BYTES


@dataclass
class FakeRecord:
    _value: bytes | None
    _key: bytes | None = b"k"
    _offset: int = 7
    _headers: list[tuple[str, bytes]] | None = None
    _partition: int = 2

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return "queueing.transactions"

    def partition(self) -> int:
        return self._partition

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_123)


def route(router: Router, records: list[FakeRecord]) -> list[tuple]:
    """``(destination, key, value, headers)`` of every output, whatever its list."""
    routed = router.route(records)
    return ([(LEGIT, k, v, None) for k, v in routed.legit]
            + [(FRAUD, k, v, None) for k, v in routed.fraud]
            + [(DLQ, k, v, h) for k, v, h in routed.dlq])


def tx(amount: float, **extra: object) -> bytes:
    return orjson.dumps({"id": "x", "ts": 5, "source": "A", "target": "B",
                         "amount": amount, "currency": "EUR", **extra})


@pytest.mark.parametrize(("amount", "destination"), [
    (899.99, LEGIT), (900, FRAUD), (900.0, FRAUD), (1000, FRAUD), (1, LEGIT)])
def test_threshold_rule(amount: float, destination: str) -> None:
    [(where, key, value, headers)] = route(Router("d1"), [FakeRecord(tx(amount))])
    assert where == destination
    assert key == b"k"
    assert headers is None
    detection = orjson.loads(value)["detection"]
    assert detection["fraud"] is (destination == FRAUD)
    assert detection["instance"] == "d1"
    if destination == FRAUD:
        assert detection["rules"] == [{"rule": "amount_threshold", "reason": "amount >= 900"}]


def test_threshold_changes_live() -> None:
    router = Router("d1")
    router.set_threshold(100)
    [(where, _, value, _)] = route(router, [FakeRecord(tx(150))])
    assert where == FRAUD
    assert orjson.loads(value)["detection"]["threshold"] == 100


def test_bare_tutorial_record_gets_id_and_ts_from_its_origin() -> None:
    bare = orjson.dumps({"source": "A", "target": "B", "amount": 950.0, "currency": "EUR"})
    [(where, _, value, _)] = route(Router("d1"), [FakeRecord(bare, _offset=41)])
    out = orjson.loads(value)
    assert where == FRAUD
    assert out["id"] == "queueing.transactions-2-41"
    assert out["ts"] == 1_700_000_000_123


def test_garbage_goes_to_the_dead_letter_topic_untouched_with_its_reason() -> None:
    router = Router("d1")
    routed = route(router, [FakeRecord(b"\x00garbage"), FakeRecord(tx(5))])
    (after, *_), (where, key, value, headers) = routed
    assert (where, key, value) == (DLQ, b"k", b"\x00garbage")
    header = dict(headers)
    assert header["dlq.reason"].startswith(b"not JSON")
    assert (header["dlq.topic"], header["dlq.partition"], header["dlq.offset"]) == (
        b"queueing.transactions", b"2", b"7")
    assert after == LEGIT
    assert router.counters.as_dict() == {"legit": 1, "fraud": 0, "dlq": 1}


@pytest.mark.parametrize("with_rules", [False, True])
def test_a_transaction_too_large_for_its_verdict_is_a_dead_letter(with_rules: bool) -> None:
    """Near a topic's 1 MB limit a verdict would not go out, and the detector would stop
    on the record at every restart: it goes to the dead letters whole instead."""
    from services.detector.rules import StatefulRules

    router = Router("d1", rules=StatefulRules() if with_rules else None)
    huge = tx(5, note="x" * MAX_BYTES)
    routed = router.route([FakeRecord(huge), FakeRecord(tx(5))])
    assert len(routed.legit) == 1 and not routed.fraud
    [(key, value, headers)] = routed.dlq
    assert (key, value) == (b"k", huge)
    assert dict(headers)["dlq.reason"].startswith(b"record too large")


def test_generated_traffic_is_about_ten_percent_fraud() -> None:
    records = [FakeRecord(v) for _, v in TutorialProfile(seed=1).batch(20_000, 0)]
    router = Router("d1")
    router.route(records)
    assert router.counters.dlq == 0
    assert 0.09 < router.counters.fraud / 20_000 < 0.11


def test_generator_content_is_reproducible_with_a_seed() -> None:
    def strip(batch: list[tuple[bytes, bytes]]) -> list[dict]:
        return [{k: v for k, v in orjson.loads(value).items() if k != "id"}
                for _, value in batch]

    a, b = TutorialProfile(seed=3).batch(50, 0), TutorialProfile(seed=3).batch(50, 0)
    assert strip(a) == strip(b)
    # However a run is cut into batches (that depends on timing), the stream is the same.
    whole, cut = TutorialProfile(seed=3).batch(3000, 0), TutorialProfile(seed=3)
    pieces = [tx for size in (1, 7, 1023, 2, 1500, 467) for tx in cut.batch(size, 0)]
    assert strip(pieces) == strip(whole) and strip(whole[:50]) == strip(a)
    assert strip(TutorialProfile(seed=4).batch(50, 0)) != strip(a)
    assert all(key == orjson.loads(value)["source"].encode() for key, value in a)
    ids = {orjson.loads(v)["id"] for _, v in a + b}
    assert len(ids) == 100  # ids stay unique across runs


def test_with_rules_a_burst_is_fraud_and_the_verdict_says_which_rule_and_why() -> None:
    from services.detector.rules import StatefulRules

    router = Router("d1", rules=StatefulRules())
    # The detector has watched the stream for an hour when a card it never saw starts
    # paying: a new account, whose burst is judged by the count (it has no pace).
    hour = 3_600_000
    burst = [FakeRecord(orjson.dumps({"id": f"c{i}", "ts": hour + i, "source": "CARD",
                                      "target": f"SHOP{i}", "amount": 25.0,
                                      "currency": "EUR"}), _offset=i) for i in range(8)]
    routed = router.route([FakeRecord(tx(20, id="first", ts=0)), *burst,
                           FakeRecord(tx(950, ts=hour + 9)), FakeRecord(b"nope")])
    assert [orjson.loads(v)["id"] for _, v in routed.legit] == \
        ["first", *(f"c{i}" for i in range(7))]
    last_of_burst, large = (orjson.loads(v)["detection"] for _, v in routed.fraud)
    assert last_of_burst["rules"] == [
        {"rule": "velocity", "reason": "8 transactions from the source within 60 s"}]
    assert last_of_burst["features"]["velocity"] == 8
    assert large["rules"][0] == {"rule": "amount_threshold", "reason": "amount >= 900"}
    assert set(large["features"]) == {"velocity", "velocity_usual", "gap_s", "fan_in",
                                      "amount_z", "amount_log_z", "amount_ratio", "history",
                                      "new_account", "tiny_payees", "fan_in_new",
                                      "new_payer_share"}
    assert len(routed.dlq) == 1
    assert router.counters.as_dict() == {"legit": 8, "fraud": 2, "dlq": 1}


def test_without_a_score_any_rule_that_fired_makes_it_fraud() -> None:
    from services.detector.routing import decide
    from services.detector.rules import Hit

    burst = [Hit("velocity", "9 transactions")]
    assert decide(burst, None) == (True, burst)
    assert decide([], None) == (False, [])


def test_a_confident_model_makes_fraud_alone_and_can_clear_a_rule_hit() -> None:
    from services.detector.routing import decide
    from services.detector.rules import Hit

    large = [Hit("amount_threshold", "amount >= 900")]
    fraud, hits = decide([], 0.8, cutoff=0.5, veto=0.05)
    assert fraud and hits == [Hit("model", "score 0.80 >= 0.5")]
    # A rule's hit stands while the model is unsure either way...
    assert decide(large, 0.2, cutoff=0.5, veto=0.05) == (True, large)
    # ...and not when the model is sure it is everyday; the verdict still names it.
    assert decide(large, 0.01, cutoff=0.5, veto=0.05) == (False, large)
    assert decide([], 0.2, cutoff=0.5, veto=0.05) == (False, [])


def test_a_verdict_says_who_decided_it() -> None:
    from services.detector.routing import decider

    assert decider(True, None, 0.5, 0.05) == "rules"  # no model trained yet
    assert decider(False, 0.8, 0.5, 0.05) == "model"
    assert decider(True, 0.01, 0.5, 0.05) == "model_veto"
    assert decider(True, 0.2, 0.5, 0.05) == "rules"
    assert decider(False, 0.8, 0.5, 0.05, decides=False) == "rules"  # shown, not trusted

