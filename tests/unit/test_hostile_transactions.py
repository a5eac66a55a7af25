"""Hostile input to the detector's core: whatever arrives, every record comes out exactly
once, a valid one routed by its amount and a bad one as a dead letter with its reason
and its bytes untouched. Nothing raises."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.routing import Router
from services.detector.rules import StatefulRules
from services.transaction import (
    CURRENCIES,
    MAX_AMOUNT,
    MAX_TEXT,
    InvalidTransaction,
    Transaction,
    decode,
)
from tests.unit.test_routing import FakeRecord

GOOD = {"id": "t-1", "ts": 1_700_000_000_000, "source": "ABCDEF123456",
        "target": "ZYXWVU654321", "amount": 912.5, "currency": "EUR"}

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
hostile_values = (json_values | st.sampled_from([
    0, -1, -0.0, 0.001, MAX_AMOUNT, MAX_AMOUNT * 1.0001, 2**53, 2**64, -(2**63), 1e308,
    "", "A" * MAX_TEXT, "A" * (MAX_TEXT + 1), "EUR", "eur", "XXX", True, None, [], {},
]))
FIELDS = ("id", "ts", "source", "target", "amount", "currency")
MISSING = object()


def to_json(value: Any) -> bytes:
    """JSON as any producer may write it (orjson refuses integers beyond 64 bits)."""
    return json.dumps(value, allow_nan=False).encode()


@st.composite
def mutated_transactions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid transaction with some fields dropped, replaced by hostile values, or added."""
    tx = dict(GOOD)
    for field in draw(st.sets(st.sampled_from(FIELDS))):
        value = draw(hostile_values | st.just(MISSING))
        if value is MISSING:
            del tx[field]
        else:
            tx[field] = value
    tx.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return tx


def refusal_or_transaction(raw: bytes | None) -> Transaction | str:
    try:
        return decode(raw)
    except InvalidTransaction as exc:
        assert str(exc), "a refusal always has a reason"
        assert len(str(exc)) < 300, "a reason stays short whatever the input"
        return str(exc)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_refused_with_a_reason(raw: bytes) -> None:
    refusal_or_transaction(raw)


@given(json_values)
def test_any_json_decodes_or_is_refused_with_a_reason(value: Any) -> None:
    refusal_or_transaction(to_json(value))


@given(mutated_transactions())
@settings(max_examples=400)
def test_what_is_accepted_is_a_usable_transaction(tx: dict[str, Any]) -> None:
    result = refusal_or_transaction(to_json(tx))
    if isinstance(result, str):
        return
    assert 0 < result.amount <= MAX_AMOUNT and math.isfinite(result.amount)
    assert result.currency in CURRENCIES
    assert 0 < len(result.source) <= MAX_TEXT and 0 < len(result.target) <= MAX_TEXT
    assert result.amount == tx["amount"] and result.source == tx["source"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"nan"])
def test_non_finite_amounts_are_refused(literal: bytes) -> None:
    raw = orjson.dumps(GOOD).replace(b"912.5", literal)
    assert isinstance(refusal_or_transaction(raw), str)


@pytest.mark.parametrize("raw", [
    b"\x00" * 1_000_000,
    b"{" * 1_000_000,
    orjson.dumps({**GOOD, "source": "A" * 1_000_000}),
    orjson.dumps({**GOOD, "note": "x" * 1_000_000}),
])
def test_megabyte_values_get_a_short_reason(raw: bytes) -> None:
    result = refusal_or_transaction(raw)
    if raw.startswith(b'{"id"') and b'"note"' in raw:
        assert isinstance(result, Transaction)  # a large extra field is still a transaction
    else:
        assert isinstance(result, str)


record_keys = st.none() | st.just(b"") | st.binary(max_size=16)
record_values = (st.none() | st.binary(max_size=200)
                 | mutated_transactions().map(to_json)
                 | st.just(orjson.dumps(GOOD)))


@given(st.lists(st.tuples(record_keys, record_values), max_size=30),
       st.floats(min_value=0.01, max_value=2000), st.booleans())
@settings(max_examples=300)
def test_every_record_comes_out_exactly_once(batch: list[tuple[bytes | None, bytes | None]],
                                             threshold: float, with_rules: bool) -> None:
    records = [FakeRecord(value, key, offset) for offset, (key, value) in enumerate(batch)]
    router = Router("d1", threshold, rules=StatefulRules() if with_rules else None)
    routed = router.route(records)
    assert len(routed.legit) + len(routed.fraud) + len(routed.dlq) == len(records)
    legit, fraud, dead = iter(routed.legit), iter(routed.fraud), iter(routed.dlq)
    oracle = StatefulRules() if with_rules else None  # the same rules, run apart
    for offset, (key, value) in enumerate(batch):
        try:
            tx = decode(value)
        except InvalidTransaction:
            dead_key, dead_value, headers = next(dead)
            assert (dead_key, dead_value) == (key, value), "a dead letter keeps key and bytes"
            assert dict(headers)["dlq.offset"] == str(offset).encode()
            continue
        ts = tx.ts if isinstance(tx.ts, int) else 1_700_000_000_123
        hits = oracle.evaluate(tx.source, tx.target, tx.amount, ts)[0] if oracle else []
        is_fraud = tx.amount >= threshold or bool(hits)
        out_key, out_value = next(fraud if is_fraud else legit)
        assert out_key == key
        out, original = json.loads(out_value), json.loads(value)
        detection = out.pop("detection")
        assert detection["fraud"] is is_fraud is bool(detection["rules"])
        assert (tx.amount >= threshold) is ({"rule": "amount_threshold",
                                             "reason": router.rule.reason} in detection["rules"])
        original.pop("detection", None)
        out.pop("features", None)
        assert out == {"id": f"queueing.transactions-2-{offset}", "ts": 1_700_000_000_123,
                       **original}
