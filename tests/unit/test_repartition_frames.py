"""The repartition topic carries a record per destination partition and batch: a
target's forwards still reach its partition whole and in order, the second stage
judges them exactly as forwards one a record, and a restart inside a framed record
neither judges a forward twice nor loses one."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.repartition import (
    FORWARDS_PER_RECORD,
    FRAME_BYTES,
    FRAME_KEY,
    FRAMED,
    PACKED,
    by_rows,
    figures_matrix,
    frame,
    is_framed,
    offset_of,
    pack_figures,
    row_figures,
    rows_in,
)
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.stages import ForwardRow, SourceStage, TargetStage
from tests.unit.test_forwarded import PARTITIONS, partition_of, scenario
from tests.unit.test_routing import FakeRecord

Output = tuple[str, bytes | None, bytes]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"A", b"B", b"shop", b"x" * 30, b""]),
                          st.sampled_from([0, 10, 100_000]),
                          st.lists(st.floats(allow_nan=False), min_size=2, max_size=2)),
                max_size=3000))
def test_each_target_lands_whole_and_in_order_in_its_partition(
        drawn: list[tuple[bytes, int, list[float]]]) -> None:
    rows = [(b"." * padding, f"t{n}", "S", target.decode(), 1.0, n, [],
             np.array(figures, "<f8").tobytes(), 0, n, None)
            for n, (target, padding, figures) in enumerate(drawn)]
    records = frame([target for target, _, _ in drawn], rows, ("a", "b"), PARTITIONS)
    seen: list[tuple[int, ForwardRow]] = []
    for partition, value in records:
        assert is_framed(value)
        tag, count, names, inside = msgspec.msgpack.decode(
            value, type=tuple[int, int, list[str], list[ForwardRow]])
        assert tag == PACKED and names == ["a", "b"] and count == len(inside) == rows_in(value)
        assert 0 < len(inside) <= FORWARDS_PER_RECORD
        # Within a topic's size limit, unless a row alone is larger.
        assert len(value) < FRAME_BYTES or len(inside) == 1
        seen.extend((partition, row) for row in inside)
    assert sorted(row.ts for _, row in seen) == list(range(len(drawn)))
    for partition, row in seen:  # as the client's partitioner puts a record so keyed
        assert partition == partition_of(row.target.encode())
        assert row_figures(row.figures) == list(drawn[row.ts][2])
    for target in {target for target, _, _ in drawn}:  # in the order they were made
        mine = [row.ts for _, row in seen if row.target == target.decode()]
        assert mine == sorted(mine)


def test_a_lone_forward_is_not_taken_for_a_frame() -> None:
    [(_, value, _)] = SourceStage(SourceRules, "a").process(scenario(1, tps=1))[0]
    assert not is_framed(value)


def never(n: int) -> bool:
    return False


def as_earlier(value: bytes) -> bytes:
    """A frame as an earlier detector wrote it: each row's figures a list of numbers."""
    tag, count, names, rows = msgspec.msgpack.decode(
        value, type=tuple[int, int, list[str], list[ForwardRow]])
    assert tag == PACKED
    listed = [(*row[:7], row_figures(row[7]), *row[8:])
              for row in map(msgspec.structs.astuple, rows)]
    return msgspec.msgpack.encode((FRAMED, count, names, listed))


class Pipe:
    """Both stages, the repartition topic as a list of records per partition, and
    where the second stage has read each partition up to. ``lists`` and ``lone``: which
    framed records (by their number) an earlier detector wrote, and which batches
    (by theirs) a detector that forwards one record a transaction."""

    def __init__(self, framed: bool, lists: Callable[[int], bool] = never,
                 lone: Callable[[int], bool] = never) -> None:
        self.framed, self.lists, self.lone = framed, lists, lone
        self.batches = self.frames = 0
        self.source = SourceStage(lambda: SourceRules(RuleSettings(), novelty=True), "a",
                                  idle_after=float("inf"))
        self.target = self.fresh_target()
        self.topic: dict[int, list[FakeRecord]] = {p: [] for p in range(PARTITIONS)}
        self.read = dict.fromkeys(range(PARTITIONS), 0)

    @staticmethod
    def fresh_target() -> TargetStage:
        return TargetStage(lambda: TargetRules(RuleSettings(), novelty=True), "a",
                           threshold=600.0, upstream=PARTITIONS)

    def write(self, records: list[FakeRecord]) -> None:
        """The first stage's forwards of ``records``, then its progress markers."""
        self.batches += 1
        if self.framed and not self.lone(self.batches):
            framed, dead = self.source.process_framed(records, PARTITIONS)
            out = []
            for p, value in framed:
                self.frames += 1
                out.append((p, FRAME_KEY, as_earlier(value) if self.lists(self.frames)
                            else value))
        else:
            forwards, dead = self.source.process(records)
            out = [(partition_of(key), key, value) for key, value, _ in forwards]
        assert not dead
        marker = self.source.progress(0.0)
        if marker is not None:
            out.extend((p, None, marker) for p in range(PARTITIONS))
        for partition, key, value in out:
            log = self.topic[partition]
            log.append(FakeRecord(value, key, len(log), _partition=partition))

    def judge(self) -> list[Output]:
        """The second stage reads what is new on every partition."""
        records = []
        for partition, log in self.topic.items():
            records.extend(log[self.read[partition]:])
            self.read[partition] = len(log)
        routed = self.target.process(records)
        assert not routed.dlq
        return [("legit", k, v) for k, v in routed.legit] + \
            [("fraud", k, v) for k, v in routed.fraud]

    def restart(self) -> None:
        """The second stage dies after a commit: its state is its changelog, and it
        reads each partition again from the committed offset, which a record still
        waiting for the watermark held back."""
        changelog: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition, key, value in self.target.state.changes():
            changelog.setdefault(partition, []).append((key, value))
        for partition, merge in self.target.state.clocks.items():
            oldest = merge.oldest_position()
            if oldest is not None:
                self.read[partition] = offset_of(oldest)
        self.target = self.fresh_target()
        for partition in range(PARTITIONS):
            self.target.state.assign(partition, changelog.get(partition, []))


def test_framed_forwards_are_judged_as_forwards_one_a_record_across_a_restart() -> None:
    records = scenario(30, tps=100)
    quarter, half = len(records) // 4, len(records) // 2
    # Upstream partitions 2 and 3 fall behind (their first quarter only, at first): the
    # second stage releases part of each framed record and holds the rest back.
    ahead = [r for r in records[:half] if r.partition() < 2 or records.index(r) < quarter]
    steps = [ahead, [r for r in records[quarter:half] if r.partition() >= 2],
             records[half:]]
    outputs: dict[str, list[Output]] = {}
    for name, framed, restart in (("one a record", False, False), ("framed", True, False),
                                  ("framed, restarted", True, True)):
        pipe = Pipe(framed)
        out: list[Output] = []
        for step, batch in enumerate(steps):
            for start in range(0, len(batch), 400):
                pipe.write(batch[start:start + 400])
                out.extend(pipe.judge())
            if step == 0:
                held = sum(len(merge) for merge in pipe.target.state.clocks.values())
                assert 0 < held < len(ahead)
                if restart:
                    pipe.restart()
        outputs[name] = out
    assert len(outputs["one a record"]) == len(records)  # each judged once
    reference = sorted(outputs["one a record"], key=str)
    assert sorted(outputs["framed"], key=str) == reference
    assert sorted(outputs["framed, restarted"], key=str) == reference


def test_frames_of_earlier_detectors_and_lone_forwards_are_judged_as_packed_ones() -> None:
    """Mid-upgrade the repartition topic holds frames whose figures are lists, and
    lone forwards, beside packed frames, even in one partition and one batch."""
    records = scenario(30, tps=100)
    outputs: dict[str, list[Output]] = {}
    for name, lists, lone in (("packed", never, never), ("lists", lambda n: True, never),
                              ("mixed", lambda n: n % 2 == 0, lambda n: n % 3 == 0)):
        pipe = Pipe(True, lists, lone)
        out: list[Output] = []
        for start in range(0, len(records), 200):
            pipe.write(records[start:start + 200])
            if start % 400:  # two batches a read: a lone batch and a framed one together
                out.extend(pipe.judge())
        out.extend(pipe.judge())
        outputs[name] = sorted(out, key=str)
    assert len(outputs["packed"]) == len(records)
    assert outputs["lists"] == outputs["packed"]
    assert outputs["mixed"] == outputs["packed"]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 30).flatmap(lambda count: st.lists(st.one_of(
    st.lists(st.integers(-(2**62), 2**62), min_size=count, max_size=count).map(
        lambda values: np.array(values, np.int64)),
    st.lists(st.floats(), min_size=count, max_size=count).map(
        lambda values: np.array(values, np.float64))), max_size=6).map(
    lambda columns: (count, columns))))
def test_packed_figures_are_the_numbers_a_list_of_them_carries(
        drawn: tuple[int, list[np.ndarray]]) -> None:
    """Any figures (counts, NaN, infinities, -0.0) reach the second stage the same,
    bit for bit, packed or as the lists of earlier frames."""
    count, columns = drawn
    packed = pack_figures(columns, count)
    as_lists = msgspec.msgpack.decode(msgspec.msgpack.encode(
        [list(row) for row in zip(*(column.tolist() for column in columns), strict=True)]
        if columns else [[] for _ in range(count)]), type=list[list[float]])
    expected = np.array(as_lists, np.float64).reshape(count, len(columns))
    got = figures_matrix(msgspec.msgpack.decode(msgspec.msgpack.encode(packed),
                                                type=list[bytes | list[float]]), len(columns))
    assert got.dtype == np.float64 and got.tobytes() == expected.tobytes()
    mixed = [row if at % 2 else as_lists[at] for at, row in enumerate(packed)]
    assert figures_matrix(mixed, len(columns)).tobytes() == expected.tobytes()
    alone = [row_figures(row) for row in packed]  # a row made a lone forward's again
    assert np.array(alone, np.float64).reshape(count, len(columns)).tobytes() == \
        expected.tobytes()


@pytest.mark.parametrize(("decides", "alone"), [(True, True), (True, False), (False, True)])
def test_with_a_model_framed_rows_give_the_same_verdicts_and_rows_to_learn_from(
        decides: bool, alone: bool) -> None:
    """The columns path scores, decides and writes as the one a record does, whether
    the model decides, decides without lone alarms, or is only shown."""
    from services.detector.model import OnlineModel
    from tests.unit.test_model import examples

    model = OnlineModel(background=False, min_examples=100)
    model.learn(*examples(600))
    records = scenario(10, tps=100)
    seen: dict[bool, tuple[list[Output], list[object]]] = {}
    for framed in (False, True):
        source = SourceStage(lambda: SourceRules(RuleSettings(), novelty=True), "a")
        target = TargetStage(lambda: TargetRules(RuleSettings(), novelty=True), "a",
                             threshold=600.0, model=model)
        target.model_decides, target.model_alone = decides, alone
        out: list[Output] = []
        rows: list[object] = []
        for start in range(0, len(records), 250):
            batch = records[start:start + 250]
            if framed:
                onward = [FakeRecord(value, FRAME_KEY, n, _partition=p) for n, (p, value) in
                          enumerate(source.process_framed(batch, PARTITIONS)[0])]
            else:
                onward = [FakeRecord(value, key, n) for n, (key, value, _) in
                          enumerate(source.process(batch)[0])]
            routed = target.process(onward)
            out += [("legit", k, v) for k, v in routed.legit] + \
                [("fraud", k, v) for k, v in routed.fraud]
            assert routed.features is not None and routed.features.verdicts is not None
            by_id = dict(zip(routed.features.ids, zip(
                routed.features.ts, routed.features.matrix.tolist(),
                routed.features.verdicts.tolist(), strict=True), strict=True))
            rows += sorted(by_id.items())
        seen[framed] = (sorted(out, key=str), rows)
    assert seen[True] == seen[False]
    assert any(b'"model"' in value for _, _, value in seen[True][0]) == (decides and alone)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(1, 40), st.none()), max_size=60), st.integers(1, 50))
def test_framed_records_are_judged_in_runs_of_a_batch_of_forwards(
        counts: list[int | None], most: int) -> None:
    """Each framed record says how many forwards it holds; a catch-up that reads many
    of them at once is judged a batch's worth of forwards at a time."""
    records = []
    for n, count in enumerate(counts):
        if count is None:  # a progress marker
            records.append(FakeRecord(b'{"watermarks":{}}', None, n))
            continue
        rows = [(b"{}", f"t{n}.{i}", "S", "T", 1.0, n, [], b"", 0, n, None)
                for i in range(count)]
        [(_, value)] = frame([b"T"] * count, rows, (), 1)
        assert rows_in(value) == count
        records.append(FakeRecord(value, FRAME_KEY, n))
    runs = list(by_rows(records, most))
    assert [record for run in runs for record in run] == records  # all, in order
    for run in runs:
        held = sum(rows_in(r.value()) for r in run if r.key() is not None)
        assert held <= most or sum(r.key() is not None for r in run) == 1


def test_transactions_the_first_stage_must_write_anew_are_framed_as_lone_forwards() -> None:
    """A tutorial record without its id or time, one that holds a detection, one with
    spaces after its object: framed, each is written as its lone forward writes it."""
    records = scenario(3, tps=100)
    for at, record in enumerate(records):
        tx = orjson.loads(record.value())  # type: ignore[arg-type]
        if at % 4 == 1:
            del tx["id"], tx["ts"]
        elif at % 4 == 2:
            tx["detection"] = {"fraud": True, "reasons": ["an old verdict"]}
        record._value = orjson.dumps(tx) + (b"  \n" if at % 4 == 3 else b"")
    outputs = []
    for framed in (False, True):
        pipe = Pipe(framed)
        pipe.write(records)
        outputs.append(sorted(pipe.judge(), key=str))
    assert len(outputs[0]) == len(records)
    assert outputs[1] == outputs[0]
    ids = {orjson.loads(value)["id"] for _, _, value in outputs[1]}
    assert f"queueing.transactions-{records[1].partition()}-{records[1].offset()}" in ids
