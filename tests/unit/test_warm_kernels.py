"""A detector's warm-up compiles every kernel its stores call, so that no batch or
commit of a fresh install stops to compile one mid-transaction."""

from __future__ import annotations

import numba

from bench.state import changelogs, restore_here
from services.detector import card_columns, columns, distinct_columns, kernels, msgpack_columns

MODULES = (kernels, distinct_columns, columns, msgpack_columns, card_columns)


def compiled() -> dict[str, int]:
    """Each kernel's compiled signatures."""
    return {f"{module.__name__}.{name}": len(dispatcher.signatures)
            for module in MODULES for name, dispatcher in vars(module).items()
            if isinstance(dispatcher, numba.core.registry.CPUDispatcher)}


def test_after_the_warm_up_a_run_commit_and_restore_compile_nothing_new() -> None:
    kernels.warm()
    distinct_columns.warm()
    warmed = compiled()
    _, logs = changelogs(500, 1000, True, seed=5)  # batches and commits, compacted
    for stage, records in logs.items():
        restore_here(stage, records, 500, True)
    assert compiled() == warmed
