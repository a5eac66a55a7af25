"""How the first stage's forwards travel through the repartition topic: a record per
destination partition and batch, not a record per transaction. Pure.

Each forward (``stages.Forwarded``, MessagePack) must reach the partition of its
target, so that one instance sees every record of a target. The first stage used to
produce each forward as a record of its own, keyed by target, and the client chose
the partition; then each forward paid a produce, a fetch, a consume and the client's
accessors twice over. Now the forwards of a batch that go to the same partition
travel as one record (``frame``): a MessagePack array ``[FRAMED, [forward, ...]]``,
built by joining the forwards' bytes behind an array header, with no re-encoding.
The second stage decodes it in one call.

The partition is the one the client's default partitioner gives a record keyed by the
target (librdkafka's ``consistent_random``: CRC-32 of the key, modulo the partition
count), so a target keeps its partition, and its state, across an upgrade from
records keyed by target. Within a framed record the forwards keep the order the first
stage made them in; the second stage tells them apart by their place in it
(``position``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

FRAMED = 2  # the first member of a framed record: a format number, never a forward's
FRAME_KEY = b"forwards"  # not None: a record without a key is a progress marker
FORWARDS_PER_RECORD = 1024  # a record stays far below a topic's 1 MB limit
PLACE_BITS = 20  # a position: the record's offset, then the forward's place in it
_HEADER = bytes((0x92, FRAMED))  # fixarray of 2, then the format number


def partition_of(target: bytes, partitions: int) -> int:
    """The partition a record keyed by ``target`` lands in under librdkafka's default
    partitioner (``consistent_random`` for a key that is not empty)."""
    return zlib.crc32(target) % partitions


def frame(forwards: list[bytes]) -> bytes:
    """Forwards (each a MessagePack value) as one framed record's value."""
    count = len(forwards)
    if count < 16:
        array = bytes((0x90 | count,))  # fixarray
    elif count < 2**16:
        array = b"\xdc" + count.to_bytes(2, "big")  # array 16
    else:
        raise ValueError(f"{count} forwards in one record: at most {2**16 - 1}")
    return b"".join((_HEADER, array, *forwards))


def is_framed(value: bytes) -> bool:
    """Whether a repartition record's value is ``frame``'s (a lone forward is an array
    of its members, whose first is bytes)."""
    return value[:2] == _HEADER


def framed_by_partition(forwards: Iterable[tuple[bytes, bytes]], partitions: int
                        ) -> list[tuple[int, bytes]]:
    """``(target, forward)`` pairs as ``(partition, framed value)`` records: each
    partition's forwards in the order given, at most ``FORWARDS_PER_RECORD`` a record."""
    by_partition: dict[int, list[bytes]] = {}
    crc = zlib.crc32
    for target, value in forwards:
        partition = crc(target) % partitions
        held = by_partition.get(partition)
        if held is None:
            by_partition[partition] = [value]
        else:
            held.append(value)
    return [(partition, frame(values[start:start + FORWARDS_PER_RECORD]))
            for partition, values in by_partition.items()
            for start in range(0, len(values), FORWARDS_PER_RECORD)]


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
