"""core.scenario.parse: the spec example loads with the right values; malformed input names its field."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.model.errors import InputError
from core.model.scenario_values import Policy
from core.scenario.parse import load_scenario, parse_scenario

EXAMPLE = Path(__file__).parent / "data" / "scenario_spec_example.json"
Mutation = Callable[[dict[str, Any]], None]


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def _walk(doc: Any, path: str) -> tuple[Any, str | int]:
    """The container holding `path` ("accounts[0].positions[0].margin") and the last key."""
    keys: list[str | int] = [
        int(token[1:-1]) if token.startswith("[") else token
        for token in re.findall(r"\[\d+\]|[^.\[\]]+", path)
    ]
    for key in keys[:-1]:
        doc = doc[key]
    return doc, keys[-1]


def put(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        container, key = _walk(doc, path)
        container[key] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        container, key = _walk(doc, path)
        del container[key]

    return mutate


def append(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        container, key = _walk(doc, path)
        container[key].append(copy.deepcopy(value))

    return mutate


def parse_error(mutation: Mutation) -> InputError:
    doc = example()
    mutation(doc)
    with pytest.raises(InputError) as caught:
        parse_scenario(doc)
    return caught.value


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


POSITION = "accounts[0].positions[0]"
LEVEL = "instruments[0].tiers.levels"
INDEX = "market.indices.BTC-USD"


def test_spec_example_loads_with_its_values() -> None:
    scenario = load_scenario(EXAMPLE)

    assert (scenario.name, scenario.seed, scenario.tick_seconds) == ("two-traders", 1, 1)
    assert scenario.start == datetime(2018, 7, 31, tzinfo=UTC)
    assert scenario.start.utcoffset().total_seconds() == 0
    assert scenario.sources == ("where the figures come from",)
    assert {code: c.decimals for code, c in scenario.currencies.items()} == {"BTC": 8, "USDT": 6}
    (instrument,) = scenario.instruments.values()
    assert instrument.symbol == "BTC-USD-180928" and instrument.kind == "inverse"
    assert instrument.contract_value == Decimal("100") and instrument.tick_size == Decimal("0.01")
    assert instrument.expiry == utc("2018-09-28T08:00:00")
    assert (instrument.family, instrument.index, instrument.settle_currency) == (
        "BTC-USD",
        "BTC-USD",
        "BTC",
    )
    assert instrument.ema_seconds == 60 and instrument.liquidation_band == Decimal("0.01")
    assert instrument.tiers.basis == "contracts"
    assert [
        (lv.max, lv.mmr, lv.max_leverage, lv.maintenance_amount) for lv in instrument.tiers.levels
    ] == [
        (Decimal(100000), Decimal("0.005"), Decimal(20), Decimal(0)),
        (Decimal(200000), Decimal("0.01"), Decimal(10), Decimal(0)),
    ]
    assert scenario.insurance_fund == {"BTC": Decimal("10")}
    (account,) = scenario.accounts
    assert account.id == "A" and account.balances == {"BTC": Decimal("1")}
    (position,) = account.positions
    assert (position.side, position.contracts, position.margin_mode) == ("long", 10, "isolated")
    assert (position.entry_price, position.margin, position.leverage) == (
        Decimal("8100"),
        Decimal("0.1"),
        Decimal("10"),
    )
    assert scenario.crowd is not None
    assert (scenario.crowd.accounts, scenario.crowd.seed) == (100000, 7)
    assert set(scenario.crowd.parameters) == {"x-generator-parameters"}
    assert scenario.market.indices["BTC-USD"] == (
        (utc("2018-07-31T00:00:00"), Decimal("8100")),
        (utc("2018-07-31T12:00:00"), Decimal("7480")),
    )
    assert scenario.market.marks["BTC-USD-180928"] == ((utc("2018-07-31T00:00:00"), Decimal(8100)),)
    book = scenario.market.books["BTC-USD-180928"]
    assert (book.depth, book.depth_unit, book.refill_seconds) == (
        Decimal(50000),
        "contracts per 1% from mid",
        Decimal(60),
    )
    assert scenario.policy == Policy()
    assert [(o.name, o.role) for o in scenario.operators] == [
        ("alice", "operator"),
        ("carol", "supervisor"),
    ]
    assert [(a.action, a.id, a.operator) for a in scenario.actions] == [
        ("freeze", None, "alice"),
        ("force_reduce", "cut-1", "alice"),
        ("approve", None, "carol"),
        ("adjust_settlement_price", "adj-1", "alice"),
        ("approve", None, "carol"),
    ]
    assert scenario.actions[1].params == {
        "account": "A",
        "symbol": "BTC-USD-180928",
        "contracts": 5,
    }
    assert scenario.actions[2].params == {"request": "cut-1"}
    assert scenario.actions[3].params == {"family": "BTC-USD", "price": Decimal("7480")}
    assert scenario.actions[3].at == utc("2018-08-03T08:00:30")
    assert scenario.extras == {}


def test_defaults_are_filled() -> None:
    doc = example()
    for key in ("description", "sources", "seed", "tick_seconds", "crowd", "policy"):
        del doc[key]
    del doc["operators"], doc["actions"], doc["market"]["marks"], doc["market"]["books"]
    instrument = doc["instruments"][0]
    for key in ("expiry", "family", "mark", "liquidation_band"):
        del instrument[key]
    doc["x-exporter"] = {"version": 3}

    scenario = parse_scenario(doc)

    assert (scenario.description, scenario.sources, scenario.seed) == ("", (), 0)
    assert (scenario.tick_seconds, scenario.crowd, scenario.policy) == (1, None, Policy())
    assert (
        scenario.policy.settlement.weekday == "friday"
        and scenario.policy.settlement.time == "08:00"
    )
    assert (scenario.operators, scenario.actions) == ((), ())
    assert (scenario.market.marks, scenario.market.books) == ({}, {})
    parsed = scenario.instruments["BTC-USD-180928"]
    assert (parsed.expiry, parsed.family) == (None, "BTC-USD-180928")
    assert (parsed.ema_seconds, parsed.liquidation_band) == (Decimal(60), Decimal("0.01"))
    assert scenario.extras == {"x-exporter": {"version": 3}}


def test_partial_policy_and_book_take_defaults_for_the_rest() -> None:
    doc = example()
    doc["policy"] = {"deficit": "adl", "settlement": {"every": "day", "time": "16:00"}}
    doc["market"]["books"]["BTC-USD-180928"] = {"depth": "1000"}
    scenario = parse_scenario(doc)
    assert scenario.policy.deficit == "adl" and scenario.policy.clawback_approval == "auto"
    assert scenario.policy.settlement.every == "day"
    assert scenario.policy.settlement.weekday == "friday"
    assert scenario.policy.settlement.price == "index_mean_1h"
    book = scenario.market.books["BTC-USD-180928"]
    assert (book.depth_unit, book.refill_seconds) == ("contracts per 1% from mid", Decimal(60))


def test_missing_maintenance_amount_is_derived_continuous() -> None:
    doc = example()
    del doc["instruments"][0]["tiers"]["levels"][1]["maintenance_amount"]
    doc["instruments"][0]["tiers"]["levels"].append({"mmr": "0.02", "max_leverage": "5"})
    levels = parse_scenario(doc).instruments["BTC-USD-180928"].tiers.levels
    # amount_k = floor_k * (mmr_k - mmr_{k-1}) + amount_{k-1}
    assert [level.maintenance_amount for level in levels] == [
        Decimal(0),
        Decimal(500),
        Decimal(2500),
    ]
    assert levels[-1].max is None


def test_times_accept_z_and_zero_offset_and_come_out_utc() -> None:
    doc = example()
    doc["start"] = "2018-07-31T00:00:00+00:00"
    doc["market"]["indices"]["BTC-USD"][1][0] = "2018-07-31T12:00:00.5Z"
    scenario = parse_scenario(doc)
    assert scenario.start == utc("2018-07-31T00:00:00") and scenario.start.tzinfo is UTC
    assert scenario.market.indices["BTC-USD"][1][0] == utc("2018-07-31T12:00:00.500000")


def test_contracts_accept_integer_decimal_strings_and_crowd_accounts_are_referable() -> None:
    doc = example()
    doc["accounts"][0]["positions"][0]["contracts"] = "10"
    doc["actions"][0]["account"] = "crowd-99999"
    scenario = parse_scenario(doc)
    assert scenario.accounts[0].positions[0].contracts == 10
    assert scenario.actions[0].params == {"account": "crowd-99999"}


def test_cross_position_and_other_actions_parse() -> None:
    doc = example()
    doc["accounts"].append(
        {
            "id": "B",
            "balances": {"BTC": "2.5", "USDT": "100.123456"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "short",
                    "contracts": 3,
                    "entry_price": "8000.5",
                    "margin_mode": "cross",
                    "leverage": "5",
                }
            ],
        }
    )
    at = "2018-08-03T09:00:00Z"
    common = {"at": at, "operator": "carol", "reason": "desk decision"}
    doc["actions"] += [
        {**common, "action": "warn", "account": "B", "message": "reduce please"},
        {**common, "action": "inject", "id": "inj-1", "currency": "BTC", "amount": "2500"},
        {**common, "action": "approve_clawback", "family": "BTC-USD", "currency": "BTC"},
        {**common, "action": "reject", "request": "inj-1", "x-ticket": "RISK-12"},
    ]
    scenario = parse_scenario(doc)
    cross = scenario.accounts[1].positions[0]
    assert (cross.margin_mode, cross.margin, cross.side) == ("cross", None, "short")
    assert scenario.accounts[1].balances["USDT"] == Decimal("100.123456")
    assert [a.params for a in scenario.actions[-4:]] == [
        {"account": "B", "message": "reduce please"},
        {"currency": "BTC", "amount": Decimal(2500)},
        {"family": "BTC-USD", "currency": "BTC"},
        {"request": "inj-1"},
    ]


def test_parse_leaves_the_document_untouched() -> None:
    doc = example()
    before = copy.deepcopy(doc)
    parse_scenario(doc)
    assert doc == before


POSITIONS = "accounts[0].positions"
SECOND_ACCOUNT = {"id": "A", "balances": {"BTC": "1"}}
SAME_SYMBOL = {"symbol": "BTC-USD-180928", "side": "short", "contracts": 1, "entry_price": "1"}
SAME_SYMBOL |= {"margin_mode": "cross", "leverage": "1"}
CLAWBACK_IN_USDT = {"at": "2018-08-04T00:00:00Z", "operator": "carol", "reason": "settled"}
CLAWBACK_IN_USDT |= {"action": "approve_clawback", "family": "BTC-USD", "currency": "USDT"}

MALFORMED: list[tuple[str, Mutation, str]] = [
    # wrong type
    ("name not a string", put("name", 5), "name"),
    ("contracts not a number", put(f"{POSITION}.contracts", "ten"), f"{POSITION}.contracts"),
    ("tiers not an object", put("instruments[0].tiers", []), "instruments[0].tiers"),
    ("balances not an object", put("accounts[0].balances", ["BTC"]), "accounts[0].balances"),
    ("boolean for an integer", put("seed", True), "seed"),
    (
        "partial_liquidation not bool",
        put("policy.partial_liquidation", "yes"),
        "policy.partial_liquidation",
    ),
    ("document format", put("format", "risk-scenario/2"), "format"),
    ("required field missing", drop("name"), "name"),
    ("required instrument field", drop("instruments[0].tick_size"), "instruments[0].tick_size"),
    # contracts
    ("negative contracts", put(f"{POSITION}.contracts", -5), f"{POSITION}.contracts"),
    ("zero contracts", put(f"{POSITION}.contracts", 0), f"{POSITION}.contracts"),
    ("fractional contracts", put(f"{POSITION}.contracts", "10.5"), f"{POSITION}.contracts"),
    ("float contracts", put(f"{POSITION}.contracts", 10.0), f"{POSITION}.contracts"),
    ("negative force_reduce", put("actions[1].contracts", -1), "actions[1].contracts"),
    # unknown references
    ("unknown position symbol", put(f"{POSITION}.symbol", "ETH-USD-180928"), f"{POSITION}.symbol"),
    (
        "unknown marks symbol",
        put("market.marks.ETH-USD", [["2018-07-31T00:00:00Z", "1"]]),
        "market.marks.ETH-USD",
    ),
    ("unknown books symbol", put("market.books.ETH-USD", {"depth": "1"}), "market.books.ETH-USD"),
    ("unknown force_reduce symbol", put("actions[1].symbol", "XBT"), "actions[1].symbol"),
    ("unknown index", put("instruments[0].index", "ETH-USD"), "instruments[0].index"),
    ("unknown family", put("actions[3].family", "ETH-USD"), "actions[3].family"),
    ("unlisted operator", put("actions[0].operator", "mallory"), "actions[0].operator"),
    # unknown fields
    ("unknown position field", put(f"{POSITION}.colour", "red"), f"{POSITION}.colour"),
    ("unknown top-level field", put("extra", 1), "extra"),
    ("unknown tier field", put(f"{LEVEL}[1].floor", "0"), f"{LEVEL}[1].floor"),
    ("field of another action", put("actions[0].contracts", 5), "actions[0].contracts"),
    ("unknown action", put("actions[0].action", "liquidate"), "actions[0].action"),
    # dates
    ("bad month", put("start", "2018-13-01T00:00:00Z"), "start"),
    ("naive time", put("start", "2018-07-31T00:00:00"), "start"),
    ("non-UTC offset", put("start", "2018-07-31T00:00:00+02:00"), "start"),
    ("not a date", put("actions[0].at", "yesterday"), "actions[0].at"),
    ("bad expiry", put("instruments[0].expiry", 20180928), "instruments[0].expiry"),
    ("bad path time", put(f"{INDEX}[1][0]", "noon"), f"{INDEX}[1][0]"),
    # prices
    ("zero entry price", put(f"{POSITION}.entry_price", "0"), f"{POSITION}.entry_price"),
    ("zero index price", put(f"{INDEX}[1][1]", "0"), f"{INDEX}[1][1]"),
    ("negative adjusted price", put("actions[3].price", "-7480"), "actions[3].price"),
    ("NaN index price", put(f"{INDEX}[0][1]", "NaN"), f"{INDEX}[0][1]"),
    ("Infinity price", put(f"{POSITION}.entry_price", "Infinity"), f"{POSITION}.entry_price"),
    ("JSON NaN price", put(f"{INDEX}[0][1]", float("nan")), f"{INDEX}[0][1]"),
    ("not a decimal", put("instruments[0].tick_size", "0.0l"), "instruments[0].tick_size"),
    ("zero leverage", put(f"{POSITION}.leverage", "0"), f"{POSITION}.leverage"),
    # float JSON numbers for money
    ("float balance", put("accounts[0].balances.BTC", 1.5), "accounts[0].balances.BTC"),
    ("float fund", put("insurance_fund.BTC", 10.0), "insurance_fund.BTC"),
    ("float margin", put(f"{POSITION}.margin", 0.1), f"{POSITION}.margin"),
    # margin
    ("isolated without margin", drop(f"{POSITION}.margin"), f"{POSITION}.margin"),
    ("cross with margin", put(f"{POSITION}.margin_mode", "cross"), f"{POSITION}.margin"),
    ("negative margin", put(f"{POSITION}.margin", "-0.1"), f"{POSITION}.margin"),
    ("bad side", put(f"{POSITION}.side", "buy"), f"{POSITION}.side"),
    ("bad margin mode", put(f"{POSITION}.margin_mode", "portfolio"), f"{POSITION}.margin_mode"),
    # requests
    ("approve of unknown request", put("actions[2].request", "cut-9"), "actions[2].request"),
    ("approve of a later request", put("actions[2].request", "adj-1"), "actions[2].request"),
    ("duplicate action id", put("actions[3].id", "cut-1"), "actions[3].id"),
    ("actions out of order", put("actions[2].at", "2018-07-31T10:04:59Z"), "actions[2].at"),
    ("empty reason", put("actions[0].reason", " "), "actions[0].reason"),
    # currencies
    ("unknown balance currency", put("accounts[0].balances.ETH", "1"), "accounts[0].balances.ETH"),
    (
        "unknown settle currency",
        put("instruments[0].settle_currency", "USD"),
        "instruments[0].settle_currency",
    ),
    ("unknown fund currency", put("insurance_fund.ETH", "1"), "insurance_fund.ETH"),
    ("decimals out of range", put("currencies.BTC", 19), "currencies.BTC"),
    ("decimals not an int", put("currencies.USDT", "6"), "currencies.USDT"),
    ("clawback currency not of family", append("actions", CLAWBACK_IN_USDT), "actions[5].currency"),
    # too many decimals
    ("margin beyond satoshi", put(f"{POSITION}.margin", "0.123456789"), f"{POSITION}.margin"),
    ("fund beyond satoshi", put("insurance_fund.BTC", "10.000000001"), "insurance_fund.BTC"),
    (
        "balance beyond minor unit",
        put("accounts[0].balances.BTC", "1e-9"),
        "accounts[0].balances.BTC",
    ),
    # price paths
    ("repeated path time", put(f"{INDEX}[1][0]", "2018-07-31T00:00:00Z"), f"{INDEX}[1][0]"),
    ("backwards path time", put(f"{INDEX}[1][0]", "2018-07-30T00:00:00Z"), f"{INDEX}[1][0]"),
    ("empty path", put(INDEX, []), INDEX),
    ("point not a pair", put(f"{INDEX}[0]", ["2018-07-31T00:00:00Z"]), f"{INDEX}[0]"),
    # duplicates
    ("duplicate account id", append("accounts", SECOND_ACCOUNT), "accounts[1].id"),
    ("account id the crowd generates", put("accounts[0].id", "crowd-5"), "accounts[0].id"),
    ("duplicate position symbol", append(POSITIONS, SAME_SYMBOL), f"{POSITIONS}[1].symbol"),
    (
        "duplicate instrument",
        lambda d: d["instruments"].append(copy.deepcopy(d["instruments"][0])),
        "instruments[1].symbol",
    ),
    (
        "duplicate operator",
        append("operators", {"name": "alice", "role": "admin"}),
        "operators[2].name",
    ),
    # tiers and instrument ranges
    ("mmr of one", put(f"{LEVEL}[0].mmr", "1"), f"{LEVEL}[0].mmr"),
    ("negative mmr", put(f"{LEVEL}[0].mmr", "-0.01"), f"{LEVEL}[0].mmr"),
    ("non-increasing max", put(f"{LEVEL}[1].max", "100000"), f"{LEVEL}[1].max"),
    ("only last may omit max", drop(f"{LEVEL}[0].max"), f"{LEVEL}[0].max"),
    ("zero max leverage", put(f"{LEVEL}[0].max_leverage", "0"), f"{LEVEL}[0].max_leverage"),
    ("bad basis", put("instruments[0].tiers.basis", "value"), "instruments[0].tiers.basis"),
    ("no levels", put(f"{LEVEL}", []), LEVEL),
    (
        "band too wide",
        put("instruments[0].liquidation_band", "0.6"),
        "instruments[0].liquidation_band",
    ),
    ("zero ema", put("instruments[0].mark.ema_seconds", 0), "instruments[0].mark.ema_seconds"),
    ("bad type", put("instruments[0].type", "quanto"), "instruments[0].type"),
    (
        "zero contract value",
        put("instruments[0].contract_value", "0"),
        "instruments[0].contract_value",
    ),
    # market, crowd, policy, operators, scalars
    (
        "zero depth",
        put("market.books.BTC-USD-180928.depth", "0"),
        "market.books.BTC-USD-180928.depth",
    ),
    (
        "zero refill",
        put("market.books.BTC-USD-180928.refill_seconds", "0"),
        "market.books.BTC-USD-180928.refill_seconds",
    ),
    ("missing indices", drop("market.indices"), "market.indices"),
    ("negative crowd", put("crowd.accounts", -1), "crowd.accounts"),
    ("crowd seed float", put("crowd.seed", 7.0), "crowd.seed"),
    ("bad deficit policy", put("policy.deficit", "socialize"), "policy.deficit"),
    (
        "capitalised weekday",
        put("policy.settlement.weekday", "Friday"),
        "policy.settlement.weekday",
    ),
    ("bad settlement time", put("policy.settlement.time", "8:00"), "policy.settlement.time"),
    ("bad settlement every", put("policy.settlement.every", "month"), "policy.settlement.every"),
    ("bad role", put("operators[0].role", "boss"), "operators[0].role"),
    ("zero tick seconds", put("tick_seconds", 0), "tick_seconds"),
    ("sources not strings", put("sources", ["ok", 3]), "sources[1]"),
]


@pytest.mark.parametrize(
    ("mutation", "field"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_scenario_names_the_field(mutation: Mutation, field: str) -> None:
    error = parse_error(mutation)
    assert error.field == field, str(error)
    assert "\n" not in str(error) and error.message


def test_float_money_says_use_a_decimal_string() -> None:
    error = parse_error(put("accounts[0].balances.BTC", 1.5))
    assert "use a decimal string" in error.message and "1.5" in error.message


def test_messages_say_what_was_expected_and_found() -> None:
    error = parse_error(put(f"{POSITION}.side", "buy"))
    assert error.message == 'expected one of "long", "short", found the string "buy"'
    error = parse_error(put(f"{POSITION}.symbol", "ETH-USD-180928"))
    assert "BTC-USD-180928" in error.message and "ETH-USD-180928" in error.message


def test_x_fields_are_ignored_everywhere() -> None:
    doc = example()
    doc["instruments"][0]["x-venue"] = "okex"
    doc["accounts"][0]["positions"][0]["x-note"] = 1
    doc["accounts"][0]["balances"]["x-source"] = "export"
    doc["market"]["indices"]["x-comment"] = "not an index"
    doc["policy"]["x-owner"] = "risk"
    scenario = parse_scenario(doc)
    assert set(scenario.accounts[0].balances) == {"BTC"}
    assert set(scenario.market.indices) == {"BTC-USD"}
    assert scenario.extras == {}


def test_operator_is_free_text_when_no_operators_are_listed() -> None:
    doc = example()
    del doc["operators"]
    assert parse_scenario(doc).actions[0].operator == "alice"


def test_not_an_object() -> None:
    with pytest.raises(InputError) as caught:
        parse_scenario([])  # type: ignore[arg-type]
    assert caught.value.field == ""


def test_json_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "format": "risk-scenario/1",\n  "name": "x"\n  "start": 1\n}\n')
    with pytest.raises(InputError) as caught:
        load_scenario(broken)
    assert "broken.json" in str(caught.value) and "line 4" in str(caught.value)


def test_duplicate_json_key_is_an_error(tmp_path: Path) -> None:
    doubled = tmp_path / "doubled.json"
    doubled.write_text('{"name": "a", "name": "b"}')
    with pytest.raises(InputError, match="'name' twice"):
        load_scenario(doubled)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_scenario(tmp_path / "absent.json")
