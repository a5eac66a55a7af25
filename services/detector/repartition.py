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
from collections.abc import Iterable, Iterator

FRAMED = 2  # the first member of a framed record: a format number, never a forward's
FRAME_KEY = b"forwards"  # not None: a record without a key is a progress marker
FORWARDS_PER_RECORD = 1024
# A record's forwards stop short of this many bytes (a lone forward may pass it), far
# below a topic's default max.message.bytes of 1 MB: a record too large for the topic
# would fail every transaction that sends it.
FRAME_BYTES = 256 * 1024
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
    partition's forwards in the order given, at most ``FORWARDS_PER_RECORD`` and
    ``FRAME_BYTES`` a record."""
    by_partition: dict[int, list[bytes]] = {}
    crc = zlib.crc32
    for target, value in forwards:
        partition = crc(target) % partitions
        held = by_partition.get(partition)
        if held is None:
            by_partition[partition] = [value]
        else:
            held.append(value)
    return [(partition, frame(chunk)) for partition, values in by_partition.items()
            for chunk in _chunks(values)]


def _chunks(values: list[bytes]) -> Iterator[list[bytes]]:
    """``values`` cut into runs within both bounds of a record."""
    if len(values) <= FORWARDS_PER_RECORD and sum(map(len, values)) < FRAME_BYTES:
        yield values  # the usual batch: one record
        return
    chunk: list[bytes] = []
    size = 0
    for value in values:
        if chunk and (len(chunk) == FORWARDS_PER_RECORD or size + len(value) > FRAME_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += len(value)
    if chunk:
        yield chunk


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
