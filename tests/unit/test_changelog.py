"""The changelog's encoding: every store's state survives it, and the JSON values of
older detectors are still read, alone or mixed with today's."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from services.detector.rules import STORE_CODES, SourceRules, TargetRules
from services.detector.stages import PartitionedState
from services.detector.store import decode_state, encode_state

MINUTE = 60_000


def busy_rules() -> tuple[SourceRules, TargetRules]:
    """Rules with something in every store: tiny payments, a burst, a fan-in."""
    source, target = SourceRules(novelty=True), TargetRules(novelty=True)
    for i in range(40):
        payer, ts = f"ACC{i % 7}", i * MINUTE // 4
        features: dict[str, float] = {}
        amount = 5.0 if i % 3 else 120.0 + i
        source.evaluate(payer, f"SHOP{i % 5}", amount, ts, [], features)
        target.evaluate(f"SHOP{i % 5}", payer, ts, [], features, ts - i % 2)
    return source, target


def old_json(records: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """The same records as an older detector wrote them: JSON, stores by name (a long
    window's settled records, which none of them wrote, as they are)."""
    names = {code: name for name, code in STORE_CODES.items()}
    return [(key, None if value is None else orjson.dumps(
        {names[code]: state for code, state in decode_state(value).items()}))
        if key.startswith(b"/") else (key, value) for key, value in records]


def states(rules: SourceRules | TargetRules) -> dict[str, dict[str, Any]]:
    rules.flush()  # what the column stores restored, in their columns
    keys = {key for store in rules.stores.values()
            for key in getattr(store, "_keys", getattr(store, "_sources", getattr(
                store, "_accounts", getattr(store, "_targets", {}))))}
    # The column stores' accounts: their slots' names.
    keys |= {name for store in rules.stores.values() if hasattr(store, "slots")
             for name in store.slots.names if name is not None}
    return {name: {key: store.state_of(key) for key in sorted(keys | {""})}
            for name, store in rules.stores.items()}


@pytest.mark.parametrize("stage", ["source", "target"])
def test_every_store_comes_back_from_its_changelog(stage: str) -> None:
    rules = busy_rules()[stage == "target"]
    assert all(any(v is not None for v in held.values()) for held in states(rules).values())
    records = rules.encoded_changes()
    assert all(value is None or value[0] >= 0x80 for _, value in records)  # MessagePack
    # States a column store writes as MessagePack itself are msgspec's bytes.
    assert all(value is None or encode_state(decode_state(value)) == value
               for _, value in records)
    made: Any = type(rules)
    back: PartitionedState[Any, Any] = PartitionedState(lambda: made(novelty=True),
                                                        lambda: None)
    assert back.assign(0, records) == len(records)
    assert states(back.partitions[0]) == states(rules)


def test_a_value_is_read_in_either_encoding() -> None:
    state = {1: [[1, 2], [None, "A"]], 2: [0, 1, 2.5, None]}
    assert decode_state(encode_state(state)) == state
    assert decode_state(orjson.dumps({"pace": [0, 1, 2.5]})) == {"pace": [0, 1, 2.5]}
    assert decode_state(encode_state({"time": 5})) == {"time": 5}  # a clock's


@pytest.mark.parametrize("stage", ["source", "target"])
def test_a_changelog_of_old_json_and_new_records_restores_alike(stage: str) -> None:
    rules = busy_rules()[stage == "target"]
    records = rules.encoded_changes()
    half = len(records) // 2
    made: Any = type(rules)
    for log in (old_json(records), old_json(records[:half]) + records[half:],
                records[:half] + old_json(records[half:])):
        back = made(novelty=True)
        for key, value in log:
            back.restore(key.decode(), None if value is None else decode_state(value))
        assert states(back) == states(rules)


def held_order(rules: SourceRules | TargetRules) -> dict[str, list[str]]:
    """Each store's keys in the order its cap would forget them."""
    rules.flush()
    out: dict[str, list[str]] = {}
    for name, store in rules.stores.items():
        if hasattr(store, "seq"):
            held = np.flatnonzero(store.held_by)
            slots = held[np.argsort(store.seq[held], kind="stable")].tolist()
            out[name] = [store.slots.names[slot] for slot in slots]
        else:
            out[name] = list(getattr(store, "_sources", getattr(store, "_keys", {})))
    return out


@pytest.mark.parametrize("stage", ["source", "target"])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_a_batch_restore_is_a_restore_record_by_record(stage: str, chunk: int) -> None:
    """Keys written again, deleted, and in records of a store each, in batches of
    ``chunk`` records, the stores taking chunks of 2: as one record at a time."""
    source, target = SourceRules(novelty=True), TargetRules(novelty=True)
    rules = (source, target)[stage == "target"]
    log: list[tuple[bytes, bytes | None]] = []
    for i in range(60):
        payer, ts = f"ACC{i % 7}", i * MINUTE // 4
        features: dict[str, float] = {}
        source.evaluate(payer, f"SHOP{i % 5}", 5.0 if i % 3 else 120.0 + i, ts, [], features)
        target.evaluate(f"SHOP{i % 5}", payer, ts, [], features, ts - i % 2)
        if i % 9 == 8:
            log += rules.encoded_changes()
    first = next(key.decode()[1:] for key, _ in log if key != b"/")  # an account
    log += [(f"/{first}".encode(), None), log[1], old_json(log[2:3])[0]]
    log += [(f"{name}/{first}".encode(), encode_state(held[first])) for name, held in
            states(rules).items() if held.get(first) is not None][:1]
    made: Any = type(rules)
    one, batched = made(novelty=True), made(novelty=True)
    for key, value in log:
        one.restore(key.decode(), None if value is None else decode_state(value))
    for store in batched.stores.values():
        store.restore_chunk = 2
    for start in range(0, len(log), chunk):
        part = log[start:start + chunk]
        batched.restore_batch([key.decode() for key, _ in part],
                              [None if value is None else decode_state(value)
                               for _, value in part])
    assert states(batched) == states(one)
    assert held_order(batched) == held_order(one)
