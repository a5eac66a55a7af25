"""Changelog states as MessagePack, written by compiled kernels straight from the
columns: the bytes msgspec writes for the same lists, without a Python object a value.
Pure.

A store's states go one after the other into one buffer, each key's ending at its
place in ``ends`` (a key the store does not hold: nothing). ``interleave`` then makes
each key's changelog value of every store's (``rules._RuleSet``): ``{code: state}``, a
store that does not hold the key as nil. A commit's few thousand changed keys took
7.6 µs each as Python lists and a ``msgspec`` call a key, most of it in making the
lists.

msgspec's choices, which these follow: an integer in the fewest bytes its sign
allows, every float as a float 64, arrays and maps in their shortest header.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.detector.kernels import njit  # numba's, its cache where it can write

# What a place of a row holds (``encode_rows``'s ``kinds``).
INTEGER, REAL, REAL_OR_NIL = 0, 1, 2
NIL = 0xC0
# The most bytes a header of an array (or a map) and a number take.
HEADER_BYTES = 5
NUMBER_BYTES = 9


@njit(cache=True, nogil=True)
def put_uint(buf, k, v, width):  # type: ignore[no-untyped-def]
    for shift in range(width - 1, -1, -1):
        buf[k] = (v >> (8 * shift)) & 0xFF
        k += 1
    return k


@njit(cache=True, nogil=True)
def put_int(buf, k, v):  # type: ignore[no-untyped-def]
    """``v`` in the fewest bytes."""
    if 0 <= v < 128:
        buf[k] = v
        return k + 1
    if -32 <= v < 0:
        buf[k] = 0x100 + v
        return k + 1
    if v > 0:
        if v < 0x100:
            buf[k] = 0xCC
            return put_uint(buf, k + 1, v, 1)
        if v < 0x10000:
            buf[k] = 0xCD
            return put_uint(buf, k + 1, v, 2)
        if v < 0x100000000:
            buf[k] = 0xCE
            return put_uint(buf, k + 1, v, 4)
        buf[k] = 0xCF
        return put_uint(buf, k + 1, v, 8)
    if v >= -0x80:
        buf[k] = 0xD0
        return put_uint(buf, k + 1, v & 0xFF, 1)
    if v >= -0x8000:
        buf[k] = 0xD1
        return put_uint(buf, k + 1, v & 0xFFFF, 2)
    if v >= -0x80000000:
        buf[k] = 0xD2
        return put_uint(buf, k + 1, v & 0xFFFFFFFF, 4)
    buf[k] = 0xD3
    return put_uint(buf, k + 1, v, 8)


@njit(cache=True, nogil=True)
def put_array(buf, k, n):  # type: ignore[no-untyped-def]
    if n < 16:
        buf[k] = 0x90 | n
        return k + 1
    if n < 0x10000:
        buf[k] = 0xDC
        return put_uint(buf, k + 1, n, 2)
    buf[k] = 0xDD
    return put_uint(buf, k + 1, n, 4)


@njit(cache=True, nogil=True)
def put_real(buf, k, bits):  # type: ignore[no-untyped-def]
    """A float 64, from its bits (the float's array viewed as ``uint64``)."""
    buf[k] = 0xCB
    return put_uint(buf, k + 1, bits, 8)


@njit(cache=True, nogil=True)
def put_name(buf, k, number, pool, at, length):  # type: ignore[no-untyped-def]
    """A name as a MessagePack str, from its UTF-8 bytes in a ``NameIndex``'s pool
    (``pool``, ``at``, ``length``): the shortest header that holds its length, as
    msgspec writes it (at most ``HEADER_BYTES``)."""
    start, size = at[number], length[number]
    if size < 32:
        buf[k] = 0xA0 | size
        k += 1
    elif size < 256:
        buf[k] = 0xD9
        buf[k + 1] = size
        k += 2
    elif size < 65_536:
        buf[k] = 0xDA
        k = put_uint(buf, k + 1, size, 2)
    else:
        buf[k] = 0xDB
        k = put_uint(buf, k + 1, size, 4)
    buf[k:k + size] = pool[start:start + size]
    return k + size


@njit(cache=True, nogil=True)
def put_linked(buf, k, at, n, values, nxt):  # type: ignore[no-untyped-def]
    """An array of the integers ``values`` holds along a list of ``n`` nodes of a pool,
    from node ``at`` (``nxt``: each node's next)."""
    k = put_array(buf, k, n)
    for _ in range(n):
        k = put_int(buf, k, values[at])
        at = nxt[at]
    return k


@njit(cache=True, nogil=True)
def held_slots(slots, held_by, out):  # type: ignore[no-untyped-def]
    """``slots`` with -1 where ``held_by`` says a store holds nothing."""
    for j in range(slots.shape[0]):
        s = slots[j]
        out[j] = s if s >= 0 and held_by[s] != 0 else -1


@njit(cache=True, nogil=True)
def encode_rows(held, lengths, kinds, ints, reals, bits, buf, ends):  # type: ignore[no-untyped-def]
    """Each held row as an array of its first ``lengths[j]`` places: ``ints[j, i]`` or
    ``reals[j, i]`` (``bits``, the same array as ``uint64``) by ``kinds[i]``."""
    k = 0
    for j in range(held.shape[0]):
        if held[j]:
            n = lengths[j]
            k = put_array(buf, k, n)
            for i in range(n):
                kind = kinds[i]
                if kind == INTEGER:
                    k = put_int(buf, k, ints[j, i])
                elif kind == REAL_OR_NIL and reals[j, i] != reals[j, i]:
                    buf[k] = NIL
                    k += 1
                else:
                    k = put_real(buf, k, bits[j, i])
        ends[j] = k


@njit(cache=True, nogil=True)
def encode_times(slots, head, size, times, nxt, buf, ends):  # type: ignore[no-untyped-def]
    """``[times, tags]`` of each slot's list of events in a pool (``EventPool``), the
    tags all nil; nothing for -1."""
    k = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        if s >= 0:
            n = size[s]
            buf[k] = 0x92
            k = put_linked(buf, k + 1, head[s], n, times, nxt)
            k = put_array(buf, k, n)
            for _ in range(n):
                buf[k] = NIL
                k += 1
        ends[j] = k


@njit(cache=True, nogil=True)
def encode_novelty(slots, recent, length, rate_bits, at, streak,  # type: ignore[no-untyped-def]
                   pool, name_at, name_len, buf, ends):
    """``[recent payees, new rate, at, streak]`` of each slot (``NoveltyColumns``);
    nothing for -1."""
    k = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        if s >= 0:
            buf[k] = 0x94
            n = length[s]
            k = put_array(buf, k + 1, n)
            for i in range(n):
                k = put_name(buf, k, recent[s, i], pool, name_at, name_len)
            k = put_real(buf, k, rate_bits[s])
            k = put_int(buf, k, at[s])
            k = put_int(buf, k, streak[s])
        ends[j] = k


@njit(cache=True, nogil=True)
def interleave(codes, starts, ends, states, buf, out_ends):  # type: ignore[no-untyped-def]
    """Each key's ``{code: state}``, every store's (row ``i`` of ``starts`` and
    ``ends``: where its states lie in ``states``), an empty one as nil."""
    stores = codes.shape[0]
    k = 0
    for j in range(starts.shape[1]):
        buf[k] = 0x80 | stores
        k += 1
        for i in range(stores):
            k = put_int(buf, k, codes[i])
            start, end = starts[i, j], ends[i, j]
            if start == end:
                buf[k] = NIL
                k += 1
            else:
                buf[k:k + end - start] = states[start:end]
                k += end - start
        out_ends[j] = k


def rows(held: np.ndarray, kinds: np.ndarray, columns: list[np.ndarray],
         lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``encode_rows`` of ``columns`` (each the values of one place, a row a key) at
    the rows ``held``: ``(buffer, ends)``."""
    n, width = len(held), len(columns)
    ints = np.zeros((n, width), np.int64)
    reals = np.zeros((n, width), np.float64)
    for i, column in enumerate(columns):
        if kinds[i] == INTEGER:
            ints[:, i] = column
        else:
            reals[:, i] = column
    if lengths is None:
        lengths = np.full(n, width, np.int64)
    return written(encode_rows, n * (HEADER_BYTES + width * NUMBER_BYTES), held, lengths,
                   kinds, ints, reals, reals.view(np.uint64))


def written(kernel: Any, room: int, slots: np.ndarray, *args: Any
            ) -> tuple[np.ndarray, np.ndarray]:
    """``kernel(slots, *args, buf, ends)`` for a key a slot (or row), into a buffer of
    ``room`` bytes, at most what it writes: ``(what it wrote, where each key's ends)``."""
    buf = np.empty(room, np.uint8)
    ends = np.empty(len(slots), np.int64)
    kernel(slots, *args, buf, ends)
    return buf[:int(ends[-1]) if len(ends) else 0], ends


def joined(encoded: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """States encoded one by one (None: not held) as a buffer and its ends."""
    parts = [b"" if value is None else value for value in encoded]
    ends = np.cumsum(np.fromiter(map(len, parts), np.int64, len(parts)))
    return np.frombuffer(b"".join(parts), np.uint8), ends


def values(codes: list[int], stores: list[tuple[np.ndarray, np.ndarray]]
           ) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Each key's value of every store's states (``(buffer, ends)`` each, in the order
    of ``codes``): the values one after the other, where each ends, and whether any
    store holds the key (else its record is a tombstone)."""
    n = len(stores[0][1])
    starts = np.empty((len(stores), n), np.int64)
    ends = np.empty((len(stores), n), np.int64)
    offset = 0
    for i, (buf, store_ends) in enumerate(stores):
        ends[i] = store_ends + offset
        starts[i, 0] = offset
        starts[i, 1:] = ends[i, :-1]
        offset += len(buf)
    states = np.concatenate([buf for buf, _ in stores]) if stores else np.empty(0, np.uint8)
    out = np.empty(offset + n * (1 + 2 * len(stores)), np.uint8)
    out_ends = np.empty(n, np.int64)
    interleave(np.array(codes, np.int64), starts, ends, states, out, out_ends)
    held = np.asarray((ends > starts).any(axis=0), np.bool_)
    return out[:int(out_ends[-1]) if n else 0].tobytes(), out_ends, held


def warm() -> None:
    """Compile (or load from the cache) the kernels, with the arrays the stores pass."""
    one = np.zeros(1, np.int64)
    slot = np.zeros(1, np.int32)
    buf = np.empty(64, np.uint8)
    held_slots(one, np.zeros(1, np.uint8), one.copy())
    rows(np.ones(1, np.bool_), np.array([INTEGER, REAL_OR_NIL], np.uint8), [one, one + 0.5])
    encode_times(one, slot, slot, one, slot, buf, one.copy())
    encode_novelty(one, np.zeros((1, 1), np.int32), np.zeros(1, np.int16), one.view(np.uint64),
                   one, slot, buf, one, slot, buf.copy(), one.copy())
    values([1], [(buf[:0], one)])
