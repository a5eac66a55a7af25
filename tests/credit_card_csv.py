"""A small CSV in the public credit-card fraud dataset's layout, written by tests."""

from __future__ import annotations

import random
from pathlib import Path

from services.generator.replay import COLUMNS, FEATURES


def fraud_csv(path: Path, rows: int, seed: int = 1, fraud_every: int = 10,
              extra: list[str] | None = None) -> list[dict[str, float]]:
    """``rows`` random rows laid out as the public dataset is (quoted header and
    classes; one row in ``fraud_every`` is fraud), then the raw lines ``extra`` (bad
    rows, say); returns what each of the random rows holds."""
    rng = random.Random(seed)
    written = []
    lines = [",".join(f'"{name}"' for name in COLUMNS)]
    for i in range(rows):
        row = {"Time": float(i), **{v: round(rng.gauss(0, 1.5), 6) for v in FEATURES},
               "Amount": round(rng.uniform(0, 500), 2), "Class": int(i % fraud_every == 3)}
        written.append(row)
        lines.append(",".join([*(repr(row[c]) for c in COLUMNS[:-1]), f'"{row["Class"]}"']))
    path.write_text("\n".join([*lines, *(extra or [])]) + "\n")
    return written
