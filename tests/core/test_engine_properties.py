"""Property tests of the whole engine over random small scenarios (DESIGN.md section 4).

Each example is a `risk-scenario/1` document: one or two instruments (linear USDT or inverse BTC),
2-8 accounts whose positions net to zero per instrument, a price path of 3-6 points moving up to
40% with 1 s ticks, an optional book, random policies and fund, and an expiry inside the run. The
engine is run tick by tick and its invariants checked after every tick and at the end.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.engine.facade import Engine
from core.engine.ledger import CLEARING, INSURANCE_FUND, ROUNDING
from core.model.events import (
    ClawbackComputed,
    DeficitUncovered,
    Event,
    LiquidationFilled,
    LiquidationStarted,
    SettlementDone,
)
from core.risk.pnl import realized_pnl_minor
from core.scenario.parse import parse_scenario

START = datetime(2018, 7, 31, 0, 0, tzinfo=UTC)
DECIMALS = {"USDT": 6, "BTC": 8}
KINDS = {
    # type, contract value, settle currency
    "linear": ("linear", Decimal("0.01"), "USDT"),
    "inverse": ("inverse", Decimal("100"), "BTC"),
}
EXAMPLES = 60


def iso(seconds: int) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: Decimal, currency: str) -> str:
    return str(value.quantize(Decimal(1).scaleb(-DECIMALS[currency])))


def notional(kind: str, contracts: int, price: Decimal) -> Decimal:
    _, cv, _ = KINDS[kind]
    return contracts * cv * price if kind == "linear" else contracts * cv / price


@st.composite
def tier_table(draw: st.DrawFn, kind: str, price: Decimal) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    mmrs = sorted(
        draw(
            st.lists(
                st.sampled_from(["0.005", "0.01", "0.02", "0.05"]), min_size=count, max_size=count
            )
        )
    )
    basis = draw(st.sampled_from(["contracts", "notional"]))
    bounds = sorted(
        set(draw(st.lists(st.integers(200, 4000), min_size=count - 1, max_size=count - 1)))
    )
    levels: list[dict[str, Any]] = []
    for i, mmr in enumerate(mmrs[: len(bounds) + 1]):
        level: dict[str, Any] = {"mmr": mmr, "max_leverage": "100"}
        if i < len(bounds):
            top = Decimal(bounds[i])
            if basis == "notional":
                top = notional(kind, bounds[i], price).quantize(Decimal("0.01"))
                if levels and Decimal(levels[-1]["max"]) >= top:
                    break
            level["max"] = str(top)
        levels.append(level)
    levels[-1].pop("max", None)
    return {"basis": basis, "levels": levels}


@st.composite
def price_path(draw: st.DrawFn, base: Decimal, length: int) -> list[list[str]]:
    """`length` points over a few minutes; each point within +-40% of the one before."""
    seconds, price, points = 0, base, [[iso(0), str(base)]]
    for _ in range(length - 1):
        seconds += draw(st.integers(3, 40))
        move = Decimal(draw(st.integers(-400, 400))) / 1000
        price = max(Decimal("1"), (price * (1 + move)).quantize(Decimal("0.01")))
        points.append([iso(seconds), str(price)])
    return points


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_instruments = draw(st.integers(1, 2))
    n_accounts = draw(st.integers(2, 8))
    length = draw(st.integers(3, 6))
    instruments, indices, marks, books = [], {}, {}, {}
    accounts: list[dict[str, Any]] = [
        {"id": f"acct-{a}", "balances": {}, "positions": []} for a in range(n_accounts)
    ]
    currencies: set[str] = set()
    for k in range(n_instruments):
        kind = draw(st.sampled_from(["linear", "inverse"]))
        type_, cv, currency = KINDS[kind]
        currencies.add(currency)
        base = Decimal(draw(st.integers(100_000, 2_000_000))) / 100
        symbol, index = f"I{k}", f"IDX{k}"
        path = draw(price_path(base, length))
        indices[index] = path
        end = seconds_of(path[-1][0])
        expiry = draw(st.integers(1, end))
        if draw(st.booleans()):
            marks[symbol] = path
        if draw(st.booleans()):
            books[symbol] = {
                "depth": str(draw(st.integers(5, 3000))),
                "refill_seconds": str(draw(st.integers(1, 30))),
            }
        instruments.append(
            {
                "symbol": symbol,
                "type": type_,
                "contract_value": str(cv),
                "settle_currency": currency,
                "tick_size": draw(st.sampled_from(["0.01", "0.1", "0.5"])),
                "expiry": iso(expiry),
                "family": f"FAM{k}",
                "index": index,
                "tiers": draw(tier_table(kind, base)),
                "mark": {"ema_seconds": draw(st.integers(1, 60))},
                "liquidation_band": draw(st.sampled_from(["0.01", "0.02", "0.05"])),
            }
        )
        # Open interest nets to zero: the longs' contracts are split over the shorts.
        order = draw(st.permutations(range(n_accounts)))
        n_long = draw(st.integers(1, n_accounts - 1))
        n_short = draw(st.integers(1, n_accounts - n_long))
        longs, shorts = order[:n_long], order[n_long : n_long + n_short]
        long_sizes = [draw(st.integers(1, 3000)) for _ in longs]
        total = sum(long_sizes)
        if total < len(shorts):
            shorts = shorts[:total]
        cuts = (
            sorted(
                draw(
                    st.sets(
                        st.integers(1, total - 1),
                        min_size=len(shorts) - 1,
                        max_size=len(shorts) - 1,
                    )
                )
            )
            if len(shorts) > 1
            else []
        )
        short_sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        for side, owners, sizes in (("long", longs, long_sizes), ("short", shorts, short_sizes)):
            for a, contracts in zip(owners, sizes, strict=True):
                entry = (base * (1 + Decimal(draw(st.integers(-100, 100))) / 1000)).quantize(
                    Decimal("0.01")
                )
                leverage = draw(st.integers(1, 100))
                margin = notional(kind, contracts, entry) / leverage
                margin *= Decimal(draw(st.integers(50, 200))) / 100
                position = {
                    "symbol": symbol,
                    "side": side,
                    "contracts": contracts,
                    "entry_price": str(entry),
                    "leverage": str(leverage),
                }
                balances = accounts[a]["balances"]
                if draw(st.booleans()):
                    position["margin_mode"] = "isolated"
                    position["margin"] = money(margin, currency)
                    balances.setdefault(currency, "0")
                else:
                    position["margin_mode"] = "cross"
                    held = Decimal(balances.get(currency, "0"))
                    balances[currency] = money(held + margin, currency)
                accounts[a]["positions"].append(position)
    policy = {
        "deficit": draw(st.sampled_from(["clawback", "adl"])),
        "partial_liquidation": draw(st.booleans()),
        "fund_reservation": draw(st.booleans()),
        "clawback_approval": draw(st.sampled_from(["auto", "auto", "required"])),
        "settlement": {"every": "expiry"},
    }
    fund = {
        code: money(Decimal(draw(st.integers(0, 10**6))) / 10 ** draw(st.integers(0, 6)), code)
        for code in sorted(currencies)
    }
    run_end = max(seconds_of(path[-1][0]) for path in indices.values())
    holdings = [(a["id"], p["symbol"], p["contracts"]) for a in accounts for p in a["positions"]]
    actions = draw(operator_actions(run_end, holdings, instruments))
    return {
        "format": "risk-scenario/1",
        "name": "generated",
        "start": iso(0),
        "tick_seconds": 1,
        "currencies": {code: DECIMALS[code] for code in sorted(currencies)},
        "instruments": instruments,
        "insurance_fund": fund,
        "accounts": accounts,
        "market": {"indices": indices, "marks": marks, "books": books},
        "policy": policy,
        "operators": [
            {"name": "alice", "role": "operator"},
            {"name": "carol", "role": "supervisor"},
        ],
        "actions": actions,
    }


def seconds_of(time: str) -> int:
    return int((datetime.fromisoformat(time.replace("Z", "+00:00")) - START).total_seconds())


@st.composite
def operator_actions(
    draw: st.DrawFn,
    run_end: int,
    holdings: list[tuple[str, str, int]],
    instruments: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Maybe an injection and a force-reduce (each approved by the supervisor a little later), and
    maybe approvals of the clawbacks at the end of the run."""
    timed: list[tuple[int, int, dict[str, Any]]] = []
    at = st.integers(0, max(0, run_end - 2))
    if draw(st.booleans()):
        inst = draw(st.sampled_from(instruments))
        when = draw(at)
        amount = money(Decimal(draw(st.integers(1, 10**5))) / 100, inst["settle_currency"])
        timed.append(
            (
                when,
                0,
                {
                    "id": "inj",
                    "operator": "alice",
                    "action": "inject",
                    "currency": inst["settle_currency"],
                    "amount": amount,
                },
            )
        )
        timed.append(
            (
                when + draw(st.integers(0, 2)),
                1,
                {"operator": "carol", "action": "approve", "request": "inj"},
            )
        )
    if holdings and draw(st.booleans()):
        account, symbol, contracts = draw(st.sampled_from(holdings))
        when = draw(at)
        timed.append(
            (
                when,
                2,
                {
                    "id": "cut",
                    "operator": "alice",
                    "action": "force_reduce",
                    "account": account,
                    "symbol": symbol,
                    "contracts": draw(st.integers(1, contracts)),
                },
            )
        )
        timed.append(
            (
                when + draw(st.integers(0, 2)),
                3,
                {"operator": "carol", "action": "approve", "request": "cut"},
            )
        )
    if draw(st.booleans()):
        for inst in instruments:
            timed.append(
                (
                    run_end,
                    4,
                    {
                        "operator": "carol",
                        "action": "approve_clawback",
                        "family": inst["family"],
                        "currency": inst["settle_currency"],
                    },
                )
            )
    return [
        {"at": iso(when), **action, "reason": "generated"}
        for when, _, action in sorted(timed, key=lambda item: item[:2])
    ]


def check_tick(engine: Engine) -> None:
    for code in engine.currency_codes:
        assert engine.ledger.total(code) == 0, f"{code} ledger does not sum to zero"
        fund = engine.ledger.balance(INSURANCE_FUND, code)
        assert fund >= 0, f"{code} fund negative"
        reserved = engine.desk.reserved[code]
        assert 0 <= reserved <= fund, f"{code} reserved {reserved} of a fund of {fund}"


class RecordingBook:
    """Wraps an instrument's liquidity model and records what the market outside the scenario
    bought or sold against liquidation orders: (contracts the outside went long, price units),
    with the fill's VWAP rounded to price units as the engine rounds it."""

    def __init__(self, inner: Any, price_unit: Decimal) -> None:
        self.inner = inner
        self.price_unit = float(price_unit)
        self.fills: list[tuple[int, int]] = []

    def execute(self, side: Any, contracts: int, limit_price: float, mid: float) -> Any:
        fill = self.inner.execute(side, contracts, limit_price, mid)
        if fill.contracts_filled:
            units = max(1, round(fill.average_price / self.price_unit))
            signed = fill.contracts_filled if side == "sell" else -fill.contracts_filled
            self.fills.append((signed, units))
        return fill

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run_checked(doc: dict[str, Any]) -> tuple[Engine, list[Event], list[str]]:
    """Run tick by tick, checking the per-tick invariants. Under `adl` also returns the uncovered
    deficits that auto-deleveraging should have prevented (see `adl_could_not_help`)."""
    engine = Engine(parse_scenario(copy.deepcopy(doc)))
    engine.liquidity = [
        RecordingBook(liquidity, inst.price_unit)
        for liquidity, inst in zip(engine.liquidity, engine.instruments, strict=True)
    ]
    check_tick(engine)
    adl = engine.scenario.policy.deficit == "adl"
    events: list[Event] = []
    unexplained: list[str] = []
    for tick_events in engine.run():
        check_tick(engine)
        events.extend(tick_events)
        for event in tick_events:
            if (
                adl
                and isinstance(event, DeficitUncovered)
                and not adl_could_not_help(engine, events, tick_events, event.family)
            ):
                unexplained.append(f"tick {engine.tick}: {event}")
    return engine, events, unexplained


def adl_could_not_help(
    engine: Engine, events: list[Event], tick_events: list[Event], family: str
) -> bool:
    """Under `adl` a deficit stays uncovered only where no ranked opposite position could take it:
    the opposite side has no open position left (the rest went to the book), the remainder had no
    bankruptcy price at all (its collateral was already negative), or the instrument expired with
    the order still in the book (closed at the settlement price)."""
    book = engine.book
    for k, inst in enumerate(engine.instruments):
        if inst.family != family:
            continue
        open_rows = (book.instrument == k) & (book.contracts > 0)
        if not (open_rows & (book.side > 0)).any() or not (open_rows & (book.side < 0)).any():
            return True
        if any(
            isinstance(e, LiquidationStarted)
            and e.symbol == inst.symbol
            and e.bankruptcy_price is None
            for e in events
        ):
            return True
    return any(isinstance(e, SettlementDone) and e.family == family for e in tick_events)


def clearing_expected(engine: Engine, doc: dict[str, Any], events: list[Event]) -> dict[str, int]:
    """What the clearing house holds once every instrument has expired, besides rounding.

    - The opening positions need not share one entry price: whatever they net to at the
      settlement price was paid by (or to) the clearing house.
    - Liquidation orders fill against the market outside the scenario, whose positions are not
      in the book: the clearing house keeps their PnL up to the settlement price.
    - Deficits it could not recover (unrecovered, pending approval, not yet settled) it lacks.
    """
    prices = {e.family: e.price for e in events if isinstance(e, SettlementDone)}
    expected = dict.fromkeys(engine.currency_codes, 0)
    for k, inst in enumerate(engine.instruments):
        code, decimals = inst.settle_currency, engine.decimals(k)
        settle = inst.price_units(prices[inst.family])
        opening = [
            (
                1 if p["side"] == "long" else -1,
                p["contracts"],
                inst.price_units(Decimal(p["entry_price"])),
            )
            for account in doc["accounts"]
            for p in account["positions"]
            if p["symbol"] == inst.symbol
        ]
        for side, contracts, entry in opening:
            expected[code] -= realized_pnl_minor(inst, decimals, side, contracts, entry, settle)
        outside = engine.liquidity[k].fills
        for signed, units in outside:
            side = 1 if signed > 0 else -1
            expected[code] += realized_pnl_minor(inst, decimals, side, abs(signed), units, settle)
    for claw in (e for e in events if isinstance(e, ClawbackComputed)):
        if claw.status == "applied":
            expected[claw.currency] -= claw.unrecovered
        elif (claw.family, claw.currency) in engine.settlements.pending:
            expected[claw.currency] -= claw.deficit
    for (_, code), amount in engine.uncovered.items():
        expected[code] -= amount
    return expected


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_random_scenarios_keep_the_engine_invariants(doc: dict[str, Any]) -> None:
    engine, events, unexplained = run_checked(doc)

    # Every clawback: exact parts, nobody above their profit, the rest reported unrecovered.
    clawbacks = [e for e in events if isinstance(e, ClawbackComputed)]
    for claw in clawbacks:
        profits = [profit for _, profit, _ in claw.allocations]
        amounts = [amount for _, _, amount in claw.allocations]
        assert all(p > 0 for p in profits)
        assert sum(profits) == claw.total_profit
        assert sum(amounts) == min(claw.deficit, claw.total_profit)
        assert all(0 <= amount <= profit for _, profit, amount in claw.allocations)
        assert claw.unrecovered == max(0, claw.deficit - claw.total_profit)

    totals = engine.deficit_totals
    for figures in totals.values():
        assert figures["total"] == figures["covered_by_fund"] + figures["uncovered"]
    if doc["policy"]["deficit"] == "adl":
        assert unexplained == []

    # Same scenario, same run: the state hash is reproducible.
    again, _, _ = run_checked(doc)
    assert again.state_hash() == engine.state_hash()

    # Every instrument expired inside the run: nothing is open, and the clearing house holds only
    # rounding besides what `clearing_expected` accounts for (a few minor units per fill).
    assert not engine.book.contracts.any()
    assert not engine.desk.orders
    fills = sum(e.fills for e in events if isinstance(e, LiquidationFilled))
    outside = sum(len(book.fills) for book in engine.liquidity)
    tolerance = 2 * (len(engine.book) + fills + outside) + 2
    expected = clearing_expected(engine, doc, events)
    for code in engine.currency_codes:
        clearing = engine.ledger.balance(CLEARING, code) + engine.ledger.balance(ROUNDING, code)
        assert abs(clearing - expected[code]) <= tolerance, (code, clearing, expected, tolerance)


# Found by the property test above: under ADL, an approved force-reduce of a cross account whose
# fill leaves a loss beyond its collateral records an uncovered deficit instead of deleveraging.
FORCE_REDUCE_DEFICIT_UNDER_ADL: dict[str, Any] = {
    "format": "risk-scenario/1",
    "name": "generated",
    "start": "2018-07-31T00:00:00Z",
    "tick_seconds": 1,
    "currencies": {"USDT": 6},
    "instruments": [
        {
            "symbol": "I0",
            "type": "linear",
            "contract_value": "0.01",
            "settle_currency": "USDT",
            "tick_size": "0.01",
            "expiry": "2018-07-31T00:00:12Z",
            "family": "FAM0",
            "index": "IDX0",
            "tiers": {
                "basis": "notional",
                "levels": [
                    {"mmr": "0.005", "max_leverage": "100", "max": "2000.00"},
                    {"mmr": "0.005", "max_leverage": "100"},
                ],
            },
            "mark": {"ema_seconds": 1},
            "liquidation_band": "0.01",
        }
    ],
    "insurance_fund": {"USDT": "0.000000"},
    "accounts": [
        {
            "id": f"acct-{n}",
            "balances": {"USDT": cash},
            "positions": [
                {
                    "symbol": "I0",
                    "side": side,
                    "contracts": contracts,
                    "entry_price": entry,
                    "leverage": leverage,
                    "margin_mode": "cross",
                }
            ],
        }
        for n, (cash, side, contracts, entry, leverage) in enumerate(
            [
                ("34.664516", "long", 199, "1080.00", "31"),
                ("5.000000", "long", 1, "1000.00", "1"),
                ("5.000000", "long", 1, "1000.00", "1"),
                ("1005.000000", "short", 201, "1000.00", "1"),
            ]
        )
    ],
    "market": {
        "indices": {
            "IDX0": [
                ["2018-07-31T00:00:00Z", "1000"],
                ["2018-07-31T00:00:29Z", "1169.00"],
                ["2018-07-31T00:00:41Z", "1169.00"],
            ]
        },
        "marks": {},
        "books": {},
    },
    "policy": {
        "deficit": "adl",
        "partial_liquidation": True,
        "fund_reservation": False,
        "clawback_approval": "auto",
        "settlement": {"every": "expiry"},
    },
    "operators": [{"name": "alice", "role": "operator"}, {"name": "carol", "role": "supervisor"}],
    "actions": [
        {
            "at": "2018-07-31T00:00:09Z",
            "id": "cut",
            "operator": "alice",
            "action": "force_reduce",
            "account": "acct-0",
            "symbol": "I0",
            "contracts": 188,
            "reason": "generated",
        },
        {
            "at": "2018-07-31T00:00:11Z",
            "operator": "carol",
            "action": "approve",
            "request": "cut",
            "reason": "generated",
        },
    ],
}


@pytest.mark.xfail(
    strict=True,
    reason="known gap: a force-reduce's deficit under ADL is left uncovered, not deleveraged",
)
def test_a_force_reduce_deficit_under_adl_is_deleveraged() -> None:
    _, _, unexplained = run_checked(FORCE_REDUCE_DEFICIT_UNDER_ADL)
    assert unexplained == []
