"""A service's consume step: what is fetched comes at once, and only when nothing is
left does the service catch up on its own work (send what it produced) and wait."""

from __future__ import annotations

from services.kafka import consume_batch


class FetchedQueue:
    """What a consumer has fetched, in order; ``arriving`` comes during a wait."""

    def __init__(self, fetched: list[str], arriving: list[str]) -> None:
        self.fetched = fetched
        self.arriving = arriving
        self.waits: list[float] = []

    def consume(self, size: int, timeout: float) -> list[str]:
        taken, self.fetched = self.fetched[:size], self.fetched[size:]
        return taken

    def poll(self, timeout: float) -> str | None:
        self.waits.append(timeout)
        self.fetched += self.arriving
        self.arriving = []
        return self.consume(1, 0)[0] if self.fetched else None


def test_records_already_fetched_come_without_a_wait_and_without_catching_up() -> None:
    queue = FetchedQueue(["a", "b", "c"], arriving=["d"])
    caught_up: list[bool] = []
    assert consume_batch(queue, 2, 0.1, lambda: caught_up.append(True)) == ["a", "b"]
    assert consume_batch(queue, 2, 0.1, lambda: caught_up.append(True)) == ["c"]
    assert caught_up == [] and queue.waits == []


def test_with_nothing_fetched_the_service_catches_up_before_it_waits() -> None:
    queue = FetchedQueue([], arriving=["d", "e", "f"])
    order: list[str] = []
    queue_poll = queue.poll

    def poll(timeout: float) -> str | None:
        order.append("wait")
        return queue_poll(timeout)

    queue.poll = poll  # type: ignore[method-assign]
    batch = consume_batch(queue, 10, 0.1, lambda: order.append("caught up"))
    assert batch == ["d", "e", "f"]  # the first that arrived, and all fetched with it
    assert order == ["caught up", "wait"]


def test_a_quiet_wait_returns_nothing() -> None:
    queue = FetchedQueue([], arriving=[])
    assert consume_batch(queue, 10, 0.1) == []
    assert queue.waits == [0.1]
