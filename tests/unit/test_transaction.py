"""The transaction codec: what it accepts, what it refuses and why."""

import msgspec
import orjson
import pytest

from services.transaction import InvalidTransaction, decode, encode, extend

GOOD = {"id": "t-1", "ts": 1_700_000_000_000, "source": "ABCDEF123456",
        "target": "ZYXWVU654321", "amount": 912.5, "currency": "EUR"}


def test_round_trip_keeps_every_field() -> None:
    tx = decode(encode(GOOD))
    assert msgspec.structs.asdict(tx) == {**GOOD, "detection": msgspec.UNSET}


def test_bare_tutorial_schema_is_a_transaction() -> None:
    bare = {"source": "A", "target": "B", "amount": 10, "currency": "USD"}
    tx = decode(orjson.dumps(bare))
    assert (tx.source, tx.target, tx.amount, tx.currency) == ("A", "B", 10.0, "USD")
    assert tx.id is msgspec.UNSET and tx.ts is msgspec.UNSET


def test_extra_fields_are_carried_along() -> None:
    raw = encode({**GOOD, "V1": -1.35, "Class": 0})
    out = orjson.loads(extend(raw, decode(raw), b',"x":1'))
    assert out == {**GOOD, "V1": -1.35, "Class": 0, "x": 1}


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "empty record"),
    (b"\xff\xfe", "not JSON"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"source": "A", "target": "B", "currency": "EUR"}', "missing field: amount"),
    (b'{"source": "A", "amount": 1, "currency": "EUR"}', "missing field: target"),
    (b'{"source": "A", "target": "B", "amount": "12", "currency": "EUR"}', "not a number"),
    (b'{"source": "A", "target": "B", "amount": true, "currency": "EUR"}', "not a number"),
    (b'{"source": "A", "target": "B", "amount": 0, "currency": "EUR"}', "out of range"),
    (b'{"source": "A", "target": "B", "amount": -5, "currency": "EUR"}', "out of range"),
    (b'{"source": "A", "target": "B", "amount": 1e300, "currency": "EUR"}', "out of range"),
    (b'{"source": "A", "target": "B", "amount": NaN, "currency": "EUR"}', "not JSON"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "XXX"}', "unknown currency"),
    (b'{"source": "", "target": "B", "amount": 5, "currency": "EUR"}', "source is not a text"),
    (b'{"source": 7, "target": "B", "amount": 5, "currency": "EUR"}', "source is not a text"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "ts": "now"}',
     "ts is not a time"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "ts": -1}',
     "ts is not a time"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "ts": true}',
     "ts is not a time"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": ["EUR"]}', "unknown currency"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": {"c": 1}}', "unknown currency"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": 978}', "unknown currency"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "id": 12}',
     "id is not a text"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "id": ""}',
     "id is not a text"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "id": null}',
     "id is not a text"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR", "ts": null}',
     "ts is not a time"),
    (b'{"source": "A\xff", "target": "B", "amount": 5, "currency": "EUR"}', "not JSON"),
    (b'{"source": "\\ud800", "target": "B", "amount": 5, "currency": "EUR"}', "not JSON"),
    (b'{"source": "A", "target": "B", "amount": 1' + b"0" * 400 + b', "currency": "EUR"}',
     "not JSON"),
    (b'{"source": "A", "target": "B", "amount": 5, "currency": "EUR"} trailing', "not JSON"),
    (b'{"source": "' + b"A" * 129 + b'", "target": "B", "amount": 5, "currency": "EUR"}',
     "source is not a text"),
])
def test_bad_records_are_refused_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidTransaction, match=reason):
        decode(raw)


def test_extend_appends_members_without_re_encoding() -> None:
    raw = b'{"source":"A","target":"B","amount":5,"currency":"EUR"}  \n'
    out = extend(raw, decode(raw), b',"x":1')
    assert out == b'{"source":"A","target":"B","amount":5,"currency":"EUR","x":1}'


def test_extend_never_writes_a_key_twice() -> None:
    raw = b'{"source":"A","target":"B","amount":5,"currency":"EUR","detection":"forged"}'
    out = orjson.loads(extend(raw, decode(raw), b',"detection":{"fraud":true}'))
    assert out["detection"] == {"fraud": True}


def test_the_schema_and_the_explanation_agree() -> None:
    """The schema judges; the explanation only words the reason, for the same cases."""
    good = {"id": "r-1", "ts": 1, "source": "A", "target": "B", "amount": 1, "currency": "EUR"}
    variants = [good, {**good, "amount": 0.01}, {**good, "amount": 1e9}, {**good, "ts": 0}]
    variants += [{k: v for k, v in good.items() if k not in drop} for drop in
                 (("id",), ("ts",), ("id", "ts"), ("amount",), ("currency",), ("source",))]
    variants += [{**good, field: value} for field, value in [
        ("amount", 1e9 + 1), ("amount", True), ("amount", "1"), ("amount", -1),
        ("ts", 2**53), ("ts", 1.5), ("ts", None), ("id", None), ("currency", "eur"),
        ("target", ["B"]), ("source", "A" * 128), ("source", "A" * 129)]]
    for tx in variants:
        assert accepted_by_schema(tx) == accepted_by_explanation(tx), tx


def accepted_by_schema(tx: dict) -> bool:
    try:
        decode(orjson.dumps(tx))
    except InvalidTransaction:
        return False
    return True


def accepted_by_explanation(tx: dict) -> bool:
    from services.transaction import _explain

    try:
        _explain(tx)
    except InvalidTransaction:
        return False
    return True
