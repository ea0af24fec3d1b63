"""Input bounds (docs/limits.md): what the int64 engine cannot hold exactly, or would take hours
or gigabytes for, is refused at load with the field named; numbers are ASCII decimals only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.model.errors import InputError
from core.model.limits import MAX_ACCOUNTS, MAX_DECIMALS
from core.scenario.parse import load_scenario, parse_command, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "assets" / "scenarios"
WRAPPED = str(10**19 - 2**64)  # "10" at 18 decimals, wrapped through int64


def two_traders() -> dict[str, Any]:
    return json.loads((SCENARIOS / "two-traders.json").read_text())


def refused(doc: dict[str, Any]) -> InputError:
    with pytest.raises(InputError) as caught:
        parse_scenario(doc)
    return caught.value


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("fund", "balance"), [("10", "0"), ("1", "0"), ("0", "10")])
def test_an_18_decimal_currency_is_refused_or_exact(fund: str, balance: str) -> None:
    doc = two_traders()
    doc["currencies"] = {"BTC": 18}
    doc["insurance_fund"] = {"BTC": fund}
    doc["accounts"][0]["balances"] = {"BTC": balance}
    error = refused(doc)
    assert error.field == "currencies.BTC"
    assert f"at most {MAX_DECIMALS} decimals" in error.message


def test_a_wrapped_int64_is_never_shown_as_input(tmp_path: Path) -> None:
    doc = two_traders()
    doc["currencies"] = {"BTC": MAX_DECIMALS}
    doc["insurance_fund"] = {"BTC": "10000000"}
    error = refused(doc)
    assert error.field == "insurance_fund.BTC"
    assert WRAPPED not in str(error) and "-" not in error.message
    doc["currencies"] = {"BTC": 18}
    path = write(tmp_path, json.dumps(doc))
    assert main(["run", str(path), "--out", str(tmp_path / "r.json"), "--quiet"]) == 2
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "text", ["１０", "1_000", " 7 ", "7 ", "+7", "1e400", "1e-999999999", "٣", "0x10", "1."]
)
def test_full_width_digits_are_not_numbers(text: str) -> None:
    doc = two_traders()
    doc["accounts"][0]["balances"]["BTC"] = text
    assert refused(doc).field == "accounts[0].balances.BTC"
    doc = two_traders()
    doc["accounts"][0]["positions"][0]["contracts"] = text
    assert refused(doc).field == "accounts[0].positions[0].contracts"


def test_full_width_digits_are_not_times_or_crowd_ids() -> None:
    doc = two_traders()
    doc["start"] = "２018-07-31T00:00:00Z"
    assert refused(doc).field == "start"
    doc = two_traders()
    doc["policy"]["settlement"]["time"] = "０8:00"
    assert refused(doc).field == "policy.settlement.time"


def test_a_10mb_id_is_truncated_in_the_error(tmp_path: Path) -> None:
    huge = "A" * 10_000_000
    for mutate in (
        lambda d: d["accounts"][0].__setitem__("id", huge),
        lambda d: d["accounts"][0]["positions"][0].__setitem__("symbol", huge),
        lambda d: d["accounts"][0].__setitem__(huge, 1),
        lambda d: d["currencies"].__setitem__(huge, 8),
        lambda d: d["accounts"][0]["balances"].__setitem__("BTC", "1" * 10_000_000),
    ):
        doc = two_traders()
        mutate(doc)
        error = refused(doc)
        assert len(str(error)) < 600, str(error)[:200]
    path = write(tmp_path, json.dumps(doc))
    assert main(["run", str(path), "--out", str(tmp_path / "r.json")]) == 2


@pytest.mark.parametrize("text", ["A\x00", "A\n", "\x07", "A\u200b", " A", "A "])
def test_nul_and_control_characters_are_refused_in_ids(text: str) -> None:
    doc = two_traders()
    doc["accounts"][0]["id"] = text
    assert refused(doc).field == "accounts[0].id"


def test_a_crowd_of_a_billion_is_refused() -> None:
    doc = two_traders()
    doc["crowd"] = {"accounts": 10**9, "seed": 1}
    error = refused(doc)
    assert error.field == "crowd.accounts"
    assert f"{MAX_ACCOUNTS - 2:,}" in error.message
    doc["crowd"] = {"accounts": 10**15}
    assert refused(doc).field == "crowd.accounts"
    doc["crowd"] = {"accounts": 1000, "x-positions-per-account": "1000000"}
    assert refused(doc).field == "crowd.x-positions-per-account"


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_time_in_year_9999_is_refused(moment: str) -> None:
    doc = two_traders()
    doc["market"]["indices"]["DEMO-USD"][-1][0] = moment
    assert refused(doc).field.startswith("market.indices.DEMO-USD[2][0]")
    doc = two_traders()
    doc["start"] = moment
    assert refused(doc).field == "start"


def test_a_run_of_more_than_the_maximum_ticks_is_refused() -> None:
    doc = two_traders()
    doc["market"]["indices"]["DEMO-USD"][-1][0] = "2099-01-01T00:00:00Z"
    assert refused(doc).field == "tick_seconds"


@pytest.mark.parametrize(
    "raw",
    ["1" + "0" * 5000, "1e400", "-1e400", "NaN", "Infinity", "[" * 100_000 + "]" * 100_000],
    ids=["5000 digits", "1e400", "-1e400", "NaN", "Infinity", "nested 100000 deep"],
)
def test_numbers_beyond_range_and_deep_nesting_are_input_errors(tmp_path: Path, raw: str) -> None:
    text = json.dumps(two_traders()).replace('"seed": 1', f'"seed": {raw}')
    with pytest.raises(InputError):
        load_scenario(write(tmp_path, text))


def test_a_10mb_decimal_is_refused_at_once() -> None:
    doc = two_traders()
    doc["accounts"][0]["balances"]["BTC"] = "1." + "0" * 10_000_000
    assert refused(doc).field == "accounts[0].balances.BTC"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("margin", "100000000000"),
        ("contracts", 2**41),
        ("entry_price", "100000000000000"),
        ("entry_price", "1.0000001"),
        ("leverage", "100000"),
    ],
)
def test_amounts_prices_and_sizes_beyond_int64_headroom_are_refused(path: str, value: Any) -> None:
    doc = two_traders()
    doc["accounts"][0]["positions"][0][path] = value
    error = refused(doc)
    assert error.field.startswith("accounts[0].positions[0]."), error


def test_money_adding_up_past_the_total_is_refused() -> None:
    doc = two_traders()
    account = doc["accounts"][0]
    doc["accounts"] = [
        {**copy.deepcopy(account), "id": f"A{i}", "balances": {"BTC": "90000000"}}
        for i in range(200)
    ]
    error = refused(doc)
    assert "2^60" in error.message and error.field.endswith(".balances.BTC")


def test_an_inject_of_a_hundred_billion_btc_is_refused_as_a_command() -> None:
    scenario = parse_scenario(two_traders())
    command = {
        "at": "2018-07-31T00:00:30Z",
        "operator": "alice",
        "action": "inject",
        "currency": "BTC",
        "amount": "100000000000",
        "reason": "test",
        "id": "inj-1",
    }
    with pytest.raises(InputError) as caught:
        parse_command(scenario, command, [])
    assert caught.value.field == "command.amount"
    assert parse_command(scenario, {**command, "amount": "1000"}, []).params["amount"]


def test_a_crowd_beyond_the_notional_bounds_is_refused_before_any_file(tmp_path: Path) -> None:
    doc = json.loads((SCENARIOS / "okx-2018-btc0928.json").read_text())
    doc["crowd"].update(
        {"accounts": 200, "x-size-median": "1000000000000000", "x-size-cap": "1" + "0" * 18}
    )
    path = write(tmp_path, json.dumps(doc))
    store, result = tmp_path / "s.sqlite", tmp_path / "r.json"
    assert main(["run", str(path), "--db", str(store), "--out", str(result), "--quiet"]) == 2
    assert not store.exists() and not result.exists()


def test_a_scenario_without_instruments_is_refused_at_load() -> None:
    doc = json.loads((SCENARIOS / "two-traders.json").read_text())
    doc["instruments"] = []
    assert refused(doc).field == "instruments"


def test_a_currency_with_an_enormous_number_of_decimals_is_one_clear_error() -> None:
    doc = json.loads((SCENARIOS / "two-traders.json").read_text())
    doc["currencies"] = {"BTC": 2**63}
    error = refused(doc)
    assert error.field == "currencies.BTC" and "at most 12 decimals" in error.message
