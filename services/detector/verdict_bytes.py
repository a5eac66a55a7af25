"""A batch's verdict records written by one compiled kernel into one buffer. Pure.

``VerdictWriter.records`` gives every transaction of a batch its ``detection``: the
transaction's bytes but their closing "}", a head (fraud or not, the rules' hits),
each figure's name and value, and a tail. Joined in Python, that was a tuple of some
thirty pieces a record, a bytes object for each figure's value, and a join a record:
a tenth of the whole detector's time.

Here each piece that varies by record is an index into one pool of pieces
(``parts``), and each column of values is the JSON array orjson writes for the whole
column, its values found between its commas by one numpy pass. The kernel copies
the pieces into one buffer, and the records are sliced out of its bytes.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.detector.kernels import njit  # numba's, its cache where it can write

INT = np.int64
_OPEN, _COMMA, _CLOSE = 91, 44, 93  # "[", "," and "]": around the values of an array


# C's ``memmove``, which the kernel calls for each piece, passed in as an argument (a
# pointer read at run time: the compiled kernel can be cached on disk). A copy loop
# compiled by numba moved about a byte a nanosecond; memmove, some ten a nanosecond.
_COPY_TYPE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_size_t)
COPY = _COPY_TYPE(ctypes.cast(ctypes.memmove, ctypes.c_void_p).value or 0)


@njit(cache=True, nogil=True)
def _write(txs: np.ndarray, tx_end: np.ndarray, pool: np.ndarray, at: np.ndarray,
           length: np.ndarray, heads: np.ndarray, prefixes: np.ndarray,
           tails: np.ndarray, values: np.ndarray, value_at: np.ndarray,
           value_end: np.ndarray, out: np.ndarray, ends: np.ndarray, copy: Any
           ) -> int:  # pragma: no cover - compiled
    """Each record into ``out``, one after the other: its transaction but the last
    byte, its head, each column's prefix and value, its tail. Each record's end goes
    to ``ends``; returns the bytes written."""
    o = 0
    start = 0
    to, tx_at, pool_at, value_at0 = out.ctypes.data, txs.ctypes.data, pool.ctypes.data, \
        values.ctypes.data
    for i in range(len(tx_end)):
        size = max(tx_end[i] - 1 - start, 0)
        copy(to + o, tx_at + start, size)
        o += size
        start = tx_end[i]
        piece = heads[i]
        copy(to + o, pool_at + at[piece], length[piece])
        o += length[piece]
        for k in range(len(prefixes)):
            piece = prefixes[k]
            copy(to + o, pool_at + at[piece], length[piece])
            o += length[piece]
            first = value_at[k, i]
            size = value_end[k, i] - first
            copy(to + o, value_at0 + first, size)
            o += size
        piece = tails[i]
        copy(to + o, pool_at + at[piece], length[piece])
        o += length[piece]
        ends[i] = o
    return o


def joined(txs: Sequence[bytes], parts: list[bytes], heads: np.ndarray,
           prefixes: list[int], tails: np.ndarray, columns: list[bytes]) -> list[bytes]:
    """Each record: ``txs[i][:-1]``, ``parts[heads[i]]``, then for each column
    ``parts[prefixes[k]]`` and its ``i``-th value, then ``parts[tails[i]]``.
    ``columns``: JSON arrays of numbers (or ``null``), each as long as ``txs``."""
    count = len(txs)
    if not count:
        return []
    sizes = np.fromiter(map(len, txs), INT, count)
    lengths = np.fromiter(map(len, parts), INT, len(parts))
    at = np.cumsum(lengths) - lengths
    values = np.frombuffer(b"".join(columns), np.uint8)
    # Where each value begins and ends: after a "[" or ",", before a "," or "]".
    found = np.flatnonzero((values == _COMMA) | (values == _OPEN) | (values == _CLOSE))
    if len(found) != len(columns) * (count + 1):  # a column of another length
        raise ValueError("a column's length is not the batch's")
    marks = found.reshape(len(columns), count + 1)
    prefix = np.array(prefixes, INT)
    heads, tails = heads.astype(INT, copy=False), tails.astype(INT, copy=False)
    size = int(np.maximum(sizes - 1, 0).sum() + lengths[heads].sum() + lengths[tails].sum()
               + count * lengths[prefix].sum() + len(values)
               - len(columns) * (count + 1))
    out = _room(size)
    ends = np.empty(count, INT)
    written = _write(np.frombuffer(b"".join(txs), np.uint8), np.cumsum(sizes),
                     np.frombuffer(b"".join(parts), np.uint8), at, lengths, heads, prefix,
                     tails, values, marks[:, :-1] + 1, np.ascontiguousarray(marks[:, 1:]),
                     out, ends, COPY)
    assert written == size
    blob = out[:size].tobytes()
    return list(map(blob.__getitem__, map(slice, [0, *ends[:-1].tolist()], ends.tolist())))


_kept = threading.local()  # each thread's buffer: the kernel runs without the GIL


def _room(size: int) -> np.ndarray:
    """A buffer of at least ``size`` bytes, the same from batch to batch: a new one's
    pages would each fault in as the kernel first writes them (some 0.2 µs a
    record)."""
    buffer: np.ndarray | None = getattr(_kept, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _kept.buffer = np.empty(max(size, 1 << 16) * 3 // 2, np.uint8)
    return buffer


def warm() -> None:
    """Compile (or load from the cache) the kernel, for the arrays' types and layouts
    of a batch (two columns: a column's values' ends are a slice of a matrix)."""
    joined([b'{"a":1}', b"{}"], [b",", b"!"], np.zeros(2, INT), [0, 1], np.ones(2, INT),
           [b"[1,2]", b"[3,4]"])
