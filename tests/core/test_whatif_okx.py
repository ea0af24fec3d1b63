"""What-if on the 2018 BTC0928 demo (slow tier): the whale frozen at its first accumulation alert,
and ADL instead of the clawback, both run to the end and compared with the original."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.whatif import runs
from tests.core.test_whatif import _digest, assert_covered, minor

pytestmark = pytest.mark.slow
WHALE = "2051247"


@pytest.fixture(scope="session")
def okx_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The demo's store, made once a test session (about a minute), and its result."""
    folder = tmp_path_factory.mktemp("okx")
    store, result = folder / "S.db", folder / "R.json"
    code = main(["run", "okx-2018-btc0928", "--out", str(result), "--db", str(store), "--quiet"])
    assert code == 0
    return store, json.loads(result.read_text())


@pytest.fixture(scope="session")
def okx_compared(okx_store: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    store, result = okx_store
    before = _digest(store)
    alert = next(
        a for a in result["alerts"] if a["rule"] == "accumulation" and a["account"] == WHALE
    )
    freeze = {
        "operator": "alice",
        "action": "freeze",
        "account": WHALE,
        "reason": "what-if: frozen at the first accumulation alert",
    }
    runs.branch(store, alert["time"], [freeze], {}, name="freeze", top=0)
    doc = runs.branch(
        store, alert["time"], [], {"deficit": "adl"}, name="adl", with_names=("freeze",), top=0
    )
    assert _digest(store) == before, "the original store was written"
    return doc


def _btc(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["name"]: run["currencies"]["BTC"] for run in doc["runs"]}


def test_whatif_okx_every_run_balances_and_its_deficit_is_covered_exactly(
    okx_compared: dict[str, Any],
) -> None:
    assert [run["name"] for run in okx_compared["runs"]] == ["original", "adl", "freeze"]
    assert_covered(okx_compared)


def test_whatif_okx_shows_clawback_ratio_and_fund_use(
    okx_compared: dict[str, Any], okx_store: tuple[Path, dict[str, Any]]
) -> None:
    btc = _btc(okx_compared)
    _, result = okx_store
    (clawback,) = result["clawbacks"]
    assert btc["original"]["clawbacks"] == [
        {"time": clawback["time"], "ratio": clawback["ratio"], "status": "pending"}
    ]
    original = btc["original"]["deficit"]
    assert original["clawback"] == clawback["deficit"]
    assert original["total"] == result["deficit"]["BTC"]["total"]
    fund = result["insurance_fund"]["BTC"]
    assert minor(original["fund"]) + minor(original["injection"]) == minor(fund["deficit_out"])
    assert original["injection"] == "2500"
    # ADL instead of the clawback: the fund cannot reserve for the whale's takeover, so it is
    # closed at once against the ranked shorts at its bankruptcy price; nothing is shared.
    adl = btc["adl"]["deficit"]
    assert btc["adl"]["clawbacks"] == [] and adl["clawback"] == "0"
    assert btc["adl"]["adl_contracts"] > 0 and minor(adl["adl"]) >= 0
    assert minor(adl["total"]) < minor(original["total"])
    # The whale frozen early never builds its position: far less to cover.
    assert minor(btc["freeze"]["deficit"]["total"]) < minor(original["total"]) // 10
    for c in btc.values():
        assert c["fund"]["path"] and c["fund"]["end"] == c["fund"]["path"][-1][1]


def test_whatif_okx_per_account_payments_add_up(okx_compared: dict[str, Any]) -> None:
    btc = _btc(okx_compared)
    paid: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in okx_compared["accounts"]:
        for name, values in row["runs"].items():
            paid[name]["clawback"] += minor(values["clawback"])
            paid[name]["adl"] += minor(values["adl"])
            assert minor(values["paid"]) == minor(values["clawback"]) + minor(values["adl"])
    for name, c in btc.items():
        assert paid[name]["clawback"] == minor(c["deficit"]["clawback"]), name
        assert paid[name]["adl"] == minor(c["deficit"]["adl"]), name
    # Largest differences from the original first.
    scores = [
        max(abs(minor(v["difference"])) for v in row["runs"].values() if v["difference"])
        if any(v["difference"] for v in row["runs"].values())
        else 0
        for row in okx_compared["accounts"]
    ]
    assert scores == sorted(scores, reverse=True)
