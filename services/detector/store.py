"""Keyed state that writes its changes to a changelog. Pure.

Every store of the stateful rules (windows, paces, habits, payees) remembers which
keys it changed, and can say its whole state of any key as plain values (lists,
numbers, strings); the stages write those states to their changelog and read them
back (``restore``) when an instance takes a partition over.

Changelog values are MessagePack (``encode_state``): a third smaller than JSON and
quicker both ways. Values written as JSON by older detectors are still read
(``decode_state``).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import msgspec
import orjson

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def encode_state(state: Any) -> bytes:
    """A changelog value: ``state`` (a map or an array at the top) as MessagePack."""
    return _encode(state)


def decode_state(value: bytes) -> Any:
    """What ``encode_state`` wrote, or the JSON of older detectors. Every value at the
    top is a map or an array: in MessagePack its first byte is 0x80 or more (fixmap,
    fixarray, map 16/32, array 16/32), in JSON a character of ASCII, below it."""
    return _decode(value) if value[0] >= 0x80 else orjson.loads(value)


class ChangeTracking:
    """The changelog side of a store: ``_changed`` holds the keys to write."""

    _changed: set[str]
    late = 0  # records refused as too late for the store: only windows refuse any

    def state_of(self, key: str) -> Any:
        """The store's state of ``key``, as plain values; None when it holds nothing of it."""
        raise NotImplementedError

    def restore(self, key: str, state: Any) -> None:
        """Take ``state`` (as ``state_of`` gave it; None: nothing) as the store's state
        of ``key``."""
        raise NotImplementedError

    def restore_many(self, keys: list[str], states: list[Any]) -> None:
        """``restore`` of each key in turn."""
        for key, state in zip(keys, states, strict=True):
            self.restore(key, state)

    def states_of(self, keys: list[str]) -> list[Any]:
        """``state_of`` of each of ``keys``."""
        return list(map(self.state_of, keys))

    def take_changed(self) -> set[str]:
        """The keys changed since the last call (forgotten ones included)."""
        changed, self._changed = self._changed, set()
        return changed

    def changes(self) -> Iterator[tuple[str, Any]]:
        """``(key, state)`` of every key changed since the last call, None for a key
        the store forgot."""
        for key in self.take_changed():
            yield key, self.state_of(key)


def forget_oldest(held: dict[str, Any], cap: int, changed: set[str]) -> None:
    """Make room in ``held`` (oldest key first) for one more key below ``cap``: the
    oldest thousandth of it goes at once, each written as forgotten (``changed``).

    One key at a time, every new key past the cap would pay for it: a dict leaves a
    hole where its first key was, and finding the next first key walks every hole
    left before it, so at a million keys each new one would cost a scan."""
    count = max(len(held) - cap + 1, cap // 1000, 1)
    oldest = list(islice(held, count))
    for key in oldest:
        del held[key]
    changed.update(oldest)
