"""Surveillance rules, each on a small book with its figures worked out by hand; thresholds and
their validation; raising once until cleared; the vectorized rules against a plain loop; and the
2018 demo, where accumulation and concentration fire for account 2051247 hours before its
liquidation."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from core.engine.facade import Engine
from core.engine.surveillance import AlertCleared, AlertRaised
from core.model.errors import InputError
from core.model.events import LiquidationStarted
from core.model.thresholds import Thresholds
from core.scenario.builtin import builtin_scenarios
from core.scenario.parse import load_scenario, parse_scenario
from tests.core.test_trading import at, doc, trade


def holder(
    name: str, side: str, contracts: int, *, margin: str | None = None, balance: str = "10000"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "symbol": "X",
        "side": side,
        "contracts": contracts,
        "entry_price": "100",
        "margin_mode": "isolated" if margin is not None else "cross",
        "leverage": "10",
    }
    if margin is not None:
        spec["margin"] = margin
    return {"id": name, "balances": {"USDT": balance}, "positions": [spec]}


def run(document: dict[str, Any], **thresholds: object) -> tuple[Engine, dict[int, list[Any]]]:
    """Run with the rules every second unless told otherwise; alerts by tick."""
    engine = Engine(parse_scenario(document))
    engine.surveillance.set_thresholds(**{"interval_seconds": 1, **thresholds})
    alerts: dict[int, list[Any]] = {}
    while not engine.finished:
        found = [e for e in engine.step() if isinstance(e, AlertRaised | AlertCleared)]
        if found:
            alerts[engine.tick] = found
    return engine, alerts


def summary(alerts: dict[int, list[Any]], rule: str) -> list[tuple[int, str, str | None]]:
    """(tick, raised/cleared, account or symbol) of one rule."""
    return [
        (tick, "raised" if isinstance(e, AlertRaised) else "cleared", e.account or e.symbol)
        for tick, events in alerts.items()
        for e in events
        if e.rule == rule
    ]


# ----- thresholds ------------------------------------------------------------------------------


def test_a_threshold_change_returns_before_and_after_and_is_used() -> None:
    engine = Engine(parse_scenario(doc([])))
    assert engine.surveillance.thresholds == Thresholds()
    before, after = engine.surveillance.set_thresholds(concentration="0.2", interval_seconds=30)
    assert before == Thresholds() and (after.concentration, after.interval_seconds) == (0.2, 30)
    assert engine.surveillance.thresholds is after
    assert isinstance(after.interval_seconds, int)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("colour", 1, "expected one of interval_seconds"),
        ("concentration", "1.5", "(0, 1]"),
        ("concentration", 0, "(0, 1]"),
        ("interval_seconds", "2.5", "whole number"),
        ("shock", "abc", "a number"),
        ("near_liquidation", "0.9", "(1, inf)"),
        ("critical_factor", True, "a number"),
        ("fund_coverage", "nan", "finite"),
    ],
)
def test_a_bad_threshold_is_named_and_changes_nothing(name: str, value: object, words: str) -> None:
    engine = Engine(parse_scenario(doc([])))
    with pytest.raises(InputError) as error:
        engine.surveillance.set_thresholds(material_share="0.01", **{name: value})
    assert error.value.field == f"thresholds.{name}" and words in error.value.message
    assert engine.surveillance.thresholds == Thresholds()


# ----- the rules -------------------------------------------------------------------------------


def test_concentration_is_raised_once_clears_and_is_raised_again() -> None:
    # Longs A 60 and B 40, short C 100: open interest 100. A holds 60%, C 100%, B 40%.
    # A sells 20 at t=3: A 40% (clears). A buys 30 at t=6: longs 110, A 70/110 = 64%.
    accounts = [holder("A", "long", 60), holder("B", "long", 40), holder("C", "short", 100)]
    trades = [trade(3, "A", "sell", 20, "100"), trade(6, "A", "buy", 30, "100")]
    _, alerts = run(doc(trades, accounts=accounts), concentration="0.5")
    assert summary(alerts, "concentration") == [
        (1, "raised", "A"),
        (1, "raised", "C"),
        (3, "cleared", "A"),
        (6, "raised", "A"),
    ]
    first = next(e for e in alerts[1] if e.rule == "concentration" and e.account == "A")
    assert (first.symbol, first.value, first.threshold) == ("X", pytest.approx(0.6), 0.5)
    assert first.severity == "warning" and "60.0% of the open interest of X" in first.message
    assert next(e for e in alerts[1] if e.account == "C").severity == "critical"  # 100% >= 2x


def test_fast_accumulation_counts_growth_in_the_window_not_churn() -> None:
    # OI 100. A buys 30 at t=2 (growth 30 of OI 130: 23%); B buys 30 and sells them again in the
    # same second (no growth). With the default 6 h window A's alert stands to the end; with a
    # window of 3 s the trade at t=2 is inside it up to t=5 and the alert clears at t=6.
    accounts = [holder("A", "long", 50), holder("B", "long", 50), holder("C", "short", 100)]
    trades = [
        trade(2, "A", "buy", 30, "100"),
        trade(2, "B", "buy", 30, "100"),
        trade(2, "B", "sell", 30, "100"),
    ]
    _, alerts = run(doc(trades, accounts=accounts), accumulation="0.2", concentration="1")
    assert summary(alerts, "accumulation") == [(2, "raised", "A")]
    raised = next(e for e in alerts[2] if e.rule == "accumulation")
    assert raised.value == pytest.approx(30 / 130) and raised.severity == "warning"
    assert "A added 30 X contracts within 6 h" in raised.message
    _, alerts = run(
        doc(trades, accounts=accounts),
        accumulation="0.2",
        concentration="1",
        accumulation_window_seconds=3,
    )
    assert summary(alerts, "accumulation") == [(2, "raised", "A"), (6, "cleared", "A")]


def test_near_liquidation_flags_material_positions_close_to_the_line() -> None:
    # Isolated longs of 100 at 100: maintenance 0.5% of 10,000 = 50. Margin 57.5 -> ratio 1.15
    # (warning), margin 52 -> 1.04 (critical: within half the 0.2 distance), margin 100 -> 2.
    # D's 1 contract at ratio 1.1 is below the material share (5% of OI).
    accounts = [
        holder("A", "long", 100, margin="57.5"),
        holder("B", "long", 100, margin="52"),
        holder("C", "long", 100, margin="100"),
        holder("D", "long", 1, margin="0.55"),
        holder("S", "short", 301),
    ]
    _, alerts = run(doc([], accounts=accounts), material_share="0.05", concentration="1")
    raised = [e for e in alerts[1] if e.rule == "near_liquidation"]
    assert [(e.account, e.severity) for e in raised] == [("A", "warning"), ("B", "critical")]
    assert raised[0].value == pytest.approx(1.15) and raised[0].threshold == 1.2
    assert all(e.rule != "near_liquidation" for tick in list(alerts)[1:] for e in alerts[tick])


def test_fund_coverage_compares_the_shocked_deficit_with_the_free_fund() -> None:
    # A: cross long 100 at 100 on 60 of cash. A 10% fall leaves 60 - 1,000 = -940. C's short is
    # isolated with 1,000: a 10% rise takes it to 0, no deficit. The worse side: 940.
    accounts = [holder("A", "long", 100, balance="60"), holder("C", "short", 100, margin="1000")]
    document = doc([], accounts=accounts)
    _, alerts = run(document, concentration="1")
    assert summary(alerts, "fund_coverage") == []  # the fund holds 1,000
    document["insurance_fund"] = {"USDT": "500"}
    _, alerts = run(document, concentration="1")
    (raised,) = [e for e in alerts[1] if e.rule == "fund_coverage"]
    assert (raised.symbol, raised.account, raised.severity) == ("USDT", None, "warning")
    assert (raised.value, raised.threshold) == (pytest.approx(940), 500)
    _, alerts = run(document, concentration="1", shock="0.2")  # 1,940 >= 2 x 500: critical
    assert next(e for e in alerts[1] if e.rule == "fund_coverage").severity == "critical"


def test_projected_clawback_ratio_after_an_uncovered_deficit() -> None:
    # The seed's two traders: A's liquidation leaves 8 uncovered with an empty fund; B's profit is
    # 9, so settlement would claw back 8/9 of it. Settlement (t=3601) applies it: the alert clears.
    document = json.loads(builtin_scenarios()["two-traders"].read_text())
    _, alerts = run(document, concentration="1")
    assert summary(alerts, "clawback_ratio") == [
        (1, "raised", "DEMO-USD/BTC"),
        (3601, "cleared", "DEMO-USD/BTC"),
    ]
    (raised,) = [e for e in alerts[1] if e.rule == "clawback_ratio"]
    assert raised.symbol == "DEMO-USD/BTC" and raised.value == pytest.approx(8 / 9)
    assert raised.severity == "critical"


def test_price_far_from_the_index_is_raised_and_cleared() -> None:
    document = doc([], accounts=[holder("A", "long", 1), holder("B", "short", 1)])
    path = [[at(0), "100"], [at(5), "106"], [at(8), "106"], [at(10), "100"], [at(20), "100"]]
    document["market"]["marks"]["X"] = path
    _, alerts = run(document, concentration="1")
    # The index stays at 100; the contract's own price rises 1.2 a second: 104.8 at t=4 (4.8%),
    # 106 at t=5 (6%, raised), falls 3 a second from t=8: 103 at t=9 (3%, cleared).
    assert summary(alerts, "price_vs_index") == [(5, "raised", "X"), (9, "cleared", "X")]


def test_rules_run_every_interval_of_simulated_time_not_every_tick() -> None:
    accounts = [holder("A", "long", 50), holder("B", "long", 50), holder("C", "short", 100)]
    # C holds 100% from the start. A buys 60 at t=3: A 110 of OI 160 (69%); the rules see it at
    # their next run, t=6.
    trades = [trade(3, "A", "buy", 60, "100")]
    _, alerts = run(doc(trades, accounts=accounts), concentration="0.6", interval_seconds=5)
    assert summary(alerts, "concentration") == [(1, "raised", "C"), (6, "raised", "A")]


# ----- vectorized against a plain loop ---------------------------------------------------------


def test_vectorized_rules_match_a_loop_over_a_crowd() -> None:
    document = doc([], accounts=[holder("A", "long", 5000, balance="100000")])
    document["crowd"] = {"accounts": 400, "seed": 5}
    engine = Engine(parse_scenario(document))
    engine.step()
    book, surveillance = engine.book, engine.surveillance
    inst = engine.instruments[0]
    # Deficits after a 10% fall, exactly per position and per cross account.
    price = Decimal(repr(float(engine.marks[0]))) * Decimal("0.9")
    cross: dict[int, Fraction] = {}
    isolated = Fraction(0)
    for row in range(len(book)):
        upnl = inst.upnl(
            int(book.side[row]),
            int(book.contracts[row]),
            Decimal(int(book.entry_units[row])) * inst.price_unit,
            price,
        )
        a = int(book.account[row])
        if book.isolated[row]:
            isolated += max(Fraction(0), -(Fraction(int(book.iso_margin[row]), 10**6) + upnl))
        else:
            cross[a] = cross.get(a, Fraction(int(book.balances[a, 0]), 10**6)) + upnl
    expected = isolated + sum(max(Fraction(0), -equity) for equity in cross.values())
    got = surveillance._deficit_after(engine.marks * 0.9)
    assert expected > 0 and float(got[0]) == pytest.approx(float(expected), rel=1e-9)
    # Concentration shares, by a loop over the accounts.
    longs = sum(int(c) for c, s in zip(book.contracts, book.side, strict=True) if s > 0)
    shorts = sum(int(c) for c, s in zip(book.contracts, book.side, strict=True) if s < 0)
    engine.surveillance.set_thresholds(concentration="0.01")
    engine.surveillance.evaluate()
    standing = {
        a for rule, a, _ in engine.surveillance.standing_alerts() if rule == "concentration"
    }
    net: dict[str, int] = {}
    for row in range(len(book)):
        name = book.account_ids[int(book.account[row])]
        net[name] = net.get(name, 0) + int(book.side[row]) * int(book.contracts[row])
    assert standing == {n for n, v in net.items() if abs(v) >= 0.01 * max(longs, shorts)}
    assert "A" in standing and len(standing) > 1


# ----- the 2018 demo ---------------------------------------------------------------------------


def test_the_2018_whale_is_flagged_for_accumulation_and_concentration_hours_before() -> None:
    engine = Engine(load_scenario(builtin_scenarios()["okx-2018-btc0928"]))
    raised: dict[str, AlertRaised] = {}
    liquidated = None
    while liquidated is None:
        for event in engine.step():
            if isinstance(event, AlertRaised) and event.account == "2051247":
                assert event.rule not in raised  # raised once while it stands
                raised[event.rule] = event
            if isinstance(event, LiquidationStarted) and event.account == "2051247":
                liquidated = event.time
    assert liquidated.strftime("%H:%M:%S") == "12:17:14"
    for rule in ("accumulation", "concentration"):
        assert raised[rule].symbol == "BTC-USD-180928"
        assert raised[rule].time <= liquidated - timedelta(hours=6)
    assert "2051247 added" in raised["accumulation"].message
    # The account kept buying after the warning and was frozen before the crash.
    assert engine.trading.traded("2051247", "BTC-USD-180928") == 4_168_515 - 168_515
    assert engine.controls.flag_names("2051247")[:2] == ("warned", "frozen")
    assert np.isfinite(raised["concentration"].value)
