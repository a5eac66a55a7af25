"""What a new account's name costs the tables the rules share: µs a new name, and the
stall of a payee table making its pool of names anew.

Each call brings ``--batch`` names, ``--new`` of them never seen (as a batch of a
partition does where accounts are many), the rest known; names leave once more than
``--held`` are held, as rows let them go. Timed: the payee table's ``numbers`` (with
each name's bytes for the changelog, ``name_index.NameIndex``), its ``release``, and the
slots' ``of_names``, each per new name. Then, with ``--pool`` names held and half of
them let go, the one call whose new names find the pool full.

    python -m bench.names [--batch 250] [--new 145] [--held 20000] [--calls 2000]
                          [--pool 1000000]
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from services.detector import kernels
from services.detector.columns import PayeeTable, Slots


def per_new_name(batch: int, new: int, held: int, calls: int) -> dict[str, float]:
    """µs a new name in each table's calls."""
    table, slots = PayeeTable(), Slots()
    rng = random.Random(1)
    known: list[str] = []
    spent = {"numbers": 0.0, "release": 0.0, "slots": 0.0}
    serial = 0
    for _ in range(calls):
        fresh = [f"N{serial + i:013d}" for i in range(new)]
        serial += new
        names = fresh + (rng.sample(known, batch - new) if len(known) > batch else
                         fresh[:batch - new])
        began = time.perf_counter()
        numbers = table.numbers(names)
        middle = time.perf_counter()
        slots.of_names(names)
        spent["numbers"] += middle - began
        spent["slots"] += time.perf_counter() - middle
        table.refs[numbers[:new]] += 1
        known += fresh
        if len(known) > held:
            gone, known = known[:new], known[new:]
            numbers = table.numbers(gone)
            table.refs[numbers] -= 1
            began = time.perf_counter()
            table.release(numbers.tolist())
            spent["release"] += time.perf_counter() - began
    return {name: round(seconds / (calls * new) * 1e6, 3) for name, seconds in spent.items()}


def pool_made_anew(held: int) -> float:
    """ms of the call that finds the pool full, ``held`` names held, half let go."""
    table = PayeeTable()
    numbers = table.numbers([f"A{i:013d}" for i in range(held)])
    table.refs[numbers] = 1
    gone = numbers[::2]
    table.refs[gone] = 0
    table.release(gone.tolist())
    serial = 0
    while True:
        names = [f"N{serial + i:013d}" for i in range(1000)]
        serial += 1000
        full = table.index.used + 15 * len(names) > len(table.index.pool)
        began = time.perf_counter()
        numbers = table.numbers(names)
        spent = time.perf_counter() - began
        table.refs[numbers] = 1
        if full:
            return round(spent * 1e3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--new", type=int, default=145)
    parser.add_argument("--held", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=1_000_000)
    args = parser.parse_args()
    if not 0 < args.new <= args.batch:
        parser.error("--new must be 1..--batch")
    kernels.warm()  # as a detector starts: no compiling inside a timed call
    gc.freeze()
    figures = per_new_name(args.batch, args.new, args.held, args.calls)
    print(f"µs a new name: payee table {figures['numbers']}, its release "
          f"{figures['release']}, slots {figures['slots']}")
    print(f"the pool made anew with {args.pool:,} names held: "
          f"{pool_made_anew(args.pool)} ms")


if __name__ == "__main__":
    main()
