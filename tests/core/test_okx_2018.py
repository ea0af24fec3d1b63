"""The built-in 2018 BTC0928 scenario lands within the published figures (seed 003)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from core.engine.facade import Engine
from core.engine.result import ResultCollector
from core.scenario.builtin import builtin_scenarios
from core.scenario.parse import load_scenario
from tests.core.test_state_hashes import RECORDED


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    engine = Engine(load_scenario(builtin_scenarios()["okx-2018-btc0928"]))
    collector = ResultCollector(engine)
    for events in engine.run():
        collector.feed(events)
    return collector.result()


def test_whale_is_liquidated_at_the_published_moment(result: dict[str, Any]) -> None:
    (whale,) = [row for row in result["liquidations"] if row["account"] == "2051247"]
    assert whale["time"] == "2018-07-31T12:17:14Z"  # 20:17:14 HKT
    assert whale["contracts"] == 4_168_515 and not whale["partial"]
    assert Decimal(whale["deficit"]) > Decimal(3000)


def test_injection_and_clawback_within_published_ranges(result: dict[str, Any]) -> None:
    assert result["insurance_fund"]["BTC"]["start"] == "10"
    assert result["insurance_fund"]["BTC"]["injections"] == "2500"
    (clawback,) = result["clawbacks"]
    assert clawback["status"] == "pending"  # the demo waits for a supervisor
    assert Decimal(1100) <= Decimal(clawback["deficit"]) <= Decimal(1300)
    assert Decimal("0.17") <= Decimal(clawback["ratio"]) <= Decimal("0.18")
    parts = sum(Decimal(a["amount"]) for a in clawback["allocations"])
    assert parts == Decimal(clawback["deficit"])
    assert all(Decimal(a["amount"]) <= Decimal(a["profit"]) for a in clawback["allocations"])


def test_timeline_tells_the_story_in_order(result: dict[str, Any]) -> None:
    lines = [entry["event"] for entry in result["timeline"]]
    assert any("warn" in line for line in lines)
    assert any("freeze" in line for line in lines)
    assert any("2051247 long 4168515" in line for line in lines)
    assert any("injected 2500 BTC" in line for line in lines)
    assert any(line.startswith("clawback pending") for line in lines)
    assert result["ledger"]["balanced"]


def test_the_run_reaches_its_recorded_state_hash(result: dict[str, Any]) -> None:
    assert result["state_hash"] == RECORDED["okx-2018-btc0928"]
