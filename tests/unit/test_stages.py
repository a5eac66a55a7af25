"""The two stages of the stateful detector, with the repartition topic played by a list:
a target's payers seen together whoever owns their sources, and state that moves with a
partition from one instance to another."""

from __future__ import annotations

import zlib

import msgspec
import orjson

from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import Forwarded, SourceStage, TargetStage
from services.detector.stateful import InternalTopics, StatefulDetector
from services.transaction import MAX_BYTES
from tests.unit.test_routing import FakeRecord

PARTITIONS = 4


def transfer(i: int, source: str, target: str, amount: float = 1000.0) -> FakeRecord:
    value = orjson.dumps({"id": f"t{i}", "ts": 1_000_000 + i * 1000, "source": source,
                          "target": target, "amount": amount, "currency": "EUR"})
    return FakeRecord(value, source.encode(), i, _partition=partition_of(source.encode()))


def partition_of(key: bytes) -> int:
    return zlib.crc32(key) % PARTITIONS  # any stable hash will do for the test


def repartition(forwards: list[tuple[bytes, bytes, list]]) -> dict[int, list[FakeRecord]]:
    """What the repartition topic does: each forward lands in its target's partition."""
    topic: dict[int, list[FakeRecord]] = {}
    for offset, (key, value, headers) in enumerate(forwards):
        partition = partition_of(key)
        topic.setdefault(partition, []).append(
            FakeRecord(value, key, offset, _headers=headers, _partition=partition))
    return topic


def both_stages(source: SourceStage, target: TargetStage,
                settings: RuleSettings) -> StatefulDetector:
    """The stages as the detector holds them, for its settings and counters (no client
    is made until it is asked to read its labels or changelogs)."""
    return StatefulDetector("unused:9092", "transactions", InternalTopics.of("g"), source,
                            target, settings)


def verdicts(routed) -> dict[str, dict]:
    return {orjson.loads(v)["id"]: {"key": k, **orjson.loads(v)}
            for k, v in routed.legit + routed.fraud}


def test_mule_fan_in_is_seen_whole_although_its_payers_are_spread_over_instances() -> None:
    # Two instances share the source partitions; 25 distinct payers to one mule.
    first, second = SourceStage(SourceRules, "a"), SourceStage(SourceRules, "b")
    records = [transfer(i, f"PAYER{i:07d}", "MULE00000001", 950.0 - i) for i in range(25)]
    forwards = (first.process(r for r in records if r.partition() < 2)[0]
                + second.process(r for r in records if r.partition() >= 2)[0])
    [(_, arriving)] = repartition(forwards).items()
    owner = TargetStage(TargetRules, "b")
    out = verdicts(owner.process(sorted(
        arriving, key=lambda r: msgspec.msgpack.decode(r.value(), type=Forwarded).ts)))
    assert len(out) == 25
    fired = sorted(int(i[1:]) for i, v in out.items()
                   if {"rule": "fan_in", "reason": f"{v['detection']['features']['fan_in']:g} "
                       "distinct sources paid the target within 60 min"}
                   in v["detection"]["rules"])
    assert fired == list(range(19, 25))  # from the 20th distinct payer on
    assert all(v["key"] == f"PAYER{int(i[1:]):07d}".encode() for i, v in out.items())
    assert all(v["detection"]["fraud"] for v in out.values())  # 950 - i >= 900 as well


def test_state_moves_with_its_partition_through_the_changelog() -> None:
    source = SourceStage(SourceRules, "a")
    records = [transfer(i, f"PAYER{i:07d}", "MULE00000001", 10.0) for i in range(20)]
    forwards = repartition(source.process(records)[0])
    [(partition, arriving)] = forwards.items()
    leaving = TargetStage(TargetRules, "a")
    leaving.state.assign(partition, [])
    before = verdicts(leaving.process(arriving[:15]))
    assert not any(v["detection"]["fraud"] for v in before.values())
    changelog = [(key, value) for p, key, value in leaving.state.changes() if p == partition]
    leaving.state.revoke(partition)

    taking_over = TargetStage(TargetRules, "b")
    assert taking_over.state.assign(partition, changelog) == len(changelog) > 0
    after = verdicts(taking_over.process(arriving[15:]))
    assert [v["detection"]["fraud"] for _, v in sorted(after.items())] == [
        False, False, False, False, True]  # t15..t19: the 20th payer tips it over

    cold = TargetStage(TargetRules, "c")  # without the changelog nothing would fire
    assert not any(v["detection"]["fraud"] for v in verdicts(cold.process(arriving[15:])).values())


def test_a_velocity_burst_is_caught_in_the_first_stage_and_reported_in_the_verdict() -> None:
    # The detector has watched the card's partition for ten minutes (one payment of
    # another account there) when the card first pays: a new account, whose burst is
    # judged by the count, having no pace of its own.
    settings = RuleSettings(new_account_s=600)
    source = SourceStage(lambda: SourceRules(settings), "a")
    target = TargetStage(lambda: TargetRules(settings), "a")
    earlier = FakeRecord(orjson.dumps({"id": "e", "ts": 0, "source": "SHOPPER00000",
                                       "target": "SHOP", "amount": 20.0, "currency": "EUR"}),
                         b"SHOPPER00000", 0, _partition=partition_of(b"CARD00000001"))
    burst = [transfer(i, "CARD00000001", f"SHOP{i:08d}", 25.0) for i in range(8)]
    arriving = repartition(source.process([earlier, *burst])[0]).values()
    routed = target.process(r for records in arriving for r in records)
    fraud = [orjson.loads(v) for _, v in routed.fraud]
    assert [tx["id"] for tx in fraud] == ["t7"]
    assert fraud[0]["detection"]["rules"] == [
        {"rule": "velocity", "reason": "8 transactions from the source within 60 s"}]


def test_dead_letters_and_bare_records_in_the_first_stage() -> None:
    source, target = SourceStage(SourceRules, "a"), TargetStage(TargetRules, "a")
    bare = orjson.dumps({"source": "A", "target": "B", "amount": 5, "currency": "EUR",
                         "detection": "forged"})
    forwards, dead = source.process([FakeRecord(b"\xffjunk", b"k1"), FakeRecord(bare, b"k2")])
    assert [(k, v) for k, v, _ in dead] == [(b"k1", b"\xffjunk")]
    assert dict(dead[0][2])["dlq.reason"].startswith(b"not JSON")
    [(key, value, headers)] = forwards
    assert (key, headers) == (b"B", None)  # the record's own key travels in the value
    assert msgspec.msgpack.decode(value, type=Forwarded).key == b"k2"
    routed = target.process(repartition(forwards)[partition_of(b"B")])
    [(out_key, out_value)] = routed.legit
    out = orjson.loads(out_value)
    assert out_key == b"k2"
    assert (out["id"], out["ts"]) == ("queueing.transactions-2-7", 1_700_000_000_123)
    assert out["detection"]["fraud"] is False  # the forged detection is replaced


def test_a_valid_transaction_too_large_to_forward_is_a_dead_letter() -> None:
    huge = orjson.dumps({"id": "t1", "ts": 1, "source": "A", "target": "B", "amount": 5,
                         "currency": "EUR", "note": "x" * MAX_BYTES})
    forwards, dead = SourceStage(SourceRules, "a").process([FakeRecord(huge, b"A")])
    assert not forwards
    [(key, value, headers)] = dead
    assert (key, value) == (b"A", huge)  # kept whole, as it came
    assert dict(headers)["dlq.reason"].startswith(b"record too large")


def test_a_foreign_record_on_the_repartition_topic_is_a_dead_letter() -> None:
    target = TargetStage(TargetRules, "a")
    routed = target.process([FakeRecord(b'{"not": "forwarded"}', b"x")])
    assert [(k, v) for k, v, _ in routed.dlq] == [(b"x", b'{"not": "forwarded"}')]


def test_the_second_stage_scores_a_batch_with_the_model_and_says_so_in_the_verdict() -> None:
    from services.detector.model import OnlineModel
    from tests.unit.test_model import examples

    model = OnlineModel(background=False, min_examples=100)
    source, target = SourceStage(lambda: SourceRules(novelty=True), "a"), TargetStage(
        TargetRules, "a", model=model)
    testing = [transfer(i, "CARD00000001", f"SHOP{i:08d}", 0.5) for i in range(12)]
    arriving = repartition(source.process(testing)[0]).values()
    forwarded = [r for records in arriving for r in records]
    cold = target.process(forwarded)
    assert {orjson.loads(v)["detection"]["score"] for _, v in cold.legit + cold.fraud} == {None}
    assert cold.features is not None and len(cold.features.ids) == 12

    model.learn(*examples(600))  # card testing against everyday payments
    warm = target.process(forwarded)
    verdicts = [orjson.loads(v)["detection"] for _, v in warm.fraud]
    assert len(verdicts) == 12  # every tiny payment to a new shop, not just the 8th on
    cutoff = target.cutoff
    assert all(d["score"] >= cutoff and {"rule": "model", "reason": f"score {d['score']:.2f} "
                                          f">= {cutoff:g}"} in d["rules"] for d in verdicts)
    assert sorted(warm.features.ids) == sorted(f"t{i}" for i in range(12))


def with_a_model() -> tuple[SourceStage, TargetStage, StatefulDetector]:
    """Both stages with every rule and a model that tells card testing apart (taught
    directly, not through the labels topic)."""
    from services.detector.model import OnlineModel
    from tests.unit.test_model import examples

    model = OnlineModel(background=False, min_examples=100)
    settings = RuleSettings()
    source = SourceStage(lambda: SourceRules(settings, novelty=True), "a")
    target = TargetStage(lambda: TargetRules(settings, novelty=True), "a", model=model)
    detector = both_stages(source, target, settings)
    model.learn(*examples(600))
    return source, target, detector


def test_the_models_cutoff_and_veto_change_the_verdict_live() -> None:
    source, target, detector = with_a_model()
    target.model_decides = True  # as once it beats the rules (the next story)
    testing = [transfer(i, "CARD00000001", f"SHOP{i:08d}", 0.5) for i in range(12)]
    forwarded = [r for records in repartition(source.process(testing)[0]).values()
                 for r in records]

    def judged() -> list[dict]:
        routed = target.process(forwarded)
        return [orjson.loads(v)["detection"] for _, v in routed.legit + routed.fraud]

    first = judged()
    assert all(d["fraud"] for d in first)  # the model flags each (see the test above)
    # Each verdict says what was in force and who decided, for the console's detail.
    assert all(d["decided_by"] == "model" and d["model_trusted"] and
               (d["cutoff"], d["veto"]) == (target.cutoff, target.veto) for d in first)
    detector.apply("threshold", 0.01)  # every transfer now fires the threshold rule
    detector.apply("model_cutoff", 1.0)
    detector.apply("model_veto", 1.0)  # a rule's hit alone never makes it fraud
    assert detector.values()["model_cutoff"] == detector.values()["model_veto"] == 1.0
    for d in judged():
        assert d["fraud"] == (d["score"] >= 1.0)
        assert any(hit["rule"] == "amount_threshold" for hit in d["rules"])
        assert d["decided_by"] == ("model" if d["fraud"] else "model_veto")
    detector.apply("model_veto", 0.0)  # a rule's hit is fraud whatever the score
    assert all(d["fraud"] for d in judged())


def test_records_too_late_for_the_windows_are_counted_for_the_heartbeat() -> None:
    settings = RuleSettings()
    source = SourceStage(lambda: SourceRules(settings), "a")
    target = TargetStage(lambda: TargetRules(settings), "a")
    detector = both_stages(source, target, settings)
    # Transfer 20 is 20 s older than transfer 40 (ticks are 1 s): past the 10 s of grace.
    late = [transfer(40, "CARD00000001", "SHOP00000001"),
            transfer(20, "CARD00000001", "SHOP00000001")]
    forwarded = [r for records in repartition(source.process(late)[0]).values()
                 for r in records]
    assert len(verdicts(target.process(forwarded))) == 2  # judged all the same
    assert detector.counters()["late"] == 2  # once for velocity, once for fan-in


def test_the_model_decides_only_once_it_beats_the_rules_on_graded_labels() -> None:
    from services.detector.trust import ModelTrust

    source, target, detector = with_a_model()  # nobody has seen it tell card testing apart
    detector.trust = ModelTrust(min_frauds=5)

    def card_testing(first: int) -> list[FakeRecord]:  # too few for the velocity rule
        testing = [transfer(i, "CARD00000001", f"SHOP{i:08d}", 0.5)
                   for i in range(first, first + 6)]
        return [r for records in repartition(source.process(testing)[0]).values()
                for r in records]

    routed = target.process(card_testing(0))
    shown = [orjson.loads(v)["detection"] for _, v in routed.legit]
    assert len(shown) == 6 and not routed.fraud, "the rules decide: none fired"
    assert all(d["score"] >= target.cutoff and not d["rules"] for d in shown)
    detector.remember(routed)
    detector.take_labels([orjson.dumps({"id": f"t{i}", "fraud": True}) for i in range(6)])
    assert target.model_decides  # it caught 6 of 6, the rules none
    model_says = detector.counters()["model"]
    assert (model_says["deciding"], model_says["f1_model"], model_says["f1_rules"]) == \
        (True, 1.0, 0.0)
    routed = target.process(card_testing(100))
    assert len(routed.fraud) == 6 and not routed.legit, "now the model decides"
