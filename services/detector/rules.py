"""Detection rules. Pure.

A rule looks at one decoded transaction and says why it is suspicious, or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AmountThreshold:
    """The classic rule: an amount at or above the threshold is fraud."""

    threshold: float = 900.0
    name: str = "amount_threshold"

    @property
    def reason(self) -> str:
        return f"amount >= {self.threshold:g}"

    def fires(self, tx: dict[str, Any]) -> bool:
        return tx["amount"] >= self.threshold
