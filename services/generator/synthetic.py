"""Synthetic card transactions, the classic tutorial's profile. Pure.

Accounts are 12 letters and digits; amounts are uniform from 1.00 to 1,000.00 as
the tutorial intends (its docstring and its "about 10 % reach 900"), so that the
classic rule flags about one transaction in ten. Seeded, the content of a run is
reproducible; ids stay unique across runs, since a run id prefixes them.
"""

from __future__ import annotations

import random
import string
import uuid

import orjson

ACCOUNT_ALPHABET = string.ascii_uppercase + string.digits
CURRENCIES = ("EUR", "EUR", "EUR", "USD", "USD", "GBP")
# Draws are made this many transactions at a time, whatever a batch asks for: how a
# run is cut into batches depends on timing, and the seed must give the same stream.
BLOCK = 1024


def account(rng: random.Random) -> str:
    return "".join(rng.choices(ACCOUNT_ALPHABET, k=12))


class TutorialProfile:
    """Uniform traffic between a fixed population of accounts."""

    def __init__(self, seed: int | None = None, accounts: int = 10_000) -> None:
        self.rng = random.Random(seed)
        self.accounts = [account(self.rng) for _ in range(accounts)]
        self.run = uuid.uuid4().hex[:12]
        self.seq = 0
        self._drawn: list[tuple[str, str, str, float]] = []  # (source, target, currency, amount)
        self._next = 0  # the first of ``_drawn`` not handed out yet

    def _draw(self, count: int) -> list[tuple[str, str, str, float]]:
        """The next ``count`` draws of the seeded stream."""
        while len(self._drawn) - self._next < count:
            rng = self.rng
            randint = rng.randint
            del self._drawn[:self._next]
            self._next = 0
            self._drawn.extend(zip(rng.choices(self.accounts, k=BLOCK),
                                   rng.choices(self.accounts, k=BLOCK),
                                   rng.choices(CURRENCIES, k=BLOCK),
                                   [randint(100, 100_000) / 100 for _ in range(BLOCK)],
                                   strict=True))
        start = self._next
        self._next += count
        return self._drawn[start:self._next]

    def batch(self, count: int, ts_ms: int) -> list[tuple[bytes, bytes]]:
        """``count`` new transactions as ``(key, value)``, keyed by source account."""
        dumps = orjson.dumps
        run, seq = self.run, self.seq
        out = []
        for i, (source, target, currency, amount) in enumerate(self._draw(count), seq):
            out.append((source.encode(), dumps({
                "id": f"{run}-{i}",
                "ts": ts_ms,
                "source": source,
                "target": target,
                "amount": amount,
                "currency": currency,
            })))
        self.seq = seq + count
        return out
