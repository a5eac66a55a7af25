"""A name index answers as a dict of names to numbers would, through every lookup, add
and removal, whatever the names' bytes and however full the table gets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.columns import PayeeTable, Slots
from services.detector.name_index import NameIndex

# Few distinct names, so that batches repeat them and removals hit names in use; some
# not ASCII (a lone surrogate too, as a JSON escape can bring one), one empty.
NAMES = st.sampled_from(["", "A", "B", "AB", "BA", "é", "ACC-0001", "\ud800", "żółw",
                         "x" * 40] + [f"N{i:04d}" for i in range(60)])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("batch"), st.lists(NAMES, max_size=30)),
    st.tuples(st.just("remove"), st.integers(0, 40))), max_size=60)


@settings(max_examples=150, deadline=None)
@given(STEPS, st.integers(1, 64))
def test_an_index_answers_as_a_dict_would(steps: list[tuple[str, object]],
                                          capacity: int) -> None:
    index, model = NameIndex(capacity), {}
    free: list[int] = []
    given = 0  # numbers given out so far
    for kind, arg in steps:
        if kind == "batch":
            names = arg
            assert isinstance(names, list)
            found, lacking = index.lookup(names)
            expected = [model.get(name, -1) for name in names]
            assert found.tolist() == expected
            assert lacking == (-1 in expected)
            new = list(dict.fromkeys(name for name in names if name not in model))
            numbers = []
            for _ in new:
                if not free:
                    free.append(given)
                    given += 1
                numbers.append(free.pop())
            index.add(new, numbers)
            model.update(zip(new, numbers, strict=True))
        else:
            assert isinstance(arg, int)
            gone = sorted(model)[:arg:3]
            index.remove(model[name] for name in gone)
            free += [model.pop(name) for name in gone]
        assert len(index) == len(model)
        assert dict(index.items()) == model
    for name, number in model.items():
        assert index.get(name) == number and name in index


def test_names_are_found_after_growth_and_removals() -> None:
    """The table doubles as names come and packs its bytes anew as they go: every name
    still held is found under its number, and none of those removed."""
    names = [f"ACC{i:09d}" for i in range(200_000)]
    index = NameIndex()
    for start in range(0, len(names), 50_000):
        index.add(names[start:start + 50_000], range(start, start + 50_000))
    index.remove(range(0, len(names), 2))
    index.add([f"NEW{i:09d}" for i in range(100_000)], range(0, 200_000, 2))
    found, lacking = index.lookup(names)
    assert lacking  # the even ones were removed
    assert found[1::2].tolist() == list(range(1, 200_000, 2))
    assert (found[0::2] == -1).all()
    assert index.lookup([f"NEW{i:09d}" for i in (0, 99_999)])[0].tolist() == [0, 199_998]


def test_slots_and_payee_numbers_are_given_as_one_by_one() -> None:
    """New names of a batch take freed slots first, the last freed first, then new
    ones in order, a name repeated in the batch keeping its first slot."""
    slots = Slots(capacity=2)
    assert slots.of(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]
    assert slots.capacity == 4
    slots.release([0, 2])
    slots.settle()
    assert slots.of(["d", "b", "e", "f", "d"]).tolist() == [2, 1, 0, 3, 2]
    assert slots.known(["a", "c", "d"]).tolist() == [-1, -1, 2]
    table = PayeeTable()
    assert table.numbers(["p", "q", "p"]).tolist() == [0, 1, 0]
    table.release([0])
    assert table.numbers(["r", "q"], shared=True).tolist() == [0, 1]
    assert len(table) == 2 and table.index.get("p") == -1
    assert isinstance(table.numbers([]), np.ndarray)
