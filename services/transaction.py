"""The transaction record: decode, validate, encode. Pure, no Kafka.

A transaction is a JSON object, a superset of the classic tutorial's schema::

    {"id": "...", "ts": 1700000000000, "source": "...", "target": "...",
     "amount": 123.45, "currency": "EUR"}

``id`` and ``ts`` (event time, ms since epoch) may be absent in the bare tutorial
schema; the detector fills them from where the record came from. Extra fields are
carried along untouched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import orjson

MAX_AMOUNT = 1_000_000_000.0
MAX_TEXT = 128
MAX_TS = 2**53  # the largest integer a JSON reader in any language keeps exactly
# A transaction's record, at most: its verdict (or its forward to the second stage)
# adds up to a few kB, and a topic takes records of 1,048,588 bytes by default. One
# larger would fail the produce of its verdict, every time it is processed again.
MAX_BYTES = 1_000_000

# ISO 4217 codes in active use; anything else is most likely a bug upstream.
CURRENCIES = frozenset(
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB "
    "EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK "
    "JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA "
    "MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK "
    "PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST "
    "XAF XCD XOF XPF YER ZAR ZMW ZWL".split()
)

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
Amount = Annotated[float, msgspec.Meta(gt=0, le=MAX_AMOUNT)]
EventTime = Annotated[int, msgspec.Meta(ge=0, lt=MAX_TS)]
if TYPE_CHECKING:  # a Literal built at run time is a str to a type checker
    Currency = str
else:
    Currency = Literal[tuple(sorted(CURRENCIES))]


class Transaction(msgspec.Struct, gc=False):
    """The fields the detector reads; every other member stays in the record's bytes.

    The schema is the whole validation: msgspec checks types, ranges, lengths and the
    currency in C while it decodes, at a fraction of the cost of decoding to a dict
    and checking it in Python. ``id`` and ``ts`` are UNSET in the bare tutorial schema;
    ``detection`` is read only to know that a record already carries one.
    """

    source: Text
    target: Text
    amount: Amount
    currency: Currency
    id: Text | msgspec.UnsetType = msgspec.UNSET
    ts: EventTime | msgspec.UnsetType = msgspec.UNSET
    detection: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class InvalidTransaction(ValueError):
    """A record that is not a usable transaction; the message is the dead-letter reason."""


# The schema's decoder alone, for loops that handle its errors themselves: it raises
# msgspec.DecodeError (ValidationError included), ValueError for invalid UTF-8 and
# TypeError for None.
decode_schema = msgspec.json.Decoder(Transaction).decode


def decode(raw: bytes | None) -> Transaction:
    """The validated transaction in ``raw``, or InvalidTransaction saying why not."""
    if raw is None:
        raise InvalidTransaction("empty record (null value)")
    try:
        return decode_schema(raw)
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: invalid UTF-8
        raise InvalidTransaction(reason(raw, exc)) from None


def too_large(raw: bytes | None) -> str | None:
    """Why ``raw`` is refused for its size alone, if it is."""
    if raw is not None and len(raw) > MAX_BYTES:
        return f"record too large: {len(raw):,} bytes, at most {MAX_BYTES:,}"
    return None


def why_refused(raw: bytes | None) -> str:
    """Why ``decode_schema`` refused ``raw``: the reason ``decode`` gives."""
    try:
        decode(raw)
    except InvalidTransaction as exc:
        return str(exc)
    return "not a transaction"  # unreachable while decode and the schema agree


def reason(raw: bytes, error: Exception) -> str:
    """Why ``raw`` was refused, in words a person reading the dead letters follows.

    Only refused records come here, so this may take its time: it decodes again to a
    dict and names the first field at fault. The schema stays the only judge: where
    this finds nothing to say, msgspec's own message is the reason.
    """
    try:
        tx = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    try:
        _explain(tx)
    except InvalidTransaction as exc:
        return str(exc)
    return str(error)


def _explain(tx: Any) -> None:
    if not isinstance(tx, dict):
        raise InvalidTransaction(f"not a JSON object but {type(tx).__name__}")
    for field in ("source", "target"):
        _text(tx, field, required=True)
    _text(tx, "id", required=False)
    if "amount" not in tx:
        raise InvalidTransaction("missing field: amount")
    amount = tx["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidTransaction(f"amount is not a number: {_show(amount)}")
    if not math.isfinite(amount) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidTransaction(f"amount out of range (0, {MAX_AMOUNT:.0f}]: {amount!r}")
    if "currency" not in tx:
        raise InvalidTransaction("missing field: currency")
    currency = tx["currency"]
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise InvalidTransaction(f"unknown currency: {_show(currency)}")
    ts = tx.get("ts", 0)
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < MAX_TS:
        raise InvalidTransaction(f"ts is not a time in ms since epoch: {_show(ts)}")


def _text(tx: dict[str, Any], field: str, required: bool) -> None:
    if field not in tx:
        if required:
            raise InvalidTransaction(f"missing field: {field}")
        return
    value = tx[field]
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidTransaction(f"{field} is not a text of 1..{MAX_TEXT} characters: "
                                 f"{_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def encode(tx: dict[str, Any]) -> bytes:
    return orjson.dumps(tx)


def extend(raw: bytes, tx: Transaction, fields: bytes) -> bytes:
    """``raw`` (a valid transaction's bytes) with JSON members ``fields`` appended.

    Appending to the original bytes instead of re-encoding keeps the record exactly
    as its producer wrote it and costs a copy, not a serialisation. ``fields`` is a
    JSON fragment starting with a comma. A record that already has a ``detection`` is
    re-encoded without it, so that no key appears twice.
    """
    if tx.detection is not msgspec.UNSET:
        members = orjson.loads(raw)
        del members["detection"]
        raw = orjson.dumps(members)
    body = raw.rstrip()
    return body[:-1] + fields + b"}" if fields else body  # nothing to add: no copy
