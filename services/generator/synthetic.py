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


def account(rng: random.Random) -> str:
    return "".join(rng.choices(ACCOUNT_ALPHABET, k=12))


class TutorialProfile:
    """Uniform traffic between a fixed population of accounts."""

    def __init__(self, seed: int | None = None, accounts: int = 10_000) -> None:
        self.rng = random.Random(seed)
        self.accounts = [account(self.rng) for _ in range(accounts)]
        self.run = uuid.uuid4().hex[:12]
        self.seq = 0

    def batch(self, count: int, ts_ms: int) -> list[tuple[bytes, bytes]]:
        """``count`` new transactions as ``(key, value)``, keyed by source account."""
        rng = self.rng
        sources = rng.choices(self.accounts, k=count)
        targets = rng.choices(self.accounts, k=count)
        currencies = rng.choices(CURRENCIES, k=count)
        randint = rng.randint
        dumps = orjson.dumps
        run, seq = self.run, self.seq
        out = []
        for i in range(count):
            source = sources[i]
            out.append((source.encode(), dumps({
                "id": f"{run}-{seq + i}",
                "ts": ts_ms,
                "source": source,
                "target": targets[i],
                "amount": randint(100, 100_000) / 100,
                "currency": currencies[i],
            })))
        self.seq = seq + count
        return out
