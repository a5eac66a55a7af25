"""Compiled kernels of the stateful rules, each for a whole batch in one call. Pure.

By source: the velocity window's counts (``window_run``, ``KeyedTimes``), an account's
pace (``pace_run``, ``AccountPace`` and ``Velocity``), its habit in money
(``habit_run``, ``AmountAnomaly``) and its recent payees (``novelty_run``,
``CounterpartyNovelty``); by target: the payer mix (``mix_run``, ``PayerMix``) and the
payee history (``payee_run``, ``PayeeHistory``).

State lives in arrays indexed by an account's dense slot (``columns``). A kernel walks
the batch in record order and does, per record, exactly the arithmetic of its
reference class in ``rules`` or ``windows`` (same operations, same order, the same
libm functions), so a batch gives the figures those give one record at a time, bit
for bit.

Why compiled and not numpy: each is a recurrence per account in event order whose
every step branches on the last (a burst held back from the pace, an outlier clipped
from the habit), and the pace reads the whole stream's running counts, which every
record moves. numpy can vectorise only across accounts, a round per payment an
account makes in the batch: a payroll's hundreds of payments at one instant make
hundreds of rounds. numba compiles the loop as written.

A kernel stops where Python must step in and says why (``STOP_*``): a new account
past the store's cap (Python forgets the oldest, as ``store.forget_oldest`` does, then
calls again from the same record). A velocity candidate's verdict needs the
regularised incomplete beta (``Velocity.surprising``): the pace kernel calls scipy's
own compiled function (``BETAINC``), the one ``scipy.special.betainc`` runs, so the
answer is the same to the bit. Where this scipy does not export it, the kernel stops
at each candidate instead and Python asks scipy (``STOP_SURPRISE``).
"""

from __future__ import annotations

import ctypes
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# Compiled kernels are cached on disk beside this module, so a detector compiles them
# once per install. Where that is read-only (an image run as an unprivileged user),
# numba would refuse to cache at all: a directory of the machine's temporary files.
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "fraud-console-numba")

from numba import cfunc, njit  # reads NUMBA_CACHE_DIR as it loads
from numba.extending import get_cython_function_address

DONE = -1
STOP_EVICT = 1  # a new account past the cap: forget the oldest, then call again
STOP_SURPRISE = 2  # a candidate burst: compute ``surprising``, settle, go on
ASK_PYTHON = -1.0  # what ``BETAINC`` returns where the kernel cannot compute it

NO_BURST = -(2**63)  # ``burst_since`` of a source not in a burst
LN2 = math.log(2)
NO_GAP_S = 86_400.0
PRIOR_PAYMENTS = 20.0
PRIOR_PAST_MS = 15 * 60_000

# Indices into the traffic's scalars (``_Traffic``): integers, then floats.
T_SET, T_FIRST, T_AT, T_FROM, T_WINDOW, T_HEAD, T_LEN = range(7)
T_LONG, T_SHORT = range(2)

# Indices into a kernel's integer parameters and float parameters.
P_WINDOW, P_NEW, P_HOLD, P_HALF, P_RECENT_HALF, P_CAP = range(6)
F_COUNT, F_RATIO, F_HALF, F_ALPHA = range(4)
# ``0.5 ** x`` with 0.5 a constant compiles to ``exp2(-x)``, which differs from CPython's
# ``pow`` in the last bit about once in a thousand: the base comes in as a parameter
# (``F_HALF``), so the kernels call ``pow`` as the reference does.

# ``betainc(a, b, x)`` as a C function the pace kernel calls, passed in as an argument:
# a pointer it reads at run time, so the compiled kernel can be cached on disk.
_BETAINC_TYPE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                 ctypes.c_double, ctypes.c_int)


def ask_python() -> Any:
    """The stand-in for ``betainc`` that sends every candidate to Python. (Compiled
    when first asked for: a detector whose scipy exports its own never needs it.)"""
    @cfunc("float64(float64, float64, float64, int32)", cache=True)
    def stand_in(a: float, b: float, x: float, skip_dispatch: int) -> float:
        return ASK_PYTHON

    return _BETAINC_TYPE(int(stand_in.address))  # type: ignore[arg-type]


def _scipy_betainc() -> Any:
    """scipy's compiled ``betainc`` for doubles (the first of its fused versions), or
    the stand-in where it is not exported so."""
    try:
        address = get_cython_function_address("scipy.special.cython_special",
                                              "__pyx_fuse_0betainc")
    except (ValueError, ImportError):
        return ask_python()
    return _BETAINC_TYPE(address)


BETAINC = _scipy_betainc()


@njit(cache=True, nogil=True)
def _span(half_life_ms: float, age_ms: float, one_half: float) -> float:
    return half_life_ms / LN2 * (1.0 - one_half ** (age_ms / half_life_ms))


@njit(cache=True, nogil=True)
def _mark(slot, flags, changed, counts):  # type: ignore[no-untyped-def]
    if not flags[slot]:
        flags[slot] = 1
        changed[counts[0]] = slot
        counts[0] += 1


@njit(cache=True, nogil=True)
def _take(slot, held_by, seq, counts):  # type: ignore[no-untyped-def]
    """A store holds ``slot`` from now on, last in its order (``counts``: changed slots
    so far, accounts held, the next insertion number)."""
    held_by[slot] = 1
    seq[slot] = counts[2]
    counts[2] += 1
    counts[1] += 1


@njit(cache=True, nogil=True)
def pace_run(start, slots, ts, recent,  # type: ignore[no-untyped-def]
             held_by, seq, first, at, burst, count, base, held,
             flags, changed, counts,
             ti, tf, seconds, params, fparams,
             expected_out, gap_out, new_out, fires_out, watched_out, past_out, share_out,
             bulk_out, in_burst_out, betainc):
    """``Velocity.judge`` from ``AccountPace.expect`` on, for records ``start`` on:
    ``recent`` is the velocity count less one (-1: late, the record is skipped).
    Returns ``(DONE, n)`` or ``(STOP_*, record)``. ``counts``: changed slots so far,
    accounts held, next insertion number, whether the traffic changed."""
    window_ms = params[P_WINDOW]
    new_ms = params[P_NEW]
    half = params[P_HALF]
    recent_half = params[P_RECENT_HALF]
    cap = params[P_CAP]
    velocity_count = fparams[F_COUNT]
    ratio = fparams[F_RATIO]
    one_half = fparams[F_HALF]
    alpha = fparams[F_ALPHA]
    capacity = seconds.shape[0]
    n = slots.shape[0]
    for i in range(start, n):
        if recent[i] < 0:
            continue
        t = ts[i]
        s = slots[i]
        # AccountPace._traffic_at
        if ti[T_SET] == 0:
            ti[T_SET] = 1
            ti[T_FIRST] = t
            ti[T_AT] = t
            ti[T_FROM] = t
            ti[T_WINDOW] = 0
            ti[T_HEAD] = 0
            ti[T_LEN] = 0
            tf[T_LONG] = 0.0
            tf[T_SHORT] = 0.0
        elif t > ti[T_AT]:
            tf[T_LONG] *= one_half ** ((t - ti[T_AT]) / half)
            tf[T_SHORT] *= one_half ** ((t - ti[T_AT]) / recent_half)
            ti[T_AT] = t
        if not held_by[s]:
            if counts[1] >= cap:
                return STOP_EVICT, i
            _take(s, held_by, seq, counts)
            first[s] = t
            at[s] = t
            count[s] = 0.0
            base[s] = tf[T_LONG]
            burst[s] = NO_BURST
            held[s] = 0.0
            gap = NO_GAP_S
            instant = False
            in_burst = False
        else:
            gap = (t - at[s]) / 1000 if t > at[s] else 0.0
            instant = t == at[s]
            in_burst = burst[s] != NO_BURST
        if t > at[s]:
            decay = one_half ** ((t - at[s]) / half)
            count[s] *= decay
            held[s] *= decay
            at[s] = t
        expected = 0.0
        watched = at[s] - first[s]
        new = new_ms > 0 and watched < new_ms and new_ms <= first[s] - ti[T_FIRST]
        span = _span(half, watched, one_half)
        lag = recent[i] - held[s]
        past = count[s] - (0.0 if lag < 0.0 else lag)
        whole = ti[T_FROM] == ti[T_FIRST] or ti[T_AT] - ti[T_FROM] >= window_ms
        has_base = not math.isnan(base[s])
        if span > window_ms and past > 0.0:
            # AccountPace._expected
            before = -1.0
            if has_base and whole:
                before = tf[T_LONG] - ti[T_WINDOW] - base[s] * one_half ** (
                    (ti[T_AT] - first[s]) / half)
            if before <= 0.0:
                age = ti[T_AT] - ti[T_FIRST]
                busier = 1.0
                if age > 0:
                    steady = tf[T_LONG] / _span(half, age, one_half) * _span(
                        recent_half, age, one_half)
                    busier = (tf[T_SHORT] + PRIOR_PAYMENTS) / (steady + PRIOR_PAYMENTS)
                expected = past / span * window_ms * busier
            else:
                lasting = span - window_ms
                others = ti[T_WINDOW] - recent[i]
                expected = past / lasting * window_ms * (others + PRIOR_PAYMENTS) / (
                    before / lasting * window_ms + PRIOR_PAYMENTS)
            if new:
                lasting = span - window_ms
                expected *= lasting / (lasting + PRIOR_PAST_MS)
        share = -1.0
        if has_base and whole:
            seen = tf[T_LONG] - base[s] * one_half ** ((ti[T_AT] - first[s]) / half)
            if seen > 0.0:
                share = ti[T_WINDOW] / seen
                if share > 1.0:
                    share = 1.0
            else:
                share = 1.0
        # This payment joins the stream's counts (``_Traffic.add``).
        tf[T_LONG] += 1.0
        tf[T_SHORT] += 1.0
        second = ti[T_AT] // 1000
        last = (ti[T_HEAD] + ti[T_LEN] - 1) % capacity
        if ti[T_LEN] > 0 and seconds[last, 0] == second:
            seconds[last, 1] += 1
        else:
            last = (ti[T_HEAD] + ti[T_LEN]) % capacity
            seconds[last, 0] = second
            seconds[last, 1] = 1
            ti[T_LEN] += 1
        ti[T_WINDOW] += 1
        oldest = (ti[T_AT] - window_ms) // 1000
        while ti[T_LEN] > 0 and seconds[ti[T_HEAD], 0] <= oldest:
            ti[T_WINDOW] -= seconds[ti[T_HEAD], 1]
            ti[T_HEAD] = (ti[T_HEAD] + 1) % capacity
            ti[T_LEN] -= 1
        _mark(s, flags, changed, counts)
        counts[3] = 1
        past = 0.0 if past < 0.0 else past
        expected_out[i] = expected
        gap_out[i] = gap
        new_out[i] = new
        watched_out[i] = watched
        past_out[i] = past
        share_out[i] = share
        bulk_out[i] = instant
        in_burst_out[i] = in_burst
        # Velocity.judge: a burst under way lasts while the source keeps half its pace.
        n_in = recent[i] + 1
        bar = velocity_count / 2 if in_burst else velocity_count
        candidate = not instant and n_in >= bar and n_in >= ratio * expected
        fires = candidate
        if candidate and not new and share >= 0.0:
            # Velocity.surprising: P(at least n of the past + n) beyond chance.
            chance = betainc(float(n_in), past + 1.0, share, 0)
            if chance == ASK_PYTHON:
                return STOP_SURPRISE, i  # Python asks ``surprising``, then settles it
            fires = chance < alpha
        fires_out[i] = fires
        settle(s, t, fires and (new or watched >= new_ms), params[P_HOLD], burst, count,
               held)
    return DONE, n


@njit(cache=True, nogil=True)
def settle(s, t, flagged, hold_ms, burst, count, held):  # type: ignore[no-untyped-def]
    """``AccountPace.settle``."""
    if not flagged:
        burst[s] = NO_BURST
        held[s] = 0.0
    elif burst[s] == NO_BURST:
        burst[s] = t
    if flagged and t - burst[s] < hold_ms:
        held[s] += 1.0
        return
    count[s] += 1.0 + held[s]
    held[s] = 0.0


# AmountAnomaly's constants (``rules``).
PRIOR_LOG_SPREAD = 0.5
PRIOR_WEIGHT = 2.0
HABIT_CLIP = 3.0
HABIT_FIRM = 1
PRIOR_M2 = PRIOR_WEIGHT * PRIOR_LOG_SPREAD ** 2
LOG_FLOOR = math.log(0.01)
A_HISTORY = 0  # integer parameter: ``anomaly_history``
A_Z, A_RATIO = range(2)  # float parameters


@njit(cache=True, nogil=True)
def habit_run(start, slots, amounts,  # type: ignore[no-untyped-def]
              held_by, seq, hcount, mean, m2, log_mean, log_m2,
              flags, changed, counts, cap, history, fparams,
              z_out, log_z_out, ratio_out, history_out, hit_out, mean_out):
    """``AmountAnomaly.judge`` for records ``start`` on. Returns ``(DONE, n)`` or
    ``(STOP_EVICT, record)``. ``counts``: changed slots so far, accounts held, next
    insertion number."""
    n = slots.shape[0]
    for i in range(start, n):
        s = slots[i]
        amount = amounts[i]
        if not held_by[s]:
            if counts[1] >= cap:
                return STOP_EVICT, i
            _take(s, held_by, seq, counts)
            hcount[s] = 0
            mean[s] = 0.0
            m2[s] = 0.0
            log_mean[s] = 0.0
            log_m2[s] = 0.0
        c = hcount[s]
        mu = mean[s]
        mu_before = mu
        log = math.log(amount) if amount > 0.01 else LOG_FLOOR
        clipped = True
        habitual = 0.0
        if c:
            ratio = amount / mu if mu > 0 else 1.0
            lm, lm2 = log_mean[s], log_m2[s]
            log_z = (log - lm) / math.sqrt((lm2 + PRIOR_M2) / (c - 1 + PRIOR_WEIGHT))
            if c >= HABIT_FIRM:
                reach = HABIT_CLIP * math.sqrt((lm2 + PRIOR_M2) / (c + PRIOR_WEIGHT))
                if log > lm + reach:
                    log = lm + reach
                elif log < lm - reach:
                    log = lm - reach
                else:
                    habitual = amount
                    clipped = False
        else:
            ratio = 1.0
            log_z = 0.0
            habitual = amount
            clipped = False
        score = 0.0
        hit = False
        if c >= history:
            std = math.sqrt(m2[s] / (c - 1)) if c > 1 else 0.0
            spread = std
            if 0.05 * mu > spread:
                spread = 0.05 * mu
            if spread < 0.01:
                spread = 0.01
            score = (amount - mu) / spread
            hit = score >= fparams[A_Z] and amount >= fparams[A_RATIO] * mu
        joins = math.exp(log) if clipped else habitual
        # _History.add
        c += 1
        hcount[s] = c
        delta = joins - mu
        mu = mu + delta / c
        mean[s] = mu
        m2[s] += delta * (joins - mu)
        lm = log_mean[s]
        delta = log - lm
        lm = lm + delta / c
        log_mean[s] = lm
        log_m2[s] += delta * (log - lm)
        _mark(s, flags, changed, counts)
        z_out[i] = score
        log_z_out[i] = log_z
        ratio_out[i] = ratio
        history_out[i] = c - 1
        hit_out[i] = hit
        mean_out[i] = mu_before
    return DONE, n


# A window's scalars (``window_run``): its newest event time, when it was last swept,
# late records, the next never-used node of the pool, and the head of its free list.
W_NEWEST, W_SWEPT, W_LATE, W_UNUSED, W_FREE = range(5)
STOP_GROW = 3  # the pool of event nodes is full: grow it, then call again
NEVER = -(2**63)  # a window's newest event time before its first


@njit(cache=True, nogil=True)
def _free(node, nxt, scalars):  # type: ignore[no-untyped-def]
    nxt[node] = scalars[W_FREE]
    scalars[W_FREE] = node


@njit(cache=True, nogil=True)
def new_node(nxt, scalars):  # type: ignore[no-untyped-def]
    """A node of the pool: the last freed, or the first never used (the caller made
    sure there is one)."""
    node = scalars[W_FREE]
    if node >= 0:
        scalars[W_FREE] = nxt[node]
    else:
        node = scalars[W_UNUSED]
        scalars[W_UNUSED] += 1
    return node


@njit(cache=True, nogil=True)
def window_run(start, slots, ts, length, grace,  # type: ignore[no-untyped-def]
               head, tail, size, held_by, times, nxt, scalars,
               flags, changed, counts, recent):
    """``KeyedTimes.count`` for records ``start`` on: each key's event times, oldest
    first, are a linked list of nodes in a pool (``times``, ``nxt``). ``recent``: the
    key's events in the record's window before it (-1: late). Returns ``(DONE, n)`` or
    ``(STOP_GROW, record)``. ``counts``: changed slots so far, keys held, whether the
    sweep dropped any."""
    n = slots.shape[0]
    capacity = times.shape[0]
    for i in range(start, n):
        if scalars[W_FREE] < 0 and scalars[W_UNUSED] >= capacity:
            return STOP_GROW, i
        t = ts[i]
        s = slots[i]
        newest = scalars[W_NEWEST]
        if t > newest:
            newest = t
            scalars[W_NEWEST] = t
        elif t < newest - grace:
            scalars[W_LATE] += 1
            recent[i] = -1
            continue
        _mark(s, flags, changed, counts)
        node = new_node(nxt, scalars)
        times[node] = t
        nxt[node] = -1
        if size[s] == 0:
            head[s] = tail[s] = node
            size[s] = 1
            held_by[s] = 1
            counts[1] += 1
            found = 1
        else:
            horizon = newest - grace - length
            while size[s] > 0 and times[head[s]] <= horizon:  # nothing can still see
                first = head[s]
                head[s] = nxt[first]
                size[s] -= 1
                _free(first, nxt, scalars)
            last = size[s] == 0 or t >= times[tail[s]]  # in order: the usual case
            if size[s] == 0:
                head[s] = tail[s] = node
            elif last:
                nxt[tail[s]] = node
                tail[s] = node
            elif t < times[head[s]]:
                nxt[node] = head[s]
                head[s] = node
            else:  # after every event at or before its time
                at = head[s]
                while nxt[at] >= 0 and times[nxt[at]] <= t:
                    at = nxt[at]
                nxt[node] = nxt[at]
                nxt[at] = node
            size[s] += 1
            # Its window: the events up to it (itself included) later than t - length.
            edge = t - length
            at = head[s]
            if last:  # every event is up to it: the list less its head up to the edge,
                # a walk over no more than the grace's events (the trim took the rest)
                found = size[s]
                while at >= 0 and times[at] <= edge:
                    found -= 1
                    at = nxt[at]
            else:
                found = 0
                while True:
                    if times[at] > edge:
                        found += 1
                    if at == node:
                        break
                    at = nxt[at]
        if scalars[W_SWEPT] == NEVER or newest - scalars[W_SWEPT] > length + grace:
            # Drop the keys whose events have all left every possible window.
            scalars[W_SWEPT] = newest
            horizon = newest - grace - length
            for key in range(size.shape[0]):
                if size[key] > 0 and times[tail[key]] <= horizon:
                    at = head[key]
                    while at >= 0:
                        following = nxt[at]
                        _free(at, nxt, scalars)
                        at = following
                    size[key] = 0
                    head[key] = tail[key] = -1
                    held_by[key] = 0
                    counts[1] -= 1
                    _mark(key, flags, changed, counts)
                    counts[2] = 1  # Python frees the slots no store holds
        recent[i] = found - 1
    return DONE, n


@njit(cache=True, nogil=True)
def gather_times(slots, head, size, times, nxt, out, ends):  # type: ignore[no-untyped-def]
    """Every event time of ``slots`` (-1: none), oldest first, one after the other in
    ``out``; where each slot's end in ``ends``."""
    k = 0
    for j in range(slots.shape[0]):
        s = slots[j]
        if s >= 0:
            at = head[s]
            for _ in range(size[s]):
                out[k] = times[at]
                k += 1
                at = nxt[at]
        ends[j] = k


# The second stage's scalar stores: ``rules.PayerMix`` and ``rules.PayeeHistory``.
M_HALF, M_BASE = range(2)  # float parameters: half-life, ms, and 0.5 (see ``F_HALF``)


@njit(cache=True, nogil=True)
def mix_run(start, slots, ts, orders, new, cap,  # type: ignore[no-untyped-def]
            held_by, seq, paid, from_new, at, paid_at, new_at,
            flags, changed, counts, fparams, share_out):
    """``PayerMix.add`` for records ``start`` on (``orders``: each record's order).
    Returns ``(DONE, n)`` or ``(STOP_EVICT, record)``."""
    half = fparams[M_HALF]
    one_half = fparams[M_BASE]
    n = slots.shape[0]
    for i in range(start, n):
        s = slots[i]
        t = ts[i]
        order = orders[i]
        if not held_by[s]:
            if counts[1] >= cap:
                return STOP_EVICT, i
            _take(s, held_by, seq, counts)
            paid[s] = 0.0
            from_new[s] = 0.0
            at[s] = order
            paid_at[s] = 0.0
            new_at[s] = 0.0
        if order > at[s]:
            decay = one_half ** ((order - at[s]) / half)
            paid[s] = (paid[s] + paid_at[s]) * decay
            from_new[s] = (from_new[s] + new_at[s]) * decay
            at[s] = order
            paid_at[s] = 0.0
            new_at[s] = 0.0
        newest = at[s]
        weight = one_half ** ((newest - t) / half) if t < newest else 1.0
        fresh = 1.0 if new[i] else 0.0
        _mark(s, flags, changed, counts)
        if order < newest:  # behind the newest order (a partition back from idleness)
            paid[s] += weight
            from_new[s] += weight * fresh
            part = from_new[s] + new_at[s]
            whole = paid[s] + paid_at[s]
        else:
            part = from_new[s] + weight * fresh
            whole = paid[s] + weight
            paid_at[s] += weight
            new_at[s] += weight * fresh
        share_out[i] = part / whole if whole > 0.0 else fresh
    return DONE, n


@njit(cache=True, nogil=True)
def payee_run(start, slots, orders, cap,  # type: ignore[no-untyped-def]
              held_by, seq, before_at, at, at_count, flags, changed, counts, fparams,
              before_out):
    """``PayeeHistory.evaluate`` for records ``start`` on. Returns ``(DONE, n)`` or
    ``(STOP_EVICT, record)``."""
    half = fparams[M_HALF]
    one_half = fparams[M_BASE]
    n = slots.shape[0]
    for i in range(start, n):
        s = slots[i]
        order = orders[i]
        if not held_by[s]:
            if counts[1] >= cap:
                return STOP_EVICT, i
            _take(s, held_by, seq, counts)
            before_at[s] = 0.0
            at[s] = order
            at_count[s] = 0.0
        if order > at[s]:
            before_at[s] = (before_at[s] + at_count[s]) * one_half ** ((order - at[s]) / half)
            at[s] = order
            at_count[s] = 0.0
            before = before_at[s]
        elif order == at[s]:
            before = before_at[s]
        else:  # behind the newest order (a partition back from idleness)
            before = before_at[s] + at_count[s]
        at_count[s] += 1.0
        _mark(s, flags, changed, counts)
        before_out[i] = before
    return DONE, n


# Counterparty novelty (``rules.CounterpartyNovelty``), by source.
N_HALF, N_BASE = range(2)  # float parameters: half-life, ms, and 0.5 (see ``F_HALF``)


@njit(cache=True, nogil=True)
def round_run(values, scale, out, doubtful):  # type: ignore[no-untyped-def]
    """``rules.rounded_array``'s arithmetic, a value at a time, with no floating-point
    state to set around it: numpy's, in its ``errstate``, cost 7 µs a call (two fifths
    of the first stage's rules on a batch of ten). Returns how many are doubtful."""
    count = 0
    for i in range(values.shape[0]):
        scaled = values[i] * scale
        out[i] = np.rint(scaled) / scale
        doubtful[i] = abs(scaled - np.floor(scaled) - 0.5) < 1e-6 or abs(scaled) >= 2.0 ** 52
        count += doubtful[i]
    return count


def rounded_array(values: np.ndarray, digits: int) -> np.ndarray:
    """``rules.rounded_array`` (Python's ``round`` of each value, the same doubles to the
    bit), compiled: the few doubtful ones are Python's own, as there."""
    scale = 10.0 ** digits
    out = np.empty(len(values))
    doubtful = np.empty(len(values), np.bool_)
    if round_run(np.asarray(values, np.float64), scale, out, doubtful):
        for i in np.flatnonzero(doubtful).tolist():
            out[i] = round(float(values[i]), digits)
    return out


@njit(cache=True, nogil=True)
def novelty_run(start, slots, payees, ts, cap,  # type: ignore[no-untyped-def]
                held_by, seq, recent, length, new_rate, at, streak, refs,
                flags, changed, counts, fparams, dropped, novel_out, lately_out, streak_out):
    """``CounterpartyNovelty.judge`` for records ``start`` on: each source's recent
    payees, most recent last, a row of payee numbers (``recent``, ``length`` of them);
    ``refs``, how many rows hold each number. A number a row lets go of whose count
    falls to 0 goes in ``dropped`` (``counts[4]`` of them): Python frees those still
    unheld once the batch is done. Returns ``(DONE, n)`` or ``(STOP_EVICT, record)``."""
    half = fparams[N_HALF]
    one_half = fparams[N_BASE]
    memory = recent.shape[1]
    n = slots.shape[0]
    for i in range(start, n):
        s = slots[i]
        t = ts[i]
        p = payees[i]
        if not held_by[s]:
            if counts[1] >= cap:
                return STOP_EVICT, i
            _take(s, held_by, seq, counts)
            length[s] = 0  # (a row is emptied as its source is forgotten)
            new_rate[s] = 0.0
            at[s] = t
            streak[s] = 0
        size = length[s]
        found = -1
        for j in range(size):
            if recent[s, j] == p:
                found = j
                break
        if found >= 0:  # to the end
            for j in range(found, size - 1):
                recent[s, j] = recent[s, j + 1]
            recent[s, size - 1] = p
            novel = 0.0
        else:
            novel = 1.0
            if size >= memory:  # the oldest goes
                gone = recent[s, 0]
                refs[gone] -= 1
                if refs[gone] == 0:
                    dropped[counts[4]] = gone
                    counts[4] += 1
                for j in range(size - 1):
                    recent[s, j] = recent[s, j + 1]
                size -= 1
            recent[s, size] = p
            length[s] = size + 1
            refs[p] += 1
        if t > at[s]:  # a record out of order counts at the newest time seen
            new_rate[s] *= one_half ** ((t - at[s]) / half)
            at[s] = t
        new_rate[s] += novel
        streak[s] = streak[s] + 1 if novel else 0
        _mark(s, flags, changed, counts)
        novel_out[i] = novel
        lately_out[i] = new_rate[s]
        streak_out[i] = streak[s]
    return DONE, n


def warm() -> None:
    """Compile (or load from the cache) every kernel, so a detector's first batch does
    not pay for it. The arrays are of the columns' own types (``columns``): slots, pool
    nodes, insertion numbers and habits' counts of four bytes (``slot``), a novelty
    row's length of two. The changelog's kernels too (``msgpack_columns``), and the
    names' (``name_index``), the verdicts' (``verdict_bytes``), and card testing's
    (``card_columns``)."""
    from services.detector import (  # (``njit``)
        card_columns,
        msgpack_columns,
        name_index,
        verdict_bytes,
    )

    msgpack_columns.warm()
    name_index.warm()
    verdict_bytes.warm()
    card_columns.warm()
    one = np.zeros(1, np.int64)
    slot = np.zeros(1, np.int32)
    flag = np.zeros(1, np.uint8)
    real = np.zeros(1)
    seconds = np.zeros((4, 2), np.int64)
    ti, tf = np.zeros(7, np.int64), np.zeros(2)
    params = np.array([60_000, 0, 0, 3_600_000, 30_000, 10], np.int64)
    fparams = np.array([8.0, 4.0, 0.5, 0.01])
    boolean = np.zeros(1, np.bool_)
    pace_run(0, one, one, one - 1, flag.copy(), slot.copy(), one.copy(), one.copy(),
             one.copy(), real.copy(), real.copy(), real.copy(), flag.copy(), slot.copy(),
             np.zeros(4, np.int64), ti, tf, seconds, params, fparams, real.copy(),
             real.copy(), boolean.copy(), boolean.copy(), one.copy(), real.copy(),
             real.copy(), boolean.copy(), boolean.copy(), BETAINC)
    settle(0, 0, False, 0, one.copy(), real.copy(), real.copy())
    habit_run(0, one, real + 1.0, flag.copy(), slot.copy(), slot.copy(), real.copy(),
              real.copy(), real.copy(), real.copy(), flag.copy(), slot.copy(),
              np.zeros(4, np.int64), 10, 5, np.array([4.0, 5.0]), real.copy(), real.copy(),
              real.copy(), one.copy(), boolean.copy(), real.copy())
    gather_times(one - 1, slot.copy(), slot.copy(), one, slot.copy(), one.copy(), one.copy())
    mix_run(0, one, one, one, boolean.copy(), 10, flag.copy(), slot.copy(), real.copy(),
            real.copy(), one.copy(), real.copy(), real.copy(), flag.copy(), slot.copy(),
            np.zeros(4, np.int64), np.array([3_600_000.0, 0.5]), real.copy())
    payee_run(0, one, one, 10, flag.copy(), slot.copy(), real.copy(), one.copy(), real.copy(),
              flag.copy(), slot.copy(), np.zeros(4, np.int64), np.array([3_600_000.0, 0.5]),
              real.copy())
    novelty_run(0, one, one, one, 10, flag.copy(), slot.copy(), np.zeros((1, 2), np.int32),
                np.zeros(1, np.int16), real.copy(), one.copy(), slot.copy(), slot.copy(),
                flag.copy(), slot.copy(), np.zeros(5, np.int64), np.array([120_000.0, 0.5]),
                one.copy(), real.copy(), real.copy(), one.copy())
    round_run(real, 100.0, real.copy(), boolean.copy())
    window_run(0, one, one, 60_000, 0, slot.copy(), slot.copy(), slot.copy(), flag.copy(),
               np.zeros(4, np.int64), np.zeros(4, np.int32),
               np.array([NEVER, NEVER, 0, 0, -1], np.int64), flag.copy(), slot.copy(),
               np.zeros(4, np.int64), one.copy())
