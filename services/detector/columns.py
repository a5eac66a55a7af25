"""The stateful rules' per-account state as columns: accounts mapped to dense slots
once, each store's state an array by slot, and a whole batch judged by compiled
kernels (``kernels``). Pure.

``Slots`` gives every account of a rule set a slot. By source: ``WindowColumns`` (the
velocity window's event times), ``PaceColumns`` (an account's pace and the stream's
counts), ``HabitColumns`` (its habit in money) and ``NoveltyColumns`` (its recent
payees). By target: ``MixColumns`` (the payer mix) and ``PayeeColumns`` (the payee
history). Each is a store like every other (``store.ChangeTracking``): its changelog
states, its insertion order (hence what its cap forgets first) and its figures are
those of its reference in ``windows`` or ``rules`` (``KeyedTimes``, ``AccountPace``,
``AmountAnomaly``, ``CounterpartyNovelty``, ``PayerMix``, ``PayeeHistory``), which
judge a record at a time and which the tests hold them to. A slot goes back to the
free list once no store holds its account. A store writes the changelog states of
many keys as MessagePack straight from its columns (``encoded_at``,
``msgpack_columns``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from itertools import chain
from sys import intern
from typing import Any, cast

import numpy as np
from scipy.special import betainc

from services.detector import kernels, msgpack_columns
from services.detector.kernels import (
    DONE,
    NEVER,
    NO_BURST,
    STOP_EVICT,
    W_LATE,
    W_NEWEST,
    W_SWEPT,
    W_UNUSED,
)
from services.detector.name_index import NameIndex
from services.detector.name_index import grown as _grown
from services.detector.rules import RuleSettings, VelocitySettings, _History
from services.detector.store import ChangeTracking, encode_state
from services.detector.windows import SlidingWindow

INT, FLOAT, FLAG = np.int64, np.float64, np.uint8
# A slot's or a pool node's number: four bytes, where a million accounts make each
# int64 column of them 4 MiB larger for nothing.
SLOT = np.int32
SEQ_LIMIT = 2**31  # insertion numbers (``seq``) are int32 too, renumbered before this


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's ``mallopt`` parameters
MAPPED_FROM = 1024 * 1024  # blocks this large get a mapping of their own
KEPT_ON_TOP = 8 * 1024 * 1024  # free memory the heap keeps at its top


def map_large_blocks() -> None:
    """Fix glibc's malloc thresholds: every block of ``MAPPED_FROM`` bytes or more gets
    a mapping of its own, returned to the system when freed, and the heap gives back
    its top only beyond ``KEPT_ON_TOP``.

    By default malloc raises the first threshold (up to 32 MiB) to the size of each
    mapped block freed: once a grown column has freed its old megabytes, every array
    below them (a commit's buffers and records, a restore's chunks, the columns grown
    next) comes from the heap, where, freed among blocks that live on, it stays held:
    the state of 500,000 accounts took 553 MiB, 128 of them free. Setting it stops the
    raising. It is 1 MiB, not the default 128 KiB: a batch's arrays (a thousand rows
    of the model's 41 features is 328 KiB) would otherwise each be mapped, touched
    page by page and unmapped, many times a batch; those page faults were a fifth of
    routing's time."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MAPPED_FROM)
        libc.mallopt(M_TRIM_THRESHOLD, KEPT_ON_TOP)
    except (OSError, AttributeError):  # not glibc: its own allocator's ways
        pass


map_large_blocks()  # before the first column is made


_NO_SLOTS = np.empty(0, SLOT)  # as ``changed_slots``
_NO_SLOTS.flags.writeable = False


class Slots:
    """Accounts to dense slots, for the stores that share them (``holders``): a slot is
    freed once none of them holds its account."""

    def __init__(self, capacity: int = 1024) -> None:
        self.index = NameIndex(capacity)
        self.names: list[str | None] = []
        self.free: list[int] = []
        self.capacity = capacity
        self.holders: list[_Columns] = []
        self._released: list[int] = []

    def of(self, names: list[str]) -> np.ndarray:
        """The slots of ``names``, new ones given a slot (the stores grow to hold it)."""
        for holder in self.holders:
            holder.flush()
        return self.of_names(names)

    def of_names(self, names: list[str]) -> np.ndarray:
        """``of``, without first flushing what the stores restored (``flush`` uses it)."""
        slots, missing = self.index.lookup(names)
        if missing:  # new names: each given a slot (once), freed ones first
            absent = np.flatnonzero(slots < 0).tolist()
            new = list(dict.fromkeys(map(names.__getitem__, absent)))
            given = dict(zip(new, self.add_all(new), strict=True))
            slots[absent] = list(map(given.__getitem__, map(names.__getitem__, absent)))
        return slots

    def known(self, names: list[str]) -> np.ndarray:
        """The slots of ``names``, -1 for a name without one (none is given)."""
        return self.index.lookup(names)[0]

    def add_all(self, names: list[str]) -> list[int]:
        """Slots for ``names`` (new and distinct), the last freed first, as adding them
        one by one gives them."""
        reused = min(len(names), len(self.free))
        slots = [self.free.pop() for _ in range(reused)]
        for slot, name in zip(slots, names, strict=False):
            self.names[slot] = name
        first = len(self.names)
        slots += range(first, first + len(names) - reused)
        self.names += names[reused:]
        if len(self.names) > self.capacity:
            while len(self.names) > self.capacity:
                self.capacity *= 2
            for holder in self.holders:
                holder.grow(self.capacity)
        self.index.add(names, slots)
        return slots

    def release(self, slots: Any) -> None:
        """Free those of ``slots`` that no store holds any longer, once the batch is
        done (``settle``): its later records may still name them."""
        self._released.extend(int(slot) for slot in slots)

    def release_unheld(self) -> None:
        """Free every slot no store holds (after a sweep, which drops keys wholesale)."""
        held = np.zeros(self.capacity, np.bool_)
        for holder in self.holders:
            held |= holder.held_by.astype(np.bool_)
        named = np.ones(len(self.names), np.bool_)
        named[self.free] = False  # a slot is free exactly when it names no account
        self.release(np.flatnonzero(named & ~held[:len(named)]))

    def settle(self) -> None:
        released, self._released = self._released, []
        freed: list[int] = []
        for slot in released:
            name = self.names[slot]
            if name is None or any(h.held_by[slot] for h in self.holders):
                continue
            for holder in self.holders:  # its change is still to be written
                if holder.flags[slot]:
                    holder._changed.add(name)
            self.names[slot] = None
            self.free.append(slot)
            freed.append(slot)
        self.index.remove(freed)


class _Columns(ChangeTracking):
    """What every column store shares: which slots they hold, in what order they took
    them (``seq``: the cap forgets the oldest first, as a dict's order would), and the
    slots changed since the changelog last asked."""

    _ints: tuple[str, ...] = ()
    _floats: tuple[str, ...] = ()
    # Integer columns narrower than int64 (``_ints`` are int64 otherwise).
    _narrow: dict[str, type] = {}
    _state_kinds: np.ndarray  # ``_state``'s kinds of value (``msgpack_columns``)
    # Restored states taken into the columns at once: a few thousand, so that the
    # decoded states of a chunk, freed together, leave room the next chunk's fill (of
    # 65,536, they left 74 MiB of 200,000 accounts' restore free but held).
    restore_chunk = 2048

    def __init__(self, slots: Slots, max_accounts: int) -> None:
        self.slots = slots
        self.max_accounts = max_accounts
        capacity = slots.capacity
        self.held_by = np.zeros(capacity, FLAG)
        self.seq = np.zeros(capacity, SLOT)  # renumbered before it would overflow
        self.flags = np.zeros(capacity, FLAG)  # changed since the changelog last asked
        self.changed_slots = np.zeros(capacity, SLOT)
        # changed slots listed, accounts held, the next insertion number, and (pace)
        # whether the stream's counts changed
        self.counts = np.zeros(4, INT)
        for name in self._ints:
            setattr(self, name, np.zeros(capacity, self._narrow.get(name, INT)))
        for name in self._floats:
            setattr(self, name, np.zeros(capacity, FLOAT))
        self._changed: set[str] = set()  # names forgotten since the changelog last asked
        # States restored but not yet in the columns: a restore reads a changelog of a
        # record a key, and the columns take them all at once (``flush``).
        self._pending: list[tuple[str, Any]] = []
        slots.holders.append(self)

    def grow(self, capacity: int) -> None:
        for name in ("held_by", "seq", "flags", "changed_slots", *self._ints, *self._floats):
            old = getattr(self, name)
            new = np.zeros(capacity, old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)

    def __len__(self) -> int:
        self.flush()
        return int(self.counts[1])

    def flush(self) -> None:
        """Put the states restored since the last call in the columns, as a dict would
        take them one by one: the newest state of a key wins, and a key keeps its place
        in the order unless it was deleted in between."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if None in [state for _, state in pending]:
            final: dict[str, Any] = {}
            gone: dict[str, None] = {}
            for key, state in pending:
                if state is None:
                    final.pop(key, None)
                    gone[key] = None
                else:
                    final[key] = state
            # Forgotten before any is put back, and only those held: a velocity window
            # restores most keys as none (no event in the last minute), and a call a key
            # to find that it holds nothing cost a second a million keys. (A key
            # forgotten, then restored, takes a new place in the order, as one by one.)
            slots = self.slots.known(list(gone))
            held = slots[(slots >= 0) & (self.held_by[slots] != 0)]
            if len(held):
                self._forget(held)
        else:  # no deletion: a dict of them is what a dict would hold
            final = dict(pending)
        if not final:
            return
        keys = list(final)
        slots = self.slots.of_names(keys)
        new = slots[self.held_by[slots] == 0]
        self._number_room(len(new))
        self.held_by[new] = 1
        self.seq[new] = self.counts[2] + np.arange(len(new))
        self.counts[2] += len(new)
        self.counts[1] += len(new)
        self._apply(slots, list(final.values()))

    # The columns whose values, in this order, make a key's changelog state, for a
    # store whose state is one flat list (``state_of`` / ``states_of`` / ``_apply``).
    _state: tuple[str, ...] = ()

    def state_of(self, key: str) -> Any:
        if self._slot(key) is None:  # (``""``, asked of every store at each commit)
            return None
        [state] = self.states_of([key])
        return state

    def states_of(self, keys: list[str]) -> list[Any]:
        """The states of many keys, a column at a time (None: a key not held)."""
        slots = self._held_slots(keys)
        at = np.maximum(slots, 0)
        rows = zip(*(getattr(self, name)[at].tolist() for name in self._state), strict=True)
        return [None if slot < 0 else list(row)
                for slot, row in zip(slots.tolist(), rows, strict=True)]

    def encoded_states_of(self, keys: list[str]) -> list[bytes | None]:
        """``states_of``, each state as MessagePack (``store.encode_state``'s bytes)."""
        buf, ends = self.encoded_at(self._held_slots(keys))
        raw, start = buf.tobytes(), 0
        out: list[bytes | None] = []
        for key, end in zip(keys, ends.tolist(), strict=True):
            if end > start:
                out.append(raw[start:end])
            else:  # held by none, or the store's own scalars (``""``)
                state = self.state_of(key) if key == "" else None
                out.append(None if state is None else encode_state(state))
            start = end
        return out

    def held_at(self, slots: np.ndarray) -> np.ndarray:
        """``slots`` (of the shared table, -1 for a name it has not) with -1 where this
        store holds nothing."""
        held = np.empty(len(slots), INT)
        msgpack_columns.held_slots(slots, self.held_by, held)
        return held

    def encoded_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The states of the accounts at ``slots`` (as ``held_at`` takes them) as
        MessagePack, one after the other (``msgpack_columns``): ``(buffer, ends)``. A
        flat state of ``_state``'s columns; other stores write their own."""
        slots = self.held_at(slots)
        at = np.maximum(slots, 0)
        return msgpack_columns.rows(slots >= 0, self._state_kinds,
                                    [getattr(self, name)[at] for name in self._state])

    def changelog_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The states at ``slots`` as the changelog takes them: ``encoded_at``'s, but
        for a store that writes part of them in records of their own
        (``distinct_columns``)."""
        return self.encoded_at(slots)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._state_kinds = np.array([msgpack_columns.INTEGER if name in cls._ints else
                                     msgpack_columns.REAL for name in cls._state], np.uint8)

    def _apply(self, slots: np.ndarray, states: list[Any]) -> None:
        """Restored states into the columns, at ``slots`` (held already)."""
        states = self._current(states)
        for i, name in enumerate(self._state):
            getattr(self, name)[slots] = [state[i] for state in states]

    def _current(self, states: list[Any]) -> list[Any]:
        """Restored states in the current format (older detectors wrote fewer fields)."""
        return states

    def _forget(self, slots: np.ndarray) -> None:
        """Their accounts' states out of the store (slots it holds, each once)."""
        self._drop(slots)

    def _number_room(self, coming: int) -> None:
        """Room in ``seq`` (int32) for ``coming`` more insertion numbers: before they
        would overflow, the accounts held are numbered anew from 0, in their order."""
        if int(self.counts[2]) + coming < SEQ_LIMIT:
            return
        held = np.flatnonzero(self.held_by)
        self.seq[held[np.argsort(self.seq[held], kind="stable")]] = np.arange(len(held))
        self.counts[2] = len(held)

    def _run(self, kernel: Any, *args: Any) -> None:
        """``kernel`` over a batch from its first record, forgetting the oldest accounts
        wherever it stops at the cap, until it is done."""
        self._number_room(len(args[0]))  # (the records' slots)
        start = 0
        while True:
            code, start = kernel(start, *args)
            if code == DONE:
                return
            self.forget_oldest()  # STOP_EVICT

    def restore(self, key: str, state: Any) -> None:
        # For ``flush``; taken in as a chunk grows, so that a restore does not hold
        # every decoded state of a million keys at once. (Inline: a call a key counts.)
        pending = self._pending
        pending.append((key, state))
        if len(pending) >= self.restore_chunk:
            self.flush()

    def restore_many(self, keys: list[str], states: list[Any]) -> None:
        # A restore's chunk of keys at once: ``restore``'s, without a call a key.
        if "" in keys:  # a store's own scalars (``PaceColumns``, ``EventPool``)
            super().restore_many(keys, states)
            return
        pending = self._pending
        pending.extend(zip(keys, self._restored(states), strict=True))
        if len(pending) >= self.restore_chunk:
            self.flush()

    def _restored(self, states: list[Any]) -> list[Any]:
        """Restored states as ``flush`` takes them."""
        return states

    def _slot(self, key: str) -> int | None:
        self.flush()
        slot = self.slots.index.get(key)
        return None if slot < 0 or not self.held_by[slot] else slot

    def _held_slots(self, keys: list[str]) -> np.ndarray:
        """The slot of each key this store holds, -1 for the others."""
        self.flush()
        return self.held_at(self.slots.known(keys))

    def take_changed(self) -> set[str]:
        listed, changed = self.take_changed_slots()
        named: set[str | None] = set(map(self.slots.names.__getitem__, listed.tolist()))
        named.discard(None)  # a slot freed since: its name went with it
        changed.update(cast("set[str]", named))
        return changed

    def take_changed_slots(self) -> tuple[np.ndarray, set[str]]:
        """``take_changed`` as the slots changed (a slot freed since among them) and
        the names not in them: those forgotten, and the store's own (``""``)."""
        self.flush()
        n = int(self.counts[0])
        listed: np.ndarray
        if not n:  # (asked at every turn that catches up, of every partition's stores)
            listed = _NO_SLOTS
        else:
            listed = self.changed_slots[:n].copy()
            self.flags[listed] = 0
            self.counts[0] = 0
        changed, self._changed = self._changed, set()
        return listed, changed

    def _drop(self, slots: np.ndarray) -> None:
        self.held_by[slots] = 0
        self.counts[1] -= len(slots)
        self.slots.release(slots.tolist())
        self.slots.settle()

    def forget_oldest(self) -> None:
        """``store.forget_oldest``: room for one more account below the cap, the
        oldest thousandth going at once, each written as forgotten."""
        self.flush()
        cap = self.max_accounts
        count = max(int(self.counts[1]) - cap + 1, cap // 1000, 1)
        held = np.flatnonzero(self.held_by)
        oldest = held[np.argsort(self.seq[held], kind="stable")[:count]]
        self.held_by[oldest] = 0
        self.counts[1] -= len(oldest)
        names = self.slots.names
        self._changed.update(names[slot] for slot in oldest.tolist())
        self.slots.release(oldest)


class PaceColumns(_Columns):
    """``rules.AccountPace`` in columns: each source's decayed count since it was first
    seen, the stream's count when it was (``base``; NaN for older state without one),
    and the burst it may be in; and the stream's counts (``ti``, ``tf``, ``seconds``,
    a ring of ``[second, payments]``), under the key ``""``."""

    name = "pace"
    _ints = ("first", "at", "burst")
    _floats = ("count", "base", "held")

    first: np.ndarray
    at: np.ndarray
    burst: np.ndarray
    count: np.ndarray
    base: np.ndarray
    held: np.ndarray

    def __init__(self, slots: Slots, half_life_ms: int = 3_600_000,
                 max_accounts: int = 200_000, recent_half_life_ms: int = 30_000) -> None:
        if half_life_ms <= 0 or max_accounts < 1 or \
                not 0 < recent_half_life_ms <= half_life_ms:
            raise ValueError(f"invalid pace: half-life {half_life_ms} ms (recent "
                             f"{recent_half_life_ms} ms), {max_accounts} sources")
        super().__init__(slots, max_accounts)
        self.half_life_ms = half_life_ms
        self.recent_half_life_ms = recent_half_life_ms
        self.ti = np.zeros(7, INT)
        self.tf = np.zeros(2, FLOAT)
        self.seconds = np.zeros((64, 2), INT)

    def fit_seconds(self, window_ms: int) -> None:
        """A ring long enough for a window's seconds (the window may have grown)."""
        need = max(window_ms // 1000 + 2, int(self.ti[kernels.T_LEN]))
        if len(self.seconds) < need:
            self._relay(self._seconds(), need)

    def _seconds(self) -> list[list[int]]:
        head, length, ring = int(self.ti[kernels.T_HEAD]), int(self.ti[kernels.T_LEN]), \
            self.seconds
        return [ring[(head + k) % len(ring)].tolist() for k in range(length)]

    def _relay(self, seconds: list[list[int]], capacity: int) -> None:
        ring = self.seconds = np.zeros((max(capacity, len(seconds), 4), 2), INT)
        if seconds:
            ring[:len(seconds)] = seconds
        self.ti[kernels.T_HEAD], self.ti[kernels.T_LEN] = 0, len(seconds)

    def in_burst(self, source: str) -> bool:
        slot = self._slot(source)
        return slot is not None and int(self.burst[slot]) != NO_BURST

    def take_changed_slots(self) -> tuple[np.ndarray, set[str]]:
        listed, changed = super().take_changed_slots()
        if self.counts[3]:
            self.counts[3] = 0
            changed.add("")
        return listed, changed

    def state_of(self, source: str) -> Any:
        """``[first, at, count, base, burst since, held]`` of a source; ``[first, at,
        long, short, seconds]`` of the stream's counts for ``""``."""
        if source == "":
            ti, tf = self.ti, self.tf
            if not ti[kernels.T_SET]:
                return None
            return [int(ti[kernels.T_FIRST]), int(ti[kernels.T_AT]), float(tf[kernels.T_LONG]),
                    float(tf[kernels.T_SHORT]), self._seconds()]
        slot = self._slot(source)
        if slot is None:
            return None
        base = float(self.base[slot])
        state = [int(self.first[slot]), int(self.at[slot]), float(self.count[slot]),
                 None if base != base else base]
        burst = int(self.burst[slot])
        if burst != NO_BURST:
            state += [burst, float(self.held[slot])]
        return state

    def states_of(self, keys: list[str]) -> list[Any]:
        slots = self._held_slots(keys)
        at = np.maximum(slots, 0)
        base = self.base[at]
        rows = zip(slots.tolist(), self.first[at].tolist(), self.at[at].tolist(),
                   self.count[at].tolist(), [None if b != b else b for b in base.tolist()],
                   self.burst[at].tolist(), self.held[at].tolist(), strict=True)
        out: list[Any] = []
        for key, (slot, first, last, count, since, burst, held) in zip(keys, rows, strict=True):
            if slot < 0 or key == "":
                out.append(self.state_of(key))
            elif burst == NO_BURST:
                out.append([first, last, count, since])
            else:
                out.append([first, last, count, since, burst, held])
        return out

    # ``[first, at, count, since]``, then ``[burst since, held]`` in a burst
    _PACE_KINDS = np.array([msgpack_columns.INTEGER, msgpack_columns.INTEGER,
                            msgpack_columns.REAL, msgpack_columns.REAL_OR_NIL,
                            msgpack_columns.INTEGER, msgpack_columns.REAL], np.uint8)

    def encoded_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slots = self.held_at(slots)
        at = np.maximum(slots, 0)
        burst = self.burst[at]
        return msgpack_columns.rows(
            slots >= 0, self._PACE_KINDS,
            [self.first[at], self.at[at], self.count[at], self.base[at], burst,
             self.held[at]], np.where(burst != NO_BURST, 6, 4))

    def restore(self, source: str, state: Any) -> None:
        if source == "":
            if isinstance(state, list) and len(state) in (4, 5):
                ti, tf = self.ti, self.tf
                ti[kernels.T_SET] = 1
                ti[kernels.T_FIRST] = ti[kernels.T_FROM] = state[0]
                ti[kernels.T_AT] = state[1]
                tf[kernels.T_LONG], tf[kernels.T_SHORT] = state[2], state[3]
                if len(state) == 5:
                    self._relay([[second, n] for second, n in state[4]], len(self.seconds))
                    ti[kernels.T_WINDOW] = sum(n for _, n in state[4])
                else:  # written before there were seconds: counted again from now
                    self._relay([], len(self.seconds))
                    ti[kernels.T_WINDOW] = 0
                    ti[kernels.T_FROM] = state[1]
            return
        pending = self._pending  # as ``_Columns.restore``
        pending.append((source, state))
        if len(pending) >= self.restore_chunk:
            self.flush()

    def _apply(self, slots: np.ndarray, states: list[Any]) -> None:
        self.first[slots] = [state[0] for state in states]
        self.at[slots] = [state[1] for state in states]
        self.count[slots] = [state[2] for state in states]
        # Without a base (older state), a source is judged by the whole stream's rate.
        self.base[slots] = [np.nan if len(state) < 4 or state[3] is None else state[3]
                            for state in states]
        # Older state has no burst under way.
        self.burst[slots] = [state[4] if len(state) > 5 else NO_BURST for state in states]
        self.held[slots] = [state[5] if len(state) > 5 else 0.0 for state in states]


class HabitColumns(_Columns):
    """``rules.AmountAnomaly``'s habits in columns: ``[count, mean, m2, log mean, log
    m2]`` of each source's amounts."""

    name = "amount_anomaly"
    _ints = ("hcount",)
    _narrow = {"hcount": SLOT}  # payments an account made
    _floats = ("mean", "m2", "log_mean", "log_m2")
    _state = ("hcount", "mean", "m2", "log_mean", "log_m2")

    hcount: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    log_mean: np.ndarray
    log_m2: np.ndarray

    def __init__(self, slots: Slots, settings: RuleSettings,
                 max_accounts: int = 200_000) -> None:
        super().__init__(slots, max_accounts)
        self.settings = settings

    def judge_batch(self, slots: np.ndarray, amounts: np.ndarray
                    ) -> tuple[np.ndarray, ...]:
        """``AmountAnomaly.judge`` of every record: ``(z, log z, ratio, history, hit,
        the mean it was judged against)``."""
        n = len(slots)
        z, log_z, ratio, mean = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        history, hit = np.zeros(n, INT), np.zeros(n, np.bool_)
        settings = self.settings
        fparams = np.array([settings.anomaly_z, settings.anomaly_ratio], FLOAT)
        self._run(kernels.habit_run, slots, amounts, self.held_by, self.seq, self.hcount,
                  self.mean, self.m2, self.log_mean, self.log_m2, self.flags,
                  self.changed_slots, self.counts, self.max_accounts,
                  int(settings.anomaly_history), fparams, z, log_z, ratio, history, hit, mean)
        return z, log_z, ratio, history, hit, mean

    def _current(self, states: list[Any]) -> list[Any]:
        # An older changelog's habit in money only: the log habit from it.
        return [state if len(state) >= 5 else _History.of_amounts(*state[:3]).state()
                for state in states]


class EventPool(_Columns):
    """A keyed window in columns: each key's events, oldest first, a linked list of
    nodes in one pool of arrays (``times``, ``nxt`` and a subclass's ``_pool``); the
    window's newest time, its late count and its sweep in ``scalars``; the newest time
    in the changelog under ``""``."""

    _ints: tuple[str, ...] = ("head", "tail", "size")
    _narrow = {"head": SLOT, "tail": SLOT, "size": SLOT}  # pool nodes and their count
    _pool: tuple[str, ...] = ("times", "nxt")  # the arrays by node

    head: np.ndarray
    tail: np.ndarray
    size: np.ndarray

    def __init__(self, slots: Slots, window: SlidingWindow) -> None:
        super().__init__(slots, max_accounts=0)
        self.window = window
        self.times = np.zeros(1024, INT)
        self.nxt = np.zeros(1024, SLOT)
        # the newest event time, when last swept, late records, pool nodes used, free list
        self.scalars = np.array([NEVER, NEVER, 0, 0, -1], INT)

    @property
    def late(self) -> int:  # type: ignore[override]  # counted by the kernel
        return int(self.scalars[W_LATE])

    @property
    def newest(self) -> int:
        return int(self.scalars[W_NEWEST])

    def _grow_pool(self, room: int = 1) -> None:
        """Room for ``room`` more nodes at least: half as many again (not twice as
        many: a million accounts' windows hold millions of events)."""
        size = max(len(self.times) * 3 // 2, int(self.scalars[W_UNUSED]) + room)
        for name in self._pool:
            old = getattr(self, name)
            new = np.zeros(size, old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)

    def _run_growing(self, run: Callable[[int], tuple[int, int]]) -> None:
        """``run(start)``, a kernel over a batch from record ``start`` on, until it is
        done: where it stops for room, the pool grows and it goes on from there (the
        call reads the pool's arrays anew). Then the slots of keys the sweep dropped
        may be free."""
        start = 0
        while True:
            code, start = run(start)
            if code == DONE:
                break
            self._grow_pool()  # STOP_GROW
        if self.counts[2]:  # the sweep dropped keys: their slots may be free now
            self.counts[2] = 0
            self.slots.release_unheld()

    def take_changed_slots(self) -> tuple[np.ndarray, set[str]]:
        listed, changed = super().take_changed_slots()
        if len(listed) or changed:
            changed.add("")  # the newest event time goes with them
        return listed, changed

    def restore(self, key: str, state: Any) -> None:
        if key == "":
            scalars = self.scalars
            scalars[W_NEWEST] = scalars[W_SWEPT] = max(self.newest, state)
        else:  # a key without events is none (``_restored``)
            super().restore(key, self._restored([state])[0])

    def _restored(self, states: list[Any]) -> list[Any]:
        return [None if state is None or not state[0] else state for state in states]

    def _place(self, slots: np.ndarray, states: list[Any]) -> np.ndarray:
        """New nodes for restored states (``[times, ...]`` each), linked in order and
        made ``slots``' lists, their times set: the nodes, one after the other."""
        sizes = np.fromiter((len(state[0]) for state in states), INT, len(states))
        total = int(sizes.sum())
        if int(self.scalars[W_UNUSED]) + total > len(self.times):
            self._grow_pool(total)
        first = int(self.scalars[W_UNUSED])
        self.scalars[W_UNUSED] += total
        nodes = np.arange(first, first + total)
        ends = np.cumsum(sizes) + first  # one past each key's last node
        self.times[nodes] = np.fromiter(chain.from_iterable(state[0] for state in states),
                                        INT, total)
        self.nxt[nodes] = nodes + 1
        self.nxt[ends - 1] = -1
        self.head[slots] = ends - sizes
        self.tail[slots] = ends - 1
        self.size[slots] = sizes
        return nodes


class WindowColumns(EventPool):
    """``windows.KeyedTimes`` in columns (``EventPool``): each key's event times; the
    same window, lateness, sweep and changelog format (``[times, tags]``, the tags all
    null)."""

    def count_batch(self, slots: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """``KeyedTimes.count`` of every record, less one: the key's events in the
        record's window before it, -1 for a late record."""
        recent = np.zeros(len(slots), INT)
        window = self.window
        self._run_growing(lambda start: kernels.window_run(
            start, slots, ts, window.length_ms, window.grace_ms, self.head, self.tail,
            self.size, self.held_by, self.times, self.nxt, self.scalars, self.flags,
            self.changed_slots, self.counts, recent))
        return recent

    def _times(self, slot: int) -> list[int]:
        out, at, times, nxt = [], int(self.head[slot]), self.times, self.nxt
        for _ in range(int(self.size[slot])):
            out.append(int(times[at]))
            at = int(nxt[at])
        return out

    def state_of(self, key: str) -> Any:
        if key == "":
            return self.newest
        slot = self._slot(key)
        if slot is None:
            return None
        times = self._times(slot)
        return [times, [None] * len(times)]

    def states_of(self, keys: list[str]) -> list[Any]:
        slots = self._held_slots(keys)
        held = slots >= 0
        out = np.empty(int(self.size[slots[held]].sum()), INT)
        ends = np.empty(len(slots), INT)
        kernels.gather_times(slots, self.head, self.size, self.times, self.nxt, out, ends)
        times, start = out.tolist(), 0
        states: list[Any] = []
        for key, end, slot in zip(keys, ends.tolist(), slots.tolist(), strict=True):
            if slot < 0 or key == "":
                states.append(self.state_of(key))
            else:
                states.append([times[start:end], [None] * (end - start)])
            start = end
        return states

    def encoded_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slots = self.held_at(slots)
        events = int(self.size[slots[slots >= 0]].sum())
        # At most: a key's array of two and their headers, an event's time and nil.
        room = len(slots) * (1 + 2 * msgpack_columns.HEADER_BYTES) \
            + events * (msgpack_columns.NUMBER_BYTES + 1)
        return msgpack_columns.written(msgpack_columns.encode_times, room, slots, self.head,
                                       self.size, self.times, self.nxt)

    def _forget(self, slots: np.ndarray) -> None:
        scalars = self.scalars  # their events go back to the pool
        for slot in slots.tolist():
            for node in self._nodes(slot):
                self.nxt[node] = scalars[kernels.W_FREE]
                scalars[kernels.W_FREE] = node
        self.size[slots] = 0
        self._drop(slots)

    def _apply(self, slots: np.ndarray, states: list[Any]) -> None:
        scalars = self.scalars
        for slot in slots[self.size[slots] > 0].tolist():  # events held before: freed
            for node in self._nodes(slot):
                self.nxt[node] = scalars[kernels.W_FREE]
                scalars[kernels.W_FREE] = node
        self._place(slots, states)

    def _nodes(self, slot: int) -> list[int]:
        out, at = [], int(self.head[slot])
        for _ in range(int(self.size[slot])):
            out.append(at)
            at = int(self.nxt[at])
        return out


class BatchVelocity(VelocitySettings):
    """``rules.Velocity`` for a batch at once: the window's kernel, then the pace's."""

    name = "velocity"

    def __init__(self, settings: RuleSettings, slots: Slots) -> None:
        self.settings = settings
        self.events = WindowColumns(slots, self._window())
        self.pace = PaceColumns(slots)
        self.new = False  # whether the source of the payment last judged is a new account
        self.configure()

    def judge_batch(self, slots: np.ndarray, ts: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(counts, expected, gaps, new, fires)`` of every record, as ``Velocity.judge``
        gives them one at a time (a late record: count 0, expected 0, gap ``NO_GAP_S``,
        not new)."""
        recent = self.events.count_batch(slots, ts)
        n = len(slots)
        pace, settings = self.pace, self.settings
        window_ms = self.events.window.length_ms
        pace.fit_seconds(window_ms)
        params = np.array([window_ms, self._new_ms, self._hold_ms, pace.half_life_ms,
                           pace.recent_half_life_ms, pace.max_accounts], INT)
        fparams = np.array([settings.velocity_count, settings.velocity_ratio, 0.5,
                            settings.velocity_alpha], FLOAT)
        expected, gap = np.zeros(n), np.full(n, kernels.NO_GAP_S)
        new, fires = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        watched, past, share = np.zeros(n, INT), np.zeros(n), np.zeros(n)
        bulk, in_burst = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        pace._number_room(n)
        start = 0
        while True:
            code, at = kernels.pace_run(
                start, slots, ts, recent, pace.held_by, pace.seq, pace.first, pace.at,
                pace.burst, pace.count, pace.base, pace.held, pace.flags,
                pace.changed_slots, pace.counts, pace.ti, pace.tf, pace.seconds, params,
                fparams, expected, gap, new, fires, watched, past, share, bulk, in_burst,
                kernels.BETAINC)
            if code == DONE:
                break
            if code == STOP_EVICT:
                pace.forget_oldest()
                start = at
                continue
            # A candidate burst of an account with a past: beyond chance at its pace?
            fired = bool(betainc(int(recent[at]) + 1, float(past[at]) + 1.0,
                                 float(share[at])) < settings.velocity_alpha)
            fires[at] = fired
            kernels.settle(int(slots[at]), int(ts[at]),
                           fired and (bool(new[at]) or int(watched[at]) >= self._new_ms),
                           self._hold_ms, pace.burst, pace.count, pace.held)
            start = at + 1
        late = recent < 0
        new[late] = False  # judged without its window: nothing new known of it
        if n:
            self.new = bool(new[-1])
        return np.where(late, 0, recent + 1), expected, gap, new, fires


class MixColumns(_Columns):
    """``rules.PayerMix`` in columns: each target's payments lately and those from new
    accounts, decayed to the newest order (``at``), and those at that order."""

    name = "payer_mix"
    _ints = ("at",)
    _floats = ("paid", "from_new", "paid_at", "new_at")
    # ``[payments, from new accounts, at, payments at it, from new at it]``
    _state = ("paid", "from_new", "at", "paid_at", "new_at")

    at: np.ndarray
    paid: np.ndarray
    from_new: np.ndarray
    paid_at: np.ndarray
    new_at: np.ndarray

    def __init__(self, slots: Slots, half_life_ms: int, max_accounts: int = 500_000) -> None:
        super().__init__(slots, max_accounts)
        self.half_life_ms = half_life_ms

    def add_batch(self, slots: np.ndarray, ts: np.ndarray, orders: np.ndarray,
                  new: np.ndarray) -> np.ndarray:
        """``PayerMix.add`` of every record: the share of its target's payments lately
        that came from new accounts."""
        self.flush()
        share = np.zeros(len(slots))
        fparams = np.array([self.half_life_ms, 0.5], FLOAT)
        self._run(kernels.mix_run, slots, ts, orders, new, self.max_accounts, self.held_by,
                  self.seq, self.paid, self.from_new, self.at, self.paid_at, self.new_at,
                  self.flags, self.changed_slots, self.counts, fparams, share)
        return share

    def _current(self, states: list[Any]) -> list[Any]:
        # Older state has nothing held apart at its newest order.
        return [state if len(state) > 4 else [*state[:3], 0.0, 0.0] for state in states]


class PayeeColumns(_Columns):
    """``rules.PayeeHistory`` in columns: what each target received before its newest
    order, decayed, that order, and what it received at it."""

    name = "payee"
    _ints = ("at",)
    _floats = ("before", "at_count")
    _state = ("before", "at", "at_count")  # ``[received before, at, received at]``

    at: np.ndarray
    before: np.ndarray
    at_count: np.ndarray

    def __init__(self, slots: Slots, half_life_ms: int = 6 * 3_600_000,
                 max_accounts: int = 500_000) -> None:
        if half_life_ms <= 0 or max_accounts < 1:
            raise ValueError(f"invalid payee history: half-life {half_life_ms} ms, "
                             f"{max_accounts} accounts")
        super().__init__(slots, max_accounts)
        self.half_life_ms = half_life_ms

    def evaluate_batch(self, slots: np.ndarray, orders: np.ndarray) -> np.ndarray:
        """``PayeeHistory.evaluate`` of every record: payments its target received
        before it, decayed."""
        self.flush()
        before = np.zeros(len(slots))
        fparams = np.array([self.half_life_ms, 0.5], FLOAT)
        self._run(kernels.payee_run, slots, orders, self.max_accounts, self.held_by, self.seq,
                  self.before, self.at, self.at_count, self.flags, self.changed_slots,
                  self.counts, fparams, before)
        return before

    def _current(self, states: list[Any]) -> list[Any]:
        # ``[received, at]`` from older detectors: all of it before ``at``.
        return [state if len(state) > 2 else [*state[:2], 0.0] for state in states]


class PayeeTable:
    """Payee names to numbers, for the rows of ``NoveltyColumns``: a number a name, and
    how many rows hold it (``refs``). A number no row holds goes back to the free list
    (``release``), so the table is only as large as what the rows hold. The changelog's
    kernels write the names from the index's bytes (``msgpack_columns.put_name``)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.index = NameIndex(capacity)
        self.names: list[str | None] = []
        self.free: list[int] = []
        self.refs = np.zeros(capacity, SLOT)  # (rows: one an account at most)

    def __len__(self) -> int:
        return len(self.index)

    def numbers(self, names: list[str], shared: bool = False) -> np.ndarray:
        """The numbers of ``names``, new names numbered together (held by no row as
        yet; a restore brings a million): one lookup a known name. ``shared``: new
        names interned, where the same names come as a copy each (a restore's states)
        and one object should hold them all; a batch's new names are not worth it
        (0.45 µs a name)."""
        numbers, missing = self.index.lookup(names)
        if missing:
            absent = np.flatnonzero(numbers < 0).tolist()
            new = list(map(names.__getitem__, absent))
            distinct = list(dict.fromkeys(map(intern, new) if shared else new))
            given = dict(zip(distinct, self._add_all(distinct), strict=True))
            numbers[absent] = list(map(given.__getitem__, new))
        return numbers

    def _add_all(self, names: list[str]) -> list[int]:
        """Numbers for ``names`` (new and distinct), freed ones first."""
        reused = min(len(names), len(self.free))
        numbers = [self.free.pop() for _ in range(reused)]
        first = len(self.names)
        numbers += range(first, first + len(names) - reused)
        for number, name in zip(numbers[:reused], names, strict=False):
            self.names[number] = name
        self.names += names[reused:]
        self.index.add(names, numbers)
        if len(self.names) > len(self.refs):  # a quarter more: a million, bytes each
            self._grow(max(len(self.refs) * 5 // 4, len(self.names)))
        return numbers

    def _grow(self, size: int) -> None:
        """Room for ``size`` numbers in the arrays beside them."""
        self.refs = _grown(self.refs, size, 0)

    def release(self, numbers: Any) -> None:
        """Free those of ``numbers`` no row holds (once the batch that let them go is
        done: its later records may have taken them again)."""
        names, refs = self.names, self.refs
        freed: list[int] = []
        for number in numbers:
            if names[number] is not None and not refs[number]:
                names[number] = None
                freed.append(number)
        self.index.remove(freed)
        self.free += freed


class NoveltyColumns(_Columns):
    """``rules.CounterpartyNovelty`` in columns: each source's ``memory`` most recent
    payees, most recent last, a row of payee numbers (``PayeeTable``) with its length;
    its rate of new payees, decayed, as of event time ``at``; and its run of new payees.
    The changelog state is the reference's (``[recent payees, new rate, at, streak]``)."""

    name = "novelty"
    _ints = ("at", "streak", "length")
    # a run of new payees, and a row's length (``memory`` at most)
    _narrow = {"streak": SLOT, "length": np.int16}
    _floats = ("new_rate",)

    at: np.ndarray
    streak: np.ndarray
    length: np.ndarray
    new_rate: np.ndarray

    def __init__(self, slots: Slots, memory: int = 16, half_life_ms: int = 120_000,
                 max_accounts: int = 200_000) -> None:
        if not 0 < memory < 2**15 or max_accounts < 1 or half_life_ms <= 0:
            raise ValueError(f"invalid novelty memory: {memory} per source, half-life "
                             f"{half_life_ms} ms, {max_accounts} sources")
        super().__init__(slots, max_accounts)
        self.memory = memory
        self.half_life_ms = half_life_ms
        self.recent = np.zeros((slots.capacity, memory), np.int32)
        self.payees = PayeeTable()
        # as every store's, and the numbers the kernel reports let go (``novelty_run``)
        self.counts = np.zeros(5, INT)
        self._let_go: list[int] = []  # numbers a forgotten row let go, freed after

    def grow(self, capacity: int) -> None:
        super().grow(capacity)
        recent = np.zeros((capacity, self.memory), np.int32)
        recent[:len(self.recent)] = self.recent
        self.recent = recent

    def judge_batch(self, slots: np.ndarray, targets: list[str], ts: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``CounterpartyNovelty.judge`` of every record: ``(novel, new payees lately,
        streak)``."""
        self.flush()
        n = len(slots)
        payees = self.payees
        numbers = payees.numbers(targets)
        novel, lately, streak = np.zeros(n), np.zeros(n), np.zeros(n, INT)
        dropped = np.zeros(n, INT)
        self.counts[4] = 0
        fparams = np.array([self.half_life_ms, 0.5], FLOAT)
        self._number_room(n)
        start = 0
        while True:  # ``_run``, with the payee table's counts read anew at each call
            code, start = kernels.novelty_run(
                start, slots, numbers, ts, self.max_accounts, self.held_by, self.seq,
                self.recent, self.length, self.new_rate, self.at, self.streak, payees.refs,
                self.flags, self.changed_slots, self.counts, fparams, dropped, novel,
                lately, streak)
            if code == DONE:
                break
            self.forget_oldest()  # STOP_EVICT
        self._let_go.extend(dropped[:int(self.counts[4])].tolist())
        self._release()
        return novel, lately, streak

    def _release(self) -> None:
        let_go, self._let_go = self._let_go, []
        self.payees.release(let_go)

    def _empty(self, slots: np.ndarray) -> None:
        """The rows of ``slots`` let go of their payees (freed after, ``_release``)."""
        slots = slots[self.length[slots] > 0]  # (a slot no store held has none)
        if not len(slots):
            return
        rows = self.recent[slots]
        held = rows[np.arange(self.memory) < self.length[slots][:, None]]
        refs = self.payees.refs
        np.subtract.at(refs, held, 1)
        self._let_go.extend(held[refs[held] == 0].tolist())
        self.length[slots] = 0

    def forget_oldest(self) -> None:
        held = self.held_by.astype(np.bool_)
        super().forget_oldest()
        self._empty(np.flatnonzero(held & (self.held_by == 0)))

    def _forget(self, slots: np.ndarray) -> None:
        self._empty(slots)
        self._drop(slots)

    def state_of(self, source: str) -> Any:
        """``[recent payees, new rate, at, streak]``."""
        slot = self._slot(source)
        if slot is None:
            return None
        names = self.payees.names
        return [[names[p] for p in self.recent[slot, :int(self.length[slot])].tolist()],
                float(self.new_rate[slot]), int(self.at[slot]), int(self.streak[slot])]

    def states_of(self, keys: list[str]) -> list[Any]:
        slots = self._held_slots(keys)
        at = np.maximum(slots, 0)
        lengths = np.where(slots >= 0, self.length[at], 0)
        # Only the payees held, one list of names for every key, cut key by key.
        held = self.recent[at][np.arange(self.memory) < lengths[:, None]]
        payees = list(map(self.payees.names.__getitem__, held.tolist()))
        ends = np.cumsum(lengths).tolist()
        rows = zip(slots.tolist(), ends, lengths.tolist(), self.new_rate[at].tolist(),
                   self.at[at].tolist(), self.streak[at].tolist(), strict=True)
        return [None if slot < 0 else [payees[end - size:end], rate, when, run]
                for slot, end, size, rate, when, run in rows]

    def encoded_at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slots = self.held_at(slots)
        payees, table = int(self.length[slots[slots >= 0]].sum()), self.payees
        # At most: a key's array of four, its payees' header and three numbers; names.
        room = len(slots) * (1 + msgpack_columns.HEADER_BYTES
                             + 3 * msgpack_columns.NUMBER_BYTES) \
            + payees * (msgpack_columns.HEADER_BYTES + table.index.longest)
        names = table.index
        return msgpack_columns.written(
            msgpack_columns.encode_novelty, room, slots, self.recent, self.length,
            self.new_rate.view(np.uint64), self.at, self.streak, names.pool, names.at,
            names.length)

    def _apply(self, slots: np.ndarray, states: list[Any]) -> None:
        self._empty(slots)  # what a key held before
        memory = self.memory
        if all(len(state) == 4 for state in states):
            lists, rates, ats, streaks = zip(*states, strict=True)
        else:  # older changelogs have no streak
            lists = tuple(state[0] for state in states)
            rates = tuple(state[1] for state in states)
            ats = tuple(state[2] for state in states)
            streaks = tuple(state[3] if len(state) > 3 else 0 for state in states)
        lengths = np.fromiter(map(len, lists), INT, len(lists))
        if lengths.max(initial=0) > memory:
            # A row holds ``memory`` payees: a longer list (another memory) keeps its newest.
            lists = tuple(names[-memory:] for names in lists)
            lengths = np.minimum(lengths, memory)
        numbers = self.payees.numbers(list(chain.from_iterable(lists)), shared=True)
        np.add.at(self.payees.refs, numbers, 1)
        # Each number at its row and place in it: no row of the restore built whole.
        starts = np.cumsum(lengths) - lengths
        self.recent[np.repeat(slots, lengths),
                    np.arange(len(numbers)) - np.repeat(starts, lengths)] = numbers
        self.length[slots] = lengths
        self.new_rate[slots] = rates
        self.at[slots] = ats
        self.streak[slots] = streaks
        self._release()
