"""Pacing runs on a schedule, so the achieved rate holds at any target."""

import pytest

from services.generator.pacing import Pacer, RateMeter, turn_length


def simulate(rate: float, seconds: float, step: float, cost_per_message: float = 0.0) -> int:
    """Drive a pacer with a fake clock; each send costs ``cost_per_message`` seconds."""
    now = 0.0
    pacer = Pacer(rate=rate, now=now)
    sent = 0
    while now < seconds:
        n = pacer.due(now)
        pacer.sent(n)
        sent += n
        now += max(step, pacer.wait(now)) + n * cost_per_message
    return sent


@pytest.mark.parametrize("rate", [1, 10, 1_000, 10_000, 100_000])
def test_achieved_rate_is_within_one_percent(rate: float) -> None:
    sent = simulate(rate, seconds=10, step=0.003)
    assert abs(sent - rate * 10) <= rate * 10 * 0.01 + 1


def test_a_slow_turn_is_caught_up_in_one_batch() -> None:
    pacer = Pacer(rate=1000, now=0.0)
    assert pacer.due(0.5) == 500
    pacer.sent(500)
    assert pacer.due(0.7) == 200  # the schedule, not the sleep, decides


def test_a_shortest_wait_sends_in_batches_at_high_rates_only() -> None:
    fast = Pacer(rate=10_000, now=0.0)
    assert fast.wait(0.0) == pytest.approx(0.0001)
    assert fast.wait(0.0, shortest=0.005) == 0.005
    assert fast.due(0.005) == 50  # what the turn makes and sends
    slow = Pacer(rate=100, now=0.0)
    slow.sent(slow.due(0.0))
    assert slow.wait(0.0, shortest=0.005) == pytest.approx(0.01)  # the next one is due then
    assert Pacer(rate=1, now=0.0).wait(0.0, shortest=0.005) == 0.05  # never beyond longest
    fast.pause(True, now=0.005)
    assert fast.wait(0.005, shortest=0.005) == 0.05


def test_a_turn_sends_a_few_hundred_records_within_five_to_fifty_ms() -> None:
    def turn(rate: float) -> float:
        return turn_length(rate, records=200, shortest=0.005, longest=0.05)

    assert turn(10_000) == pytest.approx(0.02)  # fifty records a partition of four
    assert turn(100_000) == 0.005  # no more than 200 turns a second...
    assert turn(1_000) == 0.05  # ...and no more than 50 ms between them
    assert turn(0) == 0.05  # stopped: only the control topic and heartbeats to serve


@pytest.mark.parametrize("rate", [1, 100, 1_000, 10_000, 100_000])
def test_longer_turns_keep_the_rate_and_send_fuller_batches(rate: float) -> None:
    now, sent, turns = 0.0, 0, []
    pacer = Pacer(rate=rate, now=now)
    while now < 10:
        n = pacer.due(now)
        pacer.sent(n)
        sent += n
        turns.append(n)
        length = turn_length(rate, 200, 0.005, 0.05)
        now += pacer.wait(now, shortest=length, longest=0.05)
    assert abs(sent - rate * 10) <= rate * 10 * 0.01 + 1
    per_turn = rate * turn_length(rate, 200, 0.005, 0.05)  # 0.05, 5, 50, 200, 500
    busy = [n for n in turns if n]
    assert max(busy) <= per_turn + 1  # a turn's worth each time, never a backlog
    if rate >= 1_000:
        assert min(busy[1:]) >= per_turn - 1  # whole batches, not a record or two each


def test_falling_behind_drops_the_debt_and_counts_it() -> None:
    pacer = Pacer(rate=1000, now=0.0, max_lag=1.0, max_batch=10**9)
    assert pacer.due(5.0) == 1000
    assert pacer.dropped == 4000


def test_retarget_and_pause() -> None:
    pacer = Pacer(rate=100, now=0.0)
    pacer.sent(pacer.due(1.0))
    pacer.retarget(1000, now=1.0)
    assert pacer.due(1.1) == 100
    pacer.pause(True, now=1.1)
    assert pacer.due(5.0) == 0
    pacer.pause(False, now=5.0)
    assert pacer.due(5.01) == 10


def test_wait_is_bounded_so_control_commands_are_seen_quickly() -> None:
    pacer = Pacer(rate=0.1, now=0.0)
    assert pacer.wait(0.0) == 0.05


def test_rate_meter() -> None:
    meter = RateMeter(span=5)
    for i in range(11):
        meter.add(i * 0.5, 50)
    assert meter.rate() == pytest.approx(100)
