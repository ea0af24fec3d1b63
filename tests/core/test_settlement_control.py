"""Settlement under human control (issue 7): manipulation checks over the window, the 10-minute
delay, adjusted prices approved by a second person, and clawback requests applied exactly as
previewed.

The hand-built market: one linear contract X (1 unit, USDT, tick 0.01) expiring at 08:00 (T),
10 s ticks from 06:00, marks pinned to the index unless a test moves them. At 06:10 the price gaps
from 100 to 80: A (long 10 at 100 on a margin of 10) is closed at 80, a deficit of 190. At the
settlement at 80, B (short 10 at 100) has a profit of 200 and C (short 5 at 100) 100; D (long 5 at
90) lost 50. With an empty fund the clawback is 190 over 300: B pays 126.666667, C 63.333333.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from core.engine.facade import Engine
from core.engine.ledger import trader
from core.engine.manipulation import assess
from core.engine.result import ResultCollector
from core.engine.settlement import SettlementDelayed
from core.model.errors import InputError
from core.model.events import ActionRefused, Event, SettlementDone
from core.model.operations import Refusal
from core.model.scenario_values import ActionSpec
from core.model.settlement import SettlementChecks
from core.risk.pnl import realized_pnl, realized_pnl_minor
from core.scenario.parse import parse_scenario
from tests.core.conftest import instrument

START = datetime(2018, 8, 3, 6, 0, tzinfo=UTC)
T = 7200  # the expiry, 08:00, in seconds from the start
USDT = 10**6


def at(seconds: int) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def holding(account: str, side: str, contracts: int, entry: str, margin: str) -> dict[str, Any]:
    return {
        "id": account,
        "balances": {"USDT": "0"},
        "positions": [
            {
                "symbol": "X",
                "side": side,
                "contracts": contracts,
                "entry_price": entry,
                "margin_mode": "isolated",
                "margin": margin,
                "leverage": "10",
            }
        ],
    }


def market(gap_at: int = 600, end: int = T + 900) -> list[list[str]]:
    return [[at(0), "100"], [at(gap_at - 10), "100"], [at(gap_at), "80"], [at(end), "80"]]


def scenario(
    *,
    index: list[list[str]] | None = None,
    marks: list[list[str]] | None = None,
    fund: str = "0",
    approval: str = "auto",
    actions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    index = index or market()
    return {
        "format": "risk-scenario/1",
        "name": "settlement-window",
        "start": at(0),
        "tick_seconds": 10,
        "currencies": {"USDT": 6},
        "instruments": [
            {
                "symbol": "X",
                "type": "linear",
                "contract_value": "1",
                "settle_currency": "USDT",
                "tick_size": "0.01",
                "expiry": at(T),
                "family": "X",
                "index": "X",
                "tiers": {
                    "basis": "contracts",
                    "levels": [{"mmr": "0.005", "max_leverage": "100"}],
                },
            }
        ],
        "insurance_fund": {"USDT": fund},
        "accounts": [
            holding("A", "long", 10, "100", "10"),
            holding("B", "short", 10, "100", "100"),
            holding("C", "short", 5, "100", "50"),
            holding("D", "long", 5, "90", "450"),
            {"id": "E", "balances": {"USDT": "1000"}, "positions": []},
        ],
        "market": {"indices": {"X": index}, "marks": {"X": marks or index}},
        "policy": {
            "deficit": "clawback",
            "partial_liquidation": False,
            "fund_reservation": False,
            "clawback_approval": approval,
            "settlement": {"every": "expiry"},
        },
        "operators": [
            {"name": "alice", "role": "operator"},
            {"name": "carol", "role": "supervisor"},
            {"name": "dave", "role": "supervisor"},
        ],
        "actions": actions or [],
    }


def manipulated_marks() -> list[list[str]]:
    """The mark pushed 5% above the index in the last minutes before the expiry."""
    return [
        [at(0), "100"],
        [at(590), "100"],
        [at(600), "80"],
        [at(T - 600), "80"],
        [at(T - 300), "84"],
        [at(T - 60), "80"],
        [at(T + 900), "80"],
    ]


def run(doc: dict[str, Any]) -> tuple[Engine, dict[str, Any], list[Event]]:
    engine = Engine(parse_scenario(copy.deepcopy(doc)))
    collector = ResultCollector(engine)
    events: list[Event] = []
    for tick_events in engine.run():
        collector.feed(tick_events)
        events.extend(tick_events)
    return engine, collector.result(), events


def run_until(engine: Engine, seconds: int) -> list[Event]:
    events: list[Event] = []
    while engine.now < START + timedelta(seconds=seconds):
        events.extend(engine.step())
    return events


def balance(engine: Engine, name: str) -> int:
    return engine.ledger.balance(trader(engine.book.account_index[name]), "USDT")


# ----- the checks on crafted windows ----------------------------------------------------------


def window(**changes: Any) -> dict[str, Any]:
    """A clean hour of one instrument at 1-minute samples: index, mark and last all at 100."""
    times = np.arange(60, 3601, 60, dtype=np.int64)
    flat = np.full((times.size, 1), 100.0)
    base: dict[str, Any] = {
        "times": times,
        "index": flat.copy(),
        "mark": flat.copy(),
        "last": flat.copy(),
        "fills": np.array([[0, 5], [1, 5], [2, 5]], dtype=np.int64),
        "open_interest": 1000,
        "coverage": 1.0,
    }
    base.update(changes)
    return base


def judge(parts: dict[str, Any], checks: SettlementChecks | None = None) -> Any:
    return assess(
        checks or SettlementChecks(),
        3600,
        parts["times"],
        parts["index"],
        parts["mark"],
        parts["last"],
        parts["fills"],
        parts["open_interest"],
        parts["coverage"],
        ["X"],
        ["P", "Q", "R"],
    )


def bumped(at_row: int, value: float) -> np.ndarray:
    series = np.full((60, 1), 100.0)
    series[at_row, 0] = value
    return series


def test_a_clean_window_is_not_suspected() -> None:
    result = judge(window())
    assert not result.suspected
    assert [i.name for i in result.indicators] == ["mark_gap", "last_gap", "volume_share", "jump"]
    assert not any(i.tripped for i in result.indicators)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("mark_gap", {"mark": bumped(20, 104.0)}),  # 4% over the index, early in the hour
        ("last_gap", {"last": bumped(20, 96.5)}),  # 3.5% under
        ("volume_share", {"fills": np.array([[0, 5], [1, 5], [2, 40]], dtype=np.int64)}),
        ("jump", {"index": bumped(57, 102.5), "mark": bumped(57, 102.5)}),  # in the last 5 min
    ],
)
def test_each_indicator_alone_trips_the_check(name: str, changes: dict[str, Any]) -> None:
    result = judge(window(**changes))
    assert result.suspected
    assert [i.name for i in result.tripped] == [name]


def test_the_indicators_carry_their_values_and_evidence() -> None:
    result = judge(window(fills=np.array([[0, 5], [2, 15]], dtype=np.int64)))
    share = result.indicators[2]
    assert share.value == pytest.approx(0.75) and share.threshold == 0.5
    assert "account R: 15 of 20 contracts" in share.detail


def test_a_small_dominant_fill_or_an_early_jump_does_not_trip() -> None:
    # One account made all the volume, but 5 contracts of an open interest of 1,000 (0.5%).
    assert not judge(window(fills=np.array([[1, 5]], dtype=np.int64))).suspected
    # A 2.5% move an hour before the settlement is not a jump in its last minutes.
    assert not judge(window(index=bumped(5, 102.5), mark=bumped(5, 102.5))).suspected


def test_a_window_the_engine_did_not_see_whole_is_not_judged() -> None:
    result = judge(window(mark=bumped(20, 110.0), coverage=0.5))
    assert result.tripped and not result.suspected


def test_thresholds_are_validated_by_field() -> None:
    with pytest.raises(InputError) as error:
        SettlementChecks(price_gap=-0.1)
    assert error.value.field == "price_gap"
    with pytest.raises(InputError) as error:
        SettlementChecks(delay_seconds=0)
    assert error.value.field == "delay_seconds"


# ----- the delay in the engine ----------------------------------------------------------------


def test_a_clean_settlement_runs_on_time() -> None:
    engine, result, events = run(scenario())
    assert not [e for e in events if isinstance(e, SettlementDelayed)]
    assert result["settlements"] == [
        {"time": at(T), "family": "X", "price": "80", "adjusted_from": None, "expired": ["X"]}
    ]
    (clawback,) = result["clawbacks"]
    assert clawback["allocations"] == [
        {"account": "B", "profit": "200", "amount": "126.666667"},
        {"account": "C", "profit": "100", "amount": "63.333333"},
    ]
    assert not engine.settlements.assessments["X"].suspected


def test_a_manipulated_mark_delays_the_settlement_by_ten_minutes() -> None:
    engine = Engine(parse_scenario(scenario(marks=manipulated_marks())))
    events = run_until(engine, T)
    (delayed,) = [e for e in events if isinstance(e, SettlementDelayed)]
    assert (delayed.scheduled, delayed.delayed_to) == (
        START + timedelta(seconds=T),
        START + timedelta(seconds=T + 600),
    )
    # A pinned mark is also the book's mid, so the last price strays (and jumps back) with it.
    tripped = {i.name: i.value for i in delayed.indicators}
    assert tripped["mark_gap"] == pytest.approx(0.05) == tripped["last_gap"]
    assert not [e for e in events if isinstance(e, SettlementDone)]
    review = engine.settlements.review("X")
    assert review.scheduled == START + timedelta(seconds=T + 600)
    assert review.delayed_from == START + timedelta(seconds=T)
    events = run_until(engine, T + 900)
    (done,) = [e for e in events if isinstance(e, SettlementDone)]
    # Delayed once: the window still holds the pushed mark, the settlement runs all the same.
    assert done.time == START + timedelta(seconds=T + 600)
    assert done.price == Decimal("80.00") and done.adjusted_from is None


def test_one_account_dominating_the_window_volume_delays_the_settlement() -> None:
    # The gap 15 minutes before the expiry: A's liquidation (10 contracts, all the window's
    # volume, 2/3 of the open interest) falls inside the window.
    _, result, events = run(scenario(index=market(gap_at=T - 900)))
    (delayed,) = [e for e in events if isinstance(e, SettlementDelayed)]
    assert [i.name for i in delayed.indicators] == ["volume_share"]
    assert "account A: 10 of 10" in delayed.indicators[0].detail
    assert result["settlements"][0]["time"] == at(T + 600)


def test_a_trade_far_from_the_index_shows_as_the_last_price() -> None:
    doc = scenario()
    doc["x-trades"] = [
        {
            "at": at(T - 120),
            "account": "E",
            "symbol": "X",
            "side": "buy",
            "contracts": 1,
            "price": "90",
            "margin": "9",
        }
    ]
    _, _, events = run(doc)
    (delayed,) = [e for e in events if isinstance(e, SettlementDelayed)]
    gap = next(i for i in delayed.indicators if i.name == "last_gap")
    assert gap.value == pytest.approx(0.125)


# ----- adjusted prices, with a second person --------------------------------------------------


def adjustment(proposer: str, approver: str) -> list[dict[str, Any]]:
    return [
        {
            "at": at(T + 60),
            "id": "adj-1",
            "operator": proposer,
            "action": "adjust_settlement_price",
            "family": "X",
            "price": "79.5",
            "reason": "mark pushed in the window",
        },
        {
            "at": at(T + 120),
            "operator": approver,
            "action": "approve",
            "request": "adj-1",
            "reason": "checked against spot venues",
        },
    ]


def test_an_approved_adjustment_is_used_at_the_delayed_settlement() -> None:
    doc = scenario(marks=manipulated_marks(), actions=adjustment("alice", "carol"))
    _, result, _ = run(doc)
    assert result["settlements"] == [
        {
            "time": at(T + 600),
            "family": "X",
            "price": "79.5",
            "adjusted_from": "80",
            "expired": ["X"],
        }
    ]
    # At 79.5: B's profit is 205, C's 102.5; the 190 is shared over 307.5.
    (clawback,) = result["clawbacks"]
    assert [(a["account"], a["profit"]) for a in clawback["allocations"]] == [
        ("B", "205"),
        ("C", "102.5"),
    ]
    assert sum(Decimal(a["amount"]) for a in clawback["allocations"]) == Decimal(190)


def test_the_proposer_cannot_approve_their_own_adjustment() -> None:
    doc = scenario(marks=manipulated_marks(), actions=adjustment("carol", "carol"))
    _, result, _ = run(doc)
    assert [(r["operator"], r["action"], r["reason"]) for r in result["refused"]] == [
        ("carol", "approve", "self-approval: the approver must be a different person")
    ]
    assert result["settlements"][0]["price"] == "80"
    assert result["settlements"][0]["adjusted_from"] is None


def test_an_operator_price_must_sit_on_the_tick() -> None:
    engine = Engine(parse_scenario(scenario()))
    with pytest.raises(InputError) as error:
        engine.settlements.preview("X", "USDT", Decimal("79.505"))
    assert error.value.field == "price"
    with pytest.raises(InputError) as error:
        engine.settlements.preview("Y", "USDT", Decimal("80"))
    assert error.value.field == "family"


# ----- clawback requests ----------------------------------------------------------------------


def approve(engine: Engine, digest: str | None = None, operator: str = "carol") -> bool:
    params: dict[str, object] = {"family": "X", "currency": "USDT"}
    if digest is not None:
        params["digest"] = digest
    spec = ActionSpec(engine.now, operator, "approve_clawback", "checked", None, params)
    return engine.controls.apply(spec)


def test_the_applied_allocation_is_exactly_the_preview() -> None:
    # A fund of 40 pays its part of the 190 as the deficit arises; the 150 left is shared.
    engine = Engine(parse_scenario(scenario(fund="40", approval="required")))
    run_until(engine, T - 10)
    seen = engine.settlements.preview("X", "USDT", Decimal("80"))
    assert (seen.fund_pays, seen.deficit, seen.total_profit) == (0, 150 * USDT, 300 * USDT)
    assert not seen.amounts.flags.writeable
    run_until(engine, T)
    pending = engine.settlements.pending[("X", "USDT")]
    assert pending.digest == seen.digest
    before = {name: balance(engine, name) for name in "ABCDE"}
    assert approve(engine, seen.digest)
    after = {name: balance(engine, name) for name in "ABCDE"}
    ids = engine.book.account_ids
    paid = {ids[a]: m for a, m in zip(seen.accounts.tolist(), seen.amounts.tolist(), strict=True)}
    assert paid == {"B": 100 * USDT, "C": 50 * USDT}
    assert {name: before[name] - after[name] for name in "ABCDE"} == {
        name: paid.get(name, 0) for name in "ABCDE"
    }
    totals = engine.deficit_totals["USDT"]
    assert totals["total"] == 190 * USDT and totals["covered_by_fund"] == 40 * USDT
    assert sum(paid.values()) == totals["total"] - totals["covered_by_fund"]
    assert engine.settlements.pending == {}


def test_an_approval_of_a_preview_whose_inputs_changed_is_refused() -> None:
    # Previewed with an empty fund; an injection of 100 approved before the settlement makes the
    # fund pay first, so the request differs from what was previewed.
    actions = [
        {
            "at": at(T - 300),
            "id": "inj",
            "operator": "alice",
            "action": "inject",
            "currency": "USDT",
            "amount": "100",
            "reason": "reduce the clawback",
        },
        {
            "at": at(T - 290),
            "operator": "carol",
            "action": "approve",
            "request": "inj",
            "reason": "agreed",
        },
    ]
    engine = Engine(parse_scenario(scenario(approval="required", actions=actions)))
    run_until(engine, T - 600)
    stale = engine.settlements.preview("X", "USDT", Decimal("80"))
    run_until(engine, T)
    pending = engine.settlements.pending[("X", "USDT")]
    assert pending.digest != stale.digest and pending.preview.deficit == 90 * USDT
    balances = {name: balance(engine, name) for name in "BC"}
    with pytest.raises(Refusal) as refusal:
        engine.settlements.approve_clawback(
            ActionSpec(
                engine.now,
                "carol",
                "approve_clawback",
                "ok",
                None,
                {"family": "X", "currency": "USDT", "digest": stale.digest},
            )
        )
    assert refusal.value.code == "changed"
    assert not approve(engine, stale.digest)
    assert isinstance(engine.events[-1], ActionRefused) and "changed" in engine.events[-1].reason
    assert {name: balance(engine, name) for name in "BC"} == balances
    assert ("X", "USDT") in engine.settlements.pending
    assert approve(engine, pending.digest)
    assert balances["B"] - balance(engine, "B") == 60 * USDT


def test_a_digest_in_the_scenario_file_is_checked() -> None:
    wrong = "0" * 64
    actions = [
        {
            "at": at(T + 10),
            "operator": "carol",
            "action": "approve_clawback",
            "family": "X",
            "currency": "USDT",
            "digest": wrong,
            "reason": "as previewed",
        },
        {
            "at": at(T + 20),
            "operator": "dave",
            "action": "approve_clawback",
            "family": "X",
            "currency": "USDT",
            "reason": "as pending",
        },
    ]
    _, result, _ = run(scenario(approval="required", actions=actions))
    (refused,) = result["refused"]
    assert refused["operator"] == "carol" and "changed since the preview" in refused["reason"]
    (applied,) = result["clawbacks"]  # the approval replaced the pending entry
    assert (applied["status"], applied["time"], applied["decided_at"]) == (
        "applied",
        at(T),
        at(T + 20),
    )
    assert [a["account"] for a in applied["allocations"]] == ["B", "C"]


# ----- exact PnL at a price, vectorized -------------------------------------------------------


@pytest.mark.parametrize("kind", ["inverse", "linear"])
def test_the_array_pnl_equals_the_exact_scalar_pnl(kind: str) -> None:
    inst = instrument(kind=kind, cv="100" if kind == "inverse" else "0.01", tick="0.01")
    rng = np.random.default_rng(7)
    size = 20_000
    side = rng.choice([-1, 1], size).astype(np.int64)
    contracts = rng.integers(1, 5_000_000, size)
    entry = rng.integers(5_000 * 10**6, 9_000 * 10**6, size)
    price = 7_450 * 10**6
    entry[:50] = price  # no move
    got = realized_pnl(inst, 8, side, contracts, entry, price)
    # Each row at its own price, as liquidation fills are.
    own = realized_pnl(inst, 8, side, contracts, entry, np.full(size, price) + contracts % 7)
    expected = [
        realized_pnl_minor(inst, 8, int(s), int(n), int(e), price)
        for s, n, e in zip(side, contracts, entry, strict=True)
    ]
    assert got.tolist() == expected
    assert own.tolist() == [
        realized_pnl_minor(inst, 8, int(s), int(n), int(e), price + int(n) % 7)
        for s, n, e in zip(side, contracts, entry, strict=True)
    ]


@pytest.mark.slow
def test_the_2018_demo_settles_on_time_and_waits_for_its_clawback_approval() -> None:
    from core.scenario.builtin import builtin_scenarios
    from core.scenario.parse import load_scenario

    engine = Engine(load_scenario(builtin_scenarios()["okx-2018-btc0928"]))
    delayed = [e for events in engine.run() for e in events if isinstance(e, SettlementDelayed)]
    assert delayed == []
    assessment = engine.settlements.assessments["BTC-USD"]
    assert assessment.coverage == 1.0 and not assessment.suspected
    pending = engine.settlements.pending[("BTC-USD", "BTC")]
    assert Decimal(1100) * 10**8 <= pending.preview.deficit <= Decimal(1300) * 10**8
    assert int(pending.preview.amounts.sum()) == pending.preview.deficit


def test_a_delayed_settlement_survives_a_snapshot_with_the_same_state_hash() -> None:
    from core.store import state_format

    engine = Engine(parse_scenario(scenario(marks=manipulated_marks(), approval="required")))
    run_until(engine, T + 300)  # delayed, not yet settled
    copy_of = state_format.load(state_format.dump(engine, compress=False))
    assert copy_of.state_hash() == engine.state_hash()
    run_until(engine, T + 900)
    run_until(copy_of, T + 900)
    assert copy_of.state_hash() == engine.state_hash()
    assert copy_of.settlements.pending[("X", "USDT")].digest == (
        engine.settlements.pending[("X", "USDT")].digest
    )
