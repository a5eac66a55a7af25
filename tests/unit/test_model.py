"""The online model: no score before it has learnt, fraud scored above everyday traffic
once it has, retrains that swap in without stopping the scoring, and a Router that puts
the score in every verdict."""


def test_counterparty_novelty_tells_a_new_payee_from_a_usual_one_in_bounded_memory() -> None:
    from services.detector.rules import CounterpartyNovelty

    novelty = CounterpartyNovelty(memory=2, max_accounts=2)
    assert [novelty.evaluate("A", t) for t in ("shop", "shop", "rent", "shop")] == [1, 0, 1, 0]
    assert novelty.evaluate("A", "gym") == 1.0  # "rent" is now the oldest of two: forgotten
    assert novelty.evaluate("A", "rent") == 1.0
    novelty.evaluate("B", "shop")
    novelty.evaluate("C", "shop")  # a third source: the oldest, A, is forgotten
    assert len(novelty) == 2
    assert novelty.evaluate("A", "gym") == 1.0
