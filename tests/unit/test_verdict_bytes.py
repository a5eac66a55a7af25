"""``verdict_bytes.joined`` writes each record as joining its pieces in Python does,
whatever the pieces: transactions of any bytes (none, non-ASCII, a NUL), heads and
tails of any length, columns of counts, floats and nulls."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.verdict_bytes import joined

_VALUES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.none(),
                    st.floats(allow_nan=True, allow_infinity=False))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], list[int], list[int],
                                      list[int], list[list[int | float | None]]]:
    count = draw(st.integers(1, 20))
    txs = draw(st.lists(st.binary(max_size=40), min_size=count, max_size=count))
    parts = draw(st.lists(st.binary(max_size=30), min_size=1, max_size=8))
    piece = st.integers(0, len(parts) - 1)
    heads = draw(st.lists(piece, min_size=count, max_size=count))
    tails = draw(st.lists(piece, min_size=count, max_size=count))
    prefixes = draw(st.lists(piece, max_size=5))
    columns = [draw(st.lists(_VALUES, min_size=count, max_size=count)) for _ in prefixes]
    return txs, parts, heads, prefixes, tails, columns


@settings(max_examples=150, deadline=None)
@given(batches())
def test_each_record_is_its_pieces_joined(batch: tuple[Any, ...]) -> None:
    txs, parts, heads, prefixes, tails, columns = batch
    written = [orjson.dumps(column) for column in columns]
    got = joined(txs, parts, np.array(heads), prefixes, np.array(tails), written)
    expected = [
        tx[:-1] + parts[heads[i]]
        + b"".join(parts[p] + orjson.dumps(column[i]) for p, column in zip(prefixes, columns,
                                                                        strict=True))
        + parts[tails[i]] for i, tx in enumerate(txs)]
    assert got == expected


def test_a_column_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError, match="length"):
        joined([b"{}", b"{}"], [b""], np.zeros(2, int), [0], np.zeros(2, int),
               [b"[1,2]", b"[1]"])
    assert joined([], [b""], np.zeros(0, int), [], np.zeros(0, int), []) == []
