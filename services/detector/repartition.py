"""How the first stage's forwards travel through the repartition topic: a record per
destination partition and batch, not a record per transaction. Pure.

Each forward must reach the partition of its target, so that one instance sees every
record of a target. Detectors before this one produced each forward as a record of
its own (``stages.Forwarded``), keyed by target, and the client chose the partition;
each forward then paid a produce, a fetch, a consume and the client's accessors twice
over, and carried its figures as a map of names. Now the forwards of a batch that go to
one partition travel as one record (``frame``), MessagePack
``[PACKED, count, names, [row, ...]]``: each row a forward's members
(``stages.ForwardRow``), its figures by place, in the order ``names`` gives once for
the record; ``count`` rows, said up front so that a reader can size its batches
(``rows_in``, ``by_rows``) before it decodes any. The first stage encodes a record in
one call, from the rules' figures in columns; the second decodes it in one call and
makes the figures columns again. A row's figures are the bytes of their float64s,
little-endian (``PACKED``, ``pack_figures``): twelve numbers would be twelve objects
to make on either side. Frames of earlier detectors (``FRAMED``) hold them as a list
of numbers, and are still read.

The partition is the one the client's default partitioner gives a record keyed by the
target (librdkafka's ``consistent_random``: CRC-32 of the key, modulo the partition
count), so a target keeps its partition, and its state, across an upgrade from
records keyed by target. Within a record the rows keep the order the first stage made
them in; the second stage tells them apart by their place in it (``position``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import msgspec
import numpy as np


class _Read(Protocol):
    """What ``by_rows`` reads of a consumed record."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


R = TypeVar("R", bound=_Read)
T = TypeVar("T")

FRAMED = 2  # a framed record's first member: a format number (figures as numbers)
PACKED = 3  # the same, each row's figures the bytes of their float64s (``FIGURE``)
FIGURE = np.dtype("<f8")  # a packed figure: little-endian whatever the machine
FRAME_KEY = b"forwards"  # not None: a record without a key is a progress marker
FORWARDS_PER_RECORD = 1024
# A record's rows stop short of about this many bytes (a lone row may pass it), far
# below a topic's default max.message.bytes of 1 MB: a record too large for the topic
# would fail every transaction that sends it.
FRAME_BYTES = 256 * 1024
ROW_BYTES = 256  # a row's members besides its transaction's bytes, about
PLACE_BITS = 20  # a position: the record's offset, then the forward's place in it
# A frame's first bytes: fixarray of 4, then the format number (either, to read).
_HEADERS = (bytes((0x94, FRAMED)), bytes((0x94, PACKED)))
_encode = msgspec.msgpack.Encoder().encode


def partition_of(target: bytes, partitions: int) -> int:
    """The partition a record keyed by ``target`` lands in under librdkafka's default
    partitioner (``consistent_random`` for a key that is not empty)."""
    return zlib.crc32(target) % partitions


def is_framed(value: bytes) -> bool:
    """Whether a repartition record's value is ``frame``'s (a lone forward is an array
    of its eleven members)."""
    return value[:2] in _HEADERS


def pack_figures(columns: list[np.ndarray], count: int) -> list[bytes]:
    """Each of ``count`` rows' figures, one a column, as the bytes of their float64s in
    the columns' order (a ``PACKED`` frame's rows): one conversion for the batch, then
    a slice a row."""
    if not columns:
        return [b""] * count
    packed = np.column_stack(columns).astype(FIGURE).tobytes()
    width = FIGURE.itemsize * len(columns)
    return [packed[at:at + width] for at in range(0, count * width, width)]


def figures_matrix(figures: list[bytes | list[float]], width: int) -> np.ndarray:
    """The figures of rows, a row each (``PACKED`` bytes, or an earlier frame's lists
    of numbers, or both across an upgrade), as a float64 matrix of ``width`` columns."""
    try:
        flat = np.frombuffer(b"".join(figures), FIGURE)  # type: ignore[arg-type]
    except TypeError:  # a list among them: rows of an earlier detector's frame
        return np.array([np.frombuffer(row, FIGURE) if type(row) is bytes else row
                         for row in figures], np.float64).reshape(len(figures), width)
    return flat.astype(np.float64).reshape(len(figures), width)


def row_figures(figures: bytes | list[float]) -> list[float]:
    """One row's figures as numbers, whichever frame it came in."""
    return np.frombuffer(figures, FIGURE).tolist() if type(figures) is bytes else \
        figures  # type: ignore[return-value]


def frame(targets: list[bytes], rows: list[tuple[Any, ...]], names: tuple[str, ...],
          partitions: int) -> list[tuple[int, bytes]]:
    """Forwards as rows (``stages.ForwardRow``'s members, the figures their bytes in
    the order of ``names``, ``pack_figures``), each to its target's partition:
    ``(partition, value)`` records, each partition's rows in the order given, within
    ``FORWARDS_PER_RECORD`` rows and about ``FRAME_BYTES`` a record (judged from each
    transaction's bytes)."""
    by_partition: dict[int, list[tuple[Any, ...]]] = {}
    crc = zlib.crc32
    for target, row in zip(targets, rows, strict=True):
        partition = crc(target) % partitions
        held = by_partition.get(partition)
        if held is None:
            by_partition[partition] = [row]
        else:
            held.append(row)
    listed = list(names)
    return [(partition, _encode((PACKED, len(chunk), listed, chunk)))
            for partition, held in by_partition.items() for chunk in _chunks(held)]


def rows_in(value: bytes | None) -> int:
    """How many forwards a repartition record's value holds: a framed record's count,
    read from its header; one for anything else (a lone forward)."""
    if not value or value[:2] not in _HEADERS:
        return 1
    first = value[2]
    if first < 0x80:  # a positive fixint
        return first
    if first == 0xCC:  # uint 8
        return value[3]
    return int.from_bytes(value[3:5], "big")  # uint 16: FORWARDS_PER_RECORD bounds it


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` cut into runs within both bounds of a record."""
    sizes = [len(row[0]) + ROW_BYTES for row in rows]
    if len(rows) <= FORWARDS_PER_RECORD and sum(sizes) <= FRAME_BYTES:
        return iter((rows,))  # the usual batch: one record
    return _runs(rows, sizes, FRAME_BYTES, FORWARDS_PER_RECORD)


def by_rows(records: list[R], most: int) -> Iterator[list[R]]:
    """Repartition records read together, cut into runs of at most ``most`` forwards
    (a record holding more goes alone): what the second stage judges at once, as many
    as a batch of lone forwards, so that a catch-up of framed records does not make
    one batch of a million. Progress markers (no key) count none."""
    return _runs(records, [0 if record.key() is None else rows_in(record.value())
                           for record in records], most, len(records))


def _runs(items: list[T], weights: list[int], most: int, most_items: int
          ) -> Iterator[list[T]]:
    """``items`` in order, cut into runs of at most ``most_items`` items weighing at most
    ``most`` together; an item heavier than ``most`` goes alone."""
    run: list[T] = []
    held = 0
    for item, weight in zip(items, weights, strict=True):
        if run and (len(run) == most_items or held + weight > most):
            yield run
            run, held = [], 0
        run.append(item)
        held += weight
    if run:
        yield run


def position(offset: int, place: int) -> int:
    """Where a forward was read: its record's offset and its place in the record, as
    one number that grows as the partition is read."""
    return (offset << PLACE_BITS) | place


def offset_of(position: int) -> int:
    """The offset of the record a forward was read from."""
    return position >> PLACE_BITS


def last_position(offset: int) -> int:
    """The position of the last forward a record at ``offset`` could hold: a record read
    before positions (one forward each) is done, all of it, at its offset."""
    return position(offset, (1 << PLACE_BITS) - 1)
