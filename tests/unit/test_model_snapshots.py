"""Model snapshots: a detector that starts takes the group's newest model and scores
with it at once, exactly as the model it came from; a snapshot that does not fit is
refused with its reason, and the detector learns from scratch."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError

from services.detector.model import LogisticSGD, OnlineModel, SmallNet
from services.detector.snapshots import SAVE_EVERY, ModelSnapshots
from tests.unit.test_model import examples


def trained(learner: type = SmallNet, **settings: Any) -> OnlineModel:
    model = OnlineModel(learner=learner, background=False, min_examples=100,
                        clock=lambda: 1000.0, **settings)
    model.learn(*examples(600))
    assert model.version == 1
    return model


def through_kafka(snapshot: dict[str, Any] | None) -> Any:
    """What a reader of the topic gets: the JSON bytes, decoded."""
    return orjson.loads(orjson.dumps(snapshot))


@pytest.mark.parametrize("learner", [SmallNet, LogisticSGD])
def test_a_restored_model_scores_exactly_as_the_one_it_was_taken_from(learner: type) -> None:
    model = trained(learner)
    restored = OnlineModel(learner=learner, background=False, clock=lambda: 1090.0)
    restored.restore(through_kafka(model.snapshot()))
    fresh = examples(300, seed=1)[0]
    assert np.array_equal(restored.score(fresh), model.score(fresh))
    assert restored.status() | {"examples": None} == {
        "version": 1, "trained_at": 1000.0, "age_s": 90.0, "restored": True,
        "examples": None, "retraining": False, "failures": 0}


def test_a_restored_model_learns_online_then_retrains_as_a_grown_model() -> None:
    restored = OnlineModel(background=False, min_examples=100, retrain_every=1000,
                           step=100, clock=lambda: 2000.0)
    restored.restore(through_kafka(trained().snapshot()))
    revision = restored.revision
    # A fresh model would retrain now (its examples doubled); a restored one is grown.
    restored.learn(*examples(600, seed=2))
    assert restored.version == 1 and restored.revision > revision, "online steps only"
    assert restored.failures == 0
    restored.learn(*examples(400, seed=3))
    assert restored.version == 2 and not restored.restored
    fresh, labels = examples(300, seed=4)
    scores = restored.score(fresh)
    assert scores is not None
    assert scores[labels == 1].min() > 0.5 > scores[labels == 0].max()


def corrupt(snapshot: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = through_kafka(snapshot)
    inner = copy
    for step in path[:-1]:
        inner = inner[step]
    if value is KeyError:
        del inner[path[-1]]
    else:
        inner[path[-1]] = value
    return copy


@pytest.mark.parametrize(("path", "value", "reason"), [
    (("format",), 2, "format 2, not 1"),
    (("features",), ["log_amount"], "trained on other features"),
    (("version",), "7", "version '7'"),
    (("learner", "learner"), "logistic_sgd", "a 'logistic_sgd' learner, not 'small_net'"),
    (("learner", "hidden"), [16, 8], "a network of 16, 8 units, not 64, 32"),
    (("learner", "mean"), [0.0] * 3, "mean: numbers of shape (3,)"),
    (("learner", "coefs", 1, 0, 0), float("nan"), "coefs[1]: numbers that are not finite"),
    (("learner", "coefs", 2), [], "coefs[2]: numbers of shape (0,), not (32, 1)"),
    (("learner", "intercepts"), [[0.0]], "3 layers of weights and 1 of biases, not 3"),
    (("learner", "scale", 0), 0.0, "input statistics out of range"),
    (("learner", "coefs"), KeyError, "not a model snapshot (KeyError: 'coefs')"),
    (("learner",), "weights", "not a model snapshot (TypeError"),
])
def test_a_snapshot_that_does_not_fit_is_refused_with_its_reason(
        path: tuple[Any, ...], value: Any, reason: str) -> None:
    snapshot = corrupt(trained().snapshot(), path, value)  # type: ignore[arg-type]
    model = OnlineModel(background=False)
    with pytest.raises(ValueError, match="^" + re.escape(reason)):
        model.restore(snapshot)
    assert model.version == 0 and model.score(examples(10)[0]) is None


def test_there_is_no_snapshot_before_a_first_model() -> None:
    assert OnlineModel(background=False).snapshot() is None


class Producer:
    """The one producer call snapshots make, recorded, and the cluster's answer."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, int]] = []
        self.refuse = False

    def produce(self, topic: str, value: bytes, key: bytes, partition: int,
                on_delivery: Callable[[Any, Any], None]) -> None:
        self.records.append((topic, value, key, partition))
        on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if self.refuse else None, None)


def test_a_snapshot_is_written_when_the_model_changed_at_most_every_so_often() -> None:
    now = [0.0]
    snapshots = ModelSnapshots("unused:9092", "g-model-snapshots", "d1", clock=lambda: now[0])
    producer = Producer()
    model = OnlineModel(background=False, min_examples=100, step=100)
    assert not snapshots.save(model, producer, force=True), "no model yet"
    model.learn(*examples(600))
    assert snapshots.save(model, producer)
    assert not snapshots.save(model, producer, force=True), "nothing new"
    model.learn(*examples(200, seed=1))  # online steps
    assert not snapshots.save(model, producer), "too soon"
    now[0] += SAVE_EVERY
    assert snapshots.save(model, producer)
    model.learn(*examples(200, seed=2))
    assert snapshots.save(model, producer, force=True), "as the detector stops"
    assert (snapshots.saved, snapshots.failed) == (3, 0)
    topic, value, key, partition = producer.records[-1]
    assert (topic, key, partition) == ("g-model-snapshots", b"model", 0)
    written = orjson.loads(value)
    assert written["instance"] == "d1" and written["version"] == model.version
    restored = OnlineModel(background=False)
    restored.restore(written)
    fresh = examples(50, seed=5)[0]
    assert np.array_equal(restored.score(fresh), model.score(fresh))
    producer.refuse = True  # a cluster whose topic takes smaller records
    model.learn(*examples(200, seed=6))
    assert snapshots.save(model, producer, force=True)
    assert (snapshots.saved, snapshots.failed) == (3, 1)
