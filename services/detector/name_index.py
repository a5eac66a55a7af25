"""Names to numbers in arrays, looked up a batch at a time by a compiled kernel. Pure.

``NameIndex`` does what a ``dict[str, int]`` did for the accounts' slots and the
payees' numbers, at a quarter to a third of its cost a name on large tables. A dict
looks names up one at a time, and on a table of a million names each lookup waits on
memory. The kernel takes a batch in passes: every name's hash and first probe, then
every candidate's bytes. The batch's loads then overlap instead of waiting on each
other.

The names' bytes serve the changelog too: its kernels write a name as MessagePack
from them (``msgpack_columns.put_name``), so no table keeps a second copy.

The layout is open addressing with linear probing: ``table`` holds a (hash, number)
pair a slot, at most half of them used, the hash's low 32 bits alone (a removal or a
larger table hashes the name's bytes again). The names' UTF-8 bytes lie one after the other
in ``pool``, a number's at ``at`` and ``length`` long. A removal shifts the entries
after it back (no tombstones), so a lookup's probe ends at the first empty slot.

The hash is FNV-1a over the bytes, from a seed drawn per process, then mixed
(splitmix64's finaliser). Crafted names cannot aim at collisions they cannot predict.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from services.detector.kernels import njit  # numba's, its cache where it can write

INT = np.int64
EMPTY = -1  # a table slot's number where it holds none
MISMATCH = -2  # what ``find`` returns where the lengths do not add up to the bytes

_FNV_PRIME = 1099511628211
# A table slot's two columns: the low 32 bits of its name's hash (its home slot's
# bits among them), and its number; int32 both, so that a slot takes 8 bytes and a
# batch's probes touch half the memory.
_TAG, _NUMBER = 0, 1
SLOT = np.int32


@njit(cache=True, nogil=True)
def _hash(buf, start, end, seed):  # type: ignore[no-untyped-def]
    h = np.uint64(seed)
    for i in range(start, end):
        h = (h ^ np.uint64(buf[i])) * np.uint64(_FNV_PRIME)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return np.int64(h)


@njit(cache=True, nogil=True)
def _same(a, a_start, b, b_start, length):  # type: ignore[no-untyped-def]
    for i in range(length):  # noqa: SIM110  (a loop numba compiles; no generator)
        if a[a_start + i] != b[b_start + i]:
            return False
    return True


@njit(cache=True, nogil=True)
def _offsets(lengths, size):  # type: ignore[no-untyped-def]
    """Where each name starts in the batch's bytes (one more: the end), or an empty
    array where the lengths do not add up to ``size``."""
    offsets = np.empty(len(lengths) + 1, np.int64)
    offsets[0] = 0
    for k in range(len(lengths)):
        offsets[k + 1] = offsets[k] + lengths[k]
    if offsets[len(lengths)] != size:
        return offsets[:0]
    return offsets


@njit(cache=True, nogil=True)
def find(raw, lengths, seed, table, pool, at, length, out):  # type: ignore[no-untyped-def]
    """Each name's number into ``out`` (``EMPTY`` for a name the table lacks), the
    names one after the other in ``raw``, ``lengths`` bytes each; returns how many it
    lacks, or ``MISMATCH`` where the lengths do not add up to ``raw``'s size.

    In passes, each a load a name that does not wait on the other names' loads: the
    first probe's slot, the candidate's place in the pool, its bytes."""
    offsets = _offsets(lengths, len(raw))
    n = len(lengths)
    if len(offsets) == 0:
        return MISMATCH
    mask = np.int64(len(table) - 1)
    hashes = np.empty(n, np.int64)
    for k in range(n):
        hashes[k] = _hash(raw, offsets[k], offsets[k + 1], seed)
    for k in range(n):
        j = hashes[k] & mask
        out[k] = table[j, _NUMBER] if table[j, _TAG] == np.int32(hashes[k]) else EMPTY
    starts = np.empty(n, np.int64)
    for k in range(n):
        number = out[k]
        if number >= 0 and length[number] == offsets[k + 1] - offsets[k]:
            starts[k] = at[number]
        else:
            starts[k] = -1
    lacking = 0
    for k in range(n):
        start, size = offsets[k], offsets[k + 1] - offsets[k]
        if starts[k] >= 0 and _same(raw, start, pool, starts[k], size):
            continue
        out[k] = EMPTY  # probe on (a collision, a name placed further, or none)
        j = hashes[k] & mask
        while table[j, _NUMBER] != EMPTY:
            number = table[j, _NUMBER]
            if table[j, _TAG] == np.int32(hashes[k]) and length[number] == size and \
                    _same(raw, start, pool, at[number], size):
                out[k] = number
                break
            j = (j + 1) & mask
        if out[k] == EMPTY:
            lacking += 1
    return lacking


@njit(cache=True, nogil=True)
def _place(table, h, number):  # type: ignore[no-untyped-def]
    mask = np.int64(len(table) - 1)
    j = h & mask
    while table[j, _NUMBER] != EMPTY:
        j = (j + 1) & mask
    table[j, _TAG] = np.int32(h)
    table[j, _NUMBER] = number


@njit(cache=True, nogil=True)
def insert(raw, lengths, seed, numbers, table, pool, used, at,  # type: ignore[no-untyped-def]
           length):
    """Each name (none in the table yet, all distinct) under its number, its bytes
    into the pool from ``used`` on (room made); returns the longest name's length, or
    ``MISMATCH`` (and changes nothing) where the lengths do not add up to ``raw``'s
    size."""
    offsets = _offsets(lengths, len(raw))
    if len(offsets) == 0:
        return MISMATCH
    pool[used:used + len(raw)] = raw
    longest = 0
    for k in range(len(lengths)):
        number = numbers[k]
        at[number] = used + offsets[k]
        length[number] = lengths[k]
        longest = max(longest, lengths[k])
        _place(table, _hash(raw, offsets[k], offsets[k + 1], seed), number)
    return longest


@njit(cache=True, nogil=True)
def remove(numbers, seed, table, pool, at, length):  # type: ignore[no-untyped-def]
    """Each of ``numbers`` out of the table, the entries after it shifted back so that
    every entry stays reachable from its hash's slot without crossing an empty one."""
    mask = np.int64(len(table) - 1)
    for k in range(len(numbers)):
        number = numbers[k]
        i = _hash(pool, at[number], at[number] + length[number], seed) & mask
        while table[i, _NUMBER] != number:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if table[j, _NUMBER] == EMPTY:
                break
            home = np.int64(table[j, _TAG]) & mask
            # j's entry moves to the hole at i unless its home lies after i, up to j.
            if ((j - home) & mask) >= ((j - i) & mask):
                table[i, _TAG] = table[j, _TAG]
                table[i, _NUMBER] = table[j, _NUMBER]
                i = j
        table[i, _NUMBER] = EMPTY


@njit(cache=True, nogil=True)
def rebuild(numbers, seed, table, pool, at, length):  # type: ignore[no-untyped-def]
    """``numbers`` placed in an empty ``table`` (a larger one) by their names' hashes."""
    for k in range(len(numbers)):
        number = numbers[k]
        _place(table, _hash(pool, at[number], at[number] + length[number], seed), number)


@njit(cache=True, nogil=True)
def compact(numbers, at, length, pool, out):  # type: ignore[no-untyped-def]
    """``numbers``' bytes one after the other into ``out``; returns the bytes used."""
    used = 0
    for k in range(len(numbers)):
        number = numbers[k]
        start, size = at[number], length[number]
        out[used:used + size] = pool[start:start + size]
        at[number] = used
        used += size
    return used


class NameIndex:
    """A mapping of names to numbers that its owner gives out (``add``): looked up a
    batch at a time (``lookup``), a name at a time where a path is rare (``get``)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.seed = secrets.randbits(63)
        size = max(1 << (2 * capacity - 1).bit_length(), 16)
        self.table = np.full((size, 2), EMPTY, SLOT)
        size = max(capacity, 16)
        self.at = np.zeros(size, INT)
        self.length = np.full(size, -1, np.int32)  # -1: a number without a name
        self.pool = np.zeros(16 * size, np.uint8)
        self.used = 0  # bytes of the pool written
        self.live = 0  # bytes of the pool that held names hold
        self.count = 0
        self.longest = 0  # bytes of the longest name added (an encoder's room)

    def __len__(self) -> int:
        return self.count

    def lookup(self, names: list[str]) -> tuple[np.ndarray, bool]:
        """Each name's number (-1 for a name it lacks), and whether it lacks one."""
        out = np.empty(len(names), INT)
        if not names:
            return out, False
        raw, lengths = _bytes_of(names)
        lacking = find(raw, lengths, self.seed, self.table, self.pool, self.at,
                       self.length, out)
        if lacking == MISMATCH:  # a name not all ASCII: its bytes counted one by one
            raw, lengths = _bytes_of_each(names)
            lacking = find(raw, lengths, self.seed, self.table, self.pool, self.at,
                           self.length, out)
        return out, lacking > 0

    def get(self, name: str, default: int = -1) -> int:
        number = int(self.lookup([name])[0][0])
        return default if number < 0 else number

    def __getitem__(self, name: str) -> int:
        number = self.get(name)
        if number < 0:
            raise KeyError(name)
        return number

    def __contains__(self, name: str) -> bool:
        return self.get(name) >= 0

    def items(self) -> Iterator[tuple[str, int]]:
        """Every name and its number, in the order of the numbers (its bytes read
        back: for checks and tests, not for a batch's path)."""
        pool = self.pool.tobytes()
        for number in np.flatnonzero(self.length >= 0).tolist():
            start = int(self.at[number])
            name = pool[start:start + int(self.length[number])]
            yield name.decode("utf-8", "surrogatepass"), number

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.items())

    def add(self, names: list[str], numbers: Sequence[int]) -> None:
        """``names`` (none here yet, all distinct) under ``numbers`` (none in use)."""
        if not names:
            return
        top = max(numbers) + 1
        if top > len(self.length):
            self._grow_numbers(max(top, len(self.length) * 5 // 4))
        if 2 * (self.count + len(names)) > len(self.table):
            self._grow_table(2 * (self.count + len(names)))
        where = np.array(numbers, INT)
        raw, lengths = _bytes_of(names)
        if self.used + len(raw) > len(self.pool):
            self._make_room(len(raw))
        args = (self.seed, where, self.table, self.pool, self.used, self.at, self.length)
        longest = insert(raw, lengths, *args)
        if longest == MISMATCH:
            raw, lengths = _bytes_of_each(names)
            longest = insert(raw, lengths, *args)
        self.longest = max(self.longest, longest)
        self.used += len(raw)
        self.live += len(raw)
        self.count += len(names)

    def remove(self, numbers: Iterable[int]) -> None:
        """The names of ``numbers`` (each held, each once) out of the index."""
        gone = np.fromiter(numbers, INT)
        if not len(gone):
            return
        remove(gone, self.seed, self.table, self.pool, self.at, self.length)
        self.live -= int(self.length[gone].sum())
        self.length[gone] = -1
        self.count -= len(gone)

    def _grow_numbers(self, size: int) -> None:
        self.at = grown(self.at, size, 0)
        self.length = grown(self.length, size, -1)

    def _grow_table(self, room: int) -> None:
        size = len(self.table)
        while size < room:
            size *= 2
        table = np.full((size, 2), EMPTY, SLOT)
        rebuild(np.flatnonzero(self.length >= 0), self.seed, table, self.pool, self.at,
                self.length)
        self.table = table

    def _make_room(self, room: int) -> None:
        """A pool of the held names' bytes alone, with a quarter more room than they
        and ``room`` more take (a million names: some 12 MiB)."""
        held = np.flatnonzero(self.length >= 0)
        pool = np.zeros((self.live + room) * 5 // 4 + 4096, np.uint8)
        self.used = compact(held, self.at, self.length, self.pool, pool)
        self.pool = pool


def grown(values: np.ndarray, size: int, fill: int) -> np.ndarray:
    """``values`` and ``fill`` after them, ``size`` in all."""
    out = np.full(size, fill, values.dtype)
    out[:len(values)] = values
    return out


def _bytes_of(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The names' UTF-8 bytes one after the other, and each one's length in
    characters: its length in bytes where every name is ASCII (``find`` checks)."""
    raw = "".join(names).encode("utf-8", "surrogatepass")
    return np.frombuffer(raw, np.uint8), np.fromiter(map(len, names), INT, len(names))


def _bytes_of_each(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [name.encode("utf-8", "surrogatepass") for name in names]
    return (np.frombuffer(b"".join(encoded), np.uint8),
            np.fromiter(map(len, encoded), INT, len(encoded)))


def warm() -> None:
    """Compile (or load from the cache) the kernels: each path of an index once, a
    larger table and a pool made anew among them."""
    index = NameIndex(1)
    index.add(["a", "é"], [0, 1])
    index.lookup(["a", "é", "b"])
    index.remove([0])
    index.add([f"{i:040d}" for i in range(40)], list(range(2, 42)))
