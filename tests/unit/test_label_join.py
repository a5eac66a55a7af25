"""The label join pairs a transaction's features with its label, whichever comes first,
within bounds, and counts what it could not pair."""

import numpy as np

from services.detector.features import WIDTH, BatchFeatures
from services.detector.labels import LabelJoin
from services.generator.labels import label as generator_label

MINUTE = 60_000


def scored(*ids: str, ts: int = 0) -> BatchFeatures:
    """A scored batch whose rows are recognisable: row i is all i + 1."""
    matrix = np.repeat(np.arange(1, len(ids) + 1, dtype=float)[:, None], WIDTH, axis=1)
    return BatchFeatures(list(ids), [ts] * len(ids), matrix)


def label(tx_id: str, fraud: bool, ts: int = 0) -> bytes:
    """A label as the generator writes it to the labels topic."""
    return generator_label(tx_id, ts, "card_testing" if fraud else None)[1]


def test_a_label_after_its_transaction_pairs_with_the_features_it_was_scored_on() -> None:
    join = LabelJoin()
    assert len(join.remember(scored("a", "b", "c"))) == 0  # nothing labelled yet
    examples = join.labels([label("c", True), label("a", False)])
    assert examples.labels.tolist() == [1, 0]
    assert examples.matrix[:, 0].tolist() == [3.0, 1.0]  # c's row, then a's
    assert examples.matrix.shape == (2, WIDTH)
    assert join.waiting == (1, 0)  # b still waits for its label
    assert join.counters() == {"joined": 2, "unlabelled": 0, "unmatched": 0, "bad": 0}


def test_a_label_before_its_transaction_waits_for_it() -> None:
    join = LabelJoin()
    assert len(join.labels([label("b", True)])) == 0
    assert join.waiting == (0, 1)
    examples = join.remember(scored("a", "b"))
    assert examples.labels.tolist() == [1]
    assert examples.matrix[0, 0] == 2.0  # b's row
    assert join.waiting == (1, 0)
    assert join.joined == 1


def test_each_side_is_bounded_in_count_and_what_leaves_unpaired_is_counted() -> None:
    join = LabelJoin(max_pending=3)
    join.remember(scored("a", "b", "c", "d", "e"))
    assert join.waiting == (3, 0)
    assert join.unlabelled == 2  # a and b made room
    assert len(join.labels([label("a", True)])) == 0  # too late: its features are gone
    assert len(join.labels([label("e", True)])) == 1
    join.labels([label(f"future-{i}", False) for i in range(4)])
    assert join.waiting == (2, 3)
    assert join.unmatched == 2  # the label of a, then the first label of the future
    assert join.counters() == {"joined": 1, "unlabelled": 2, "unmatched": 2, "bad": 0}


def test_each_side_is_bounded_in_event_time() -> None:
    join = LabelJoin(max_age_ms=10 * MINUTE)
    join.remember(scored("old", ts=0))
    join.labels([label("early", True, ts=MINUTE)])
    join.remember(scored("recent", ts=5 * MINUTE))
    assert join.waiting == (2, 1)
    join.remember(scored("now", ts=11 * MINUTE + 1))  # "old" and "early" are over 10 min old
    assert join.waiting == (2, 0)
    assert (join.unlabelled, join.unmatched) == (1, 1)
    assert join.labels([label("recent", False, ts=5 * MINUTE)]).labels.tolist() == [0]


def test_unreadable_labels_are_counted_and_the_rest_still_pair() -> None:
    join = LabelJoin()
    join.remember(scored("a"))
    examples = join.labels([None, b"not json", b'{"id": "a"}', b'{"fraud": true}',
                            label("a", True)])
    assert examples.labels.tolist() == [1]
    assert join.bad == 4


def test_batch_after_batch_every_labelled_transaction_pairs_and_the_rest_stay_bounded() -> None:
    join = LabelJoin(max_pending=2_000)
    joined = 0
    for n in range(30):  # one in ten never labelled; labels a batch behind
        ids = [f"{n}-{i}" for i in range(1_000)]
        join.remember(BatchFeatures(ids, [n * MINUTE // 10] * 1_000,
                                    np.full((1_000, WIDTH), float(n))))
        if n:
            examples = join.labels(label(f"{n - 1}-{i}", i % 50 == 1, ts=n * MINUTE // 10)
                                   for i in range(1_000) if i % 10)
            assert np.all(examples.matrix == n - 1)  # each label met its own row
            assert int(examples.labels.sum()) == 20
            joined += len(examples)
    assert joined == 29 * 900
    # Each batch made room by dropping the unlabelled ones before the one it follows.
    assert join.waiting == (1_100, 0)  # the last batch, and the one before's unlabelled
    assert join.unlabelled == 28 * 100
