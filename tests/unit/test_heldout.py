"""The held-out bench: its own families over a background that fools naive rules, run
through the detector's stages, reported per family for each delivery and detector."""

from collections import defaultdict

from bench.heldout import DELIVERIES, DETECTORS, bench, render
from bench.heldout_traffic import (
    ACCOUNT_TAKEOVER,
    CARD_TESTING,
    FAMILIES,
    MULE_FAN_IN,
    Scale,
    generate,
)

BACKGROUND = {"customer", "small_ticket", "quiet", "new_customer", "new_shop", "payroll",
              "busy"}


def test_the_quick_run_reports_every_family_for_both_deliveries_and_detectors() -> None:
    result = bench(seed=3, scale=Scale.quick())
    assert set(result["fraud_counted"]) == set(FAMILIES)
    assert set(result["legit_counted"]) == BACKGROUND
    assert result["counted"] == sum(result["fraud_counted"].values()) + sum(
        result["legit_counted"].values())
    assert set(result["runs"]) == set(DELIVERIES)
    for detectors in result["runs"].values():
        assert set(detectors) == set(DETECTORS)
        for report in detectors.values():
            assert 0.0 <= report["recall"] <= 1.0 and 0.0 <= report["precision"] <= 1.0
            assert report["tp"] + report["fn"] == sum(result["fraud_counted"].values())
            assert report["legit"] == sum(result["legit_counted"].values())
            assert report["fp"] == sum(report["false_alarms_by_kind"].values())
            for family, figures in report["families"].items():
                assert figures["transactions"] == result["fraud_counted"][family]
                assert 0 <= figures["caught"] <= figures["transactions"]
    # The goals are the rules alone's: the same verdicts at once as paced (event time
    # merged across partitions), then paced, overall and family by family.
    paced = result["runs"]["paced"]["rules"]
    assert [g["measured"] for g in result["goals"]] == [
        0, paced["recall"], paced["precision"],
        *(paced["families"][family]["recall"] for family in FAMILIES)]
    text = render(result)
    assert all(family in text for family in FAMILIES)
    assert text.count("goal: ") == len(result["goals"])


def test_the_families_keep_to_their_own_ranges_and_the_background_to_its_own() -> None:
    scale = Scale.quick()
    txs = generate(5, scale)
    assert txs == sorted(txs, key=lambda tx: (tx.ts, tx.source, tx.target))
    cases: dict[str, list] = defaultdict(list)
    for tx in txs:
        if tx.family is not None:
            cases[tx.case].append(tx)
        else:
            assert tx.amount < 900.0  # the threshold would only repeat itself
    for case, members in cases.items():
        family = members[0].family
        assert case.startswith(family)
        if family == MULE_FAN_IN:  # fresh payers, once each, just under the threshold
            assert len({tx.target for tx in members}) == 1
            assert 20 <= len({tx.source for tx in members}) == len(members) <= 200
            assert all(800.0 <= tx.amount < 900.0 for tx in members)
        elif family == CARD_TESTING:  # a few units each, to distinct payees
            assert 20 <= len({tx.target for tx in members}) == len(members) <= 200
            assert all(tx.amount < 5.0 for tx in members)
            assert members[-1].ts - members[0].ts <= 30 * 60_000
        elif family == ACCOUNT_TAKEOVER:
            assert 1 <= len(members) <= 5 and len({tx.source for tx in members}) == 1
    same_instant: dict[tuple[str, int], int] = defaultdict(int)
    for tx in txs:
        if tx.case == "payroll":
            same_instant[tx.source, tx.ts] += 1
    assert max(same_instant.values()) >= 60  # a bulk run books its staff at once
