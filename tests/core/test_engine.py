"""The engine end to end on built-in and small hand-made scenarios."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.engine.facade import Engine
from core.engine.result import ResultCollector
from core.scenario.builtin import builtin_scenarios
from core.scenario.parse import load_scenario, parse_scenario


def run_doc(doc: dict[str, Any]) -> tuple[Engine, dict[str, Any]]:
    engine = Engine(parse_scenario(doc))
    collector = ResultCollector(engine)
    for events in engine.run():
        collector.feed(events)
        assert engine.ledger.posting_count >= 0
    return engine, collector.result()


def two_traders() -> dict[str, Any]:
    return json.loads(builtin_scenarios()["two-traders"].read_text())


def test_two_traders_gives_the_seed_answer() -> None:
    _, result = run_doc(two_traders())
    (clawback,) = result["clawbacks"]
    assert clawback["deficit"] == "8" and clawback["total_profit"] == "9"
    assert clawback["ratio"].startswith("0.88888888")
    assert clawback["allocations"] == [{"account": "B", "profit": "9", "amount": "8"}]
    assert result["final_equity"] == {"A": {"BTC": "0"}, "B": {"BTC": "2"}}
    assert result["ledger"]["balanced"] and result["ledger"]["clearing"] == {"BTC": "0"}
    (liquidation,) = result["liquidations"]
    assert liquidation["account"] == "A" and liquidation["deficit"] == "8"
    assert result["positions_at_start"][0]["bankruptcy_price"] == "0.9"


def test_same_scenario_same_state_hash() -> None:
    first = run_doc(two_traders())[1]["state_hash"]
    assert run_doc(two_traders())[1]["state_hash"] == first


def test_injection_needs_a_second_supervisor() -> None:
    doc = two_traders()
    doc["operators"] = [
        {"name": "alice", "role": "operator"},
        {"name": "carol", "role": "supervisor"},
    ]
    doc["actions"] = [
        {
            "at": "2018-07-31T00:00:00Z",
            "id": "inj",
            "operator": "alice",
            "action": "inject",
            "currency": "BTC",
            "amount": "5",
            "reason": "cover the gap",
        },
        {
            "at": "2018-07-31T00:00:00Z",
            "operator": "alice",
            "action": "approve",
            "request": "inj",
            "reason": "self",
        },
        {
            "at": "2018-07-31T00:00:00Z",
            "operator": "carol",
            "action": "approve",
            "request": "inj",
            "reason": "agreed",
        },
    ]
    _, result = run_doc(doc)
    assert [r["reason"] for r in result["refused"]] == [
        "self-approval: the approver must be a different person"
    ]
    assert result["insurance_fund"]["BTC"]["injections"] == "5"
    # The fund covers 5 of the 8; the clawback takes the other 3 from B.
    assert result["deficit"]["BTC"] == {"total": "8", "covered_by_fund": "5", "uncovered": "3"}
    assert result["clawbacks"][0]["allocations"][0]["amount"] == "3"


def test_adl_policy_leaves_no_uncovered_deficit() -> None:
    doc = two_traders()
    doc["policy"]["deficit"] = "adl"
    _, result = run_doc(doc)
    assert result["deficit"]["BTC"]["uncovered"] == "0"
    assert result["clawbacks"] == []
    (adl,) = result["adl"]
    assert adl["account"] == "B" and adl["contracts"] == 10 and adl["price"] == "0.9"
    assert result["final_equity"] == {"A": {"BTC": "0"}, "B": {"BTC": "2"}}


def test_run_command_writes_a_result(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["run", "two-traders", "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["format"] == "risk-result/1"


def test_run_command_rejects_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(two_traders())
    doc["accounts"][0]["positions"][0]["contracts"] = -3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "r.json"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "accounts[0].positions[0].contracts" in error and len(error.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_builtin_scenarios_load(name: str) -> None:
    assert load_scenario(builtin_scenarios()[name]).name == name
