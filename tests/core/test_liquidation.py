"""The liquidation process step by step (DESIGN.md section 4, seed 003), each on a small scenario
built by hand with its expected figures worked out in the comments.

Unless a test says otherwise: one linear contract `X` of 1 unit settled in USDT (6 decimals), tick
0.01, the mark pinned to the path given (so the fair mid of a book is that mark too), a perpetual
(no settlement), one tier at mmr 0.5%, band 1%, no book (liquidation orders fill at the mark).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.engine.facade import Engine
from core.engine.ledger import INSURANCE_FUND, trader
from core.engine.liquidation import split_exact
from core.engine.result import ResultCollector
from core.model.events import (
    ActionRecorded,
    ActionRefused,
    Event,
    LiquidationStarted,
)
from core.scenario.parse import parse_scenario

USDT = 10**6  # minor units per USDT
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def at(seconds: int) -> str:
    return f"2018-07-31T00:{seconds // 60:02d}:{seconds % 60:02d}Z"


def position(
    account: str,
    side: str,
    contracts: int,
    entry: str,
    *,
    margin: str | None = None,
    leverage: str = "10",
    balance: str = "0",
) -> dict[str, Any]:
    """An account holding one position in X: isolated with `margin`, else cross on `balance`."""
    spec: dict[str, Any] = {
        "symbol": "X",
        "side": side,
        "contracts": contracts,
        "entry_price": entry,
        "margin_mode": "isolated" if margin is not None else "cross",
        "leverage": leverage,
    }
    if margin is not None:
        spec["margin"] = margin
    return {"id": account, "balances": {"USDT": balance}, "positions": [spec]}


def scenario(
    accounts: list[dict[str, Any]],
    marks: list[tuple[int, str]],
    *,
    fund: str = "0",
    policy: dict[str, Any] | None = None,
    book: dict[str, str] | None = None,
    tiers: dict[str, Any] | None = None,
    cv: str = "1",
    band: str = "0.01",
    actions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    path = [[at(seconds), price] for seconds, price in marks]
    doc: dict[str, Any] = {
        "format": "risk-scenario/1",
        "name": "hand-built",
        "start": at(0),
        "currencies": {"USDT": 6},
        "instruments": [
            {
                "symbol": "X",
                "type": "linear",
                "contract_value": cv,
                "settle_currency": "USDT",
                "tick_size": "0.01",
                "expiry": None,
                "family": "X",
                "index": "X",
                "tiers": tiers
                or {"basis": "contracts", "levels": [{"mmr": "0.005", "max_leverage": "100"}]},
                "liquidation_band": band,
            }
        ],
        "insurance_fund": {"USDT": fund},
        "accounts": accounts,
        "market": {"indices": {"X": path}, "marks": {"X": path}},
        "policy": {
            "deficit": "clawback",
            "partial_liquidation": False,
            "fund_reservation": False,
            "settlement": {"every": "expiry"},
            **(policy or {}),
        },
        "operators": [
            {"name": "alice", "role": "operator"},
            {"name": "bob", "role": "operator"},
            {"name": "carol", "role": "supervisor"},
            {"name": "vic", "role": "viewer"},
        ],
    }
    if book is not None:
        doc["market"]["books"] = {"X": book}
    if actions is not None:
        doc["actions"] = actions
    return doc


Probe = Callable[[Engine], Any]


def run(
    doc: dict[str, Any], probe: Probe | None = None
) -> tuple[Engine, dict[str, Any], dict[int, list[Event]], dict[int, Any]]:
    """Run to the end; returns the engine, the result, each tick's events and `probe(engine)`
    taken after each tick."""
    engine = Engine(parse_scenario(doc))
    collector = ResultCollector(engine)
    events: dict[int, list[Event]] = {}
    probes: dict[int, Any] = {}
    for tick_events in engine.run():
        collector.feed(tick_events)
        events[engine.tick] = tick_events
        if probe is not None:
            probes[engine.tick] = probe(engine)
    return engine, collector.result(), events, probes


def row_of(engine: Engine, account: str) -> int:
    return int(engine.book.account_index[account])


def of_type(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# ----- 2. partial first: step down one tier at a time ---------------------------------------

# Seed 003's table shape, by contracts: tier 1 up to 50,000 at 0.5%, tier 2 up to 80,000 at 1%,
# tier 3 above at 2%. Derived maintenance amounts (in contracts): tier 2 50,000*(1% - 0.5%) = 250,
# tier 3 80,000*(2% - 1%) + 250 = 1,050. A contract is 0.001 (BTC) worth P USDT each.
SEED_003_TIERS = {
    "basis": "contracts",
    "levels": [
        {"max": "50000", "mmr": "0.005", "max_leverage": "100"},
        {"max": "80000", "mmr": "0.01", "max_leverage": "50"},
        {"mmr": "0.02", "max_leverage": "20"},
    ],
}


def step_down_scenario(margin: str, marks: list[tuple[int, str]]) -> dict[str, Any]:
    return scenario(
        [
            position("A", "long", 100_000, "10000", margin=margin),
            position("B", "short", 100_000, "10000", margin="1000000"),
        ],
        marks,
        tiers=SEED_003_TIERS,
        cv="0.001",
        policy={"partial_liquidation": True},
    )


def test_partial_step_reduces_tier_3_to_the_top_of_tier_2_and_checks_again() -> None:
    # A: long 100,000 at 10,000 with 18,000 USDT isolated. At 9,900: upnl = 100*(-100) = -10,000,
    # equity 8,000; maintenance (tier 3) = 0.001*9,900*(100,000*2% - 1,050) = 9,405: liquidated.
    # Step 1 sells 20,000 at the mark (no book): realized 20*(-100) = -2,000 -> margin 16,000;
    # equity stays 8,000 while tier 2 needs 9.9*(800 - 250) = 5,445: safe, no further step.
    # At 9,850 (t=3): equity 16,000 + 80*(-150) = 4,000 <= tier 2's 9.85*550 = 5,417.5: step 2
    # sells 30,000 down to the top of tier 1: realized 30*(-150) = -4,500 -> margin 11,500;
    # tier 1 needs 9.85*250 = 2,462.5 < 4,000: safe again.
    doc = step_down_scenario(
        "18000", [(0, "10000"), (1, "9900"), (2, "9900"), (3, "9850"), (6, "9850")]
    )
    engine, result, events, contracts = run(doc, lambda e: int(e.book.contracts[row_of(e, "A")]))
    assert [
        (r["time"], r["account"], r["partial"], r["contracts"], r["fill_price"])
        for r in result["liquidations"]
    ] == [
        (at(1), "A", True, 20_000, "9900"),
        (at(3), "A", True, 30_000, "9850"),
    ]
    assert contracts == {1: 80_000, 2: 80_000, 3: 50_000, 4: 50_000, 5: 50_000, 6: 50_000}
    a = row_of(engine, "A")
    assert int(engine.book.iso_margin[a]) == 11_500 * USDT
    assert int(engine.book.tier[a]) == 0
    # A partial step is no takeover: nothing was started, the fund is untouched.
    assert not any(of_type(tick, LiquidationStarted) for tick in events.values())
    assert result["insurance_fund"]["USDT"]["end"] == "0"
    assert result["final_balances"]["A"] == {"USDT": "11500"}


def test_partial_steps_repeat_down_to_the_lowest_tier_then_the_rest_is_taken_over() -> None:
    # Margin 12,000: at 9,900 equity is 12,000 - 10,000 = 2,000 and stays 2,000 as each step fills
    # at the mark. It is below tier 3's 9,405 (t=1: sell 20,000), tier 2's 5,445 (t=2: sell
    # 30,000) and tier 1's 9.9*250 = 2,475 (t=3: lowest tier, so the rest is taken over).
    # Takeover of 50,000 with the margin left, 12,000 - 2,000 - 3,000 = 7,000; filled at 9,900 it
    # loses 50*100 = 5,000, so 7,000 - 5,000 = 2,000 is surplus for the fund.
    doc = step_down_scenario("12000", [(0, "10000"), (1, "9900"), (5, "9900")])
    engine, result, events, _ = run(doc)
    assert [(r["time"], r["partial"], r["contracts"]) for r in result["liquidations"]] == [
        (at(1), True, 20_000),
        (at(2), True, 30_000),
        (at(3), False, 50_000),
    ]
    (started,) = of_type(events[3], LiquidationStarted)
    assert (started.account, started.contracts, started.partial) == ("A", 50_000, False)
    assert result["liquidations"][2]["surplus"] == "2000"
    assert result["insurance_fund"]["USDT"]["surplus_in"] == "2000"
    assert int(engine.book.contracts[row_of(engine, "A")]) == 0
    assert result["final_balances"]["A"] == {"USDT": "0"}


def test_a_cross_account_steps_down_before_its_other_positions_are_taken_over() -> None:
    # A cross account with a tier-3 position in X and a small one in Y: both rows are flagged
    # together. The X position steps down first; the account is not taken over (which would also
    # take the X row being reduced) while a step is possible.
    doc = step_down_scenario("0", [(0, "10000"), (1, "9900"), (3, "9900")])
    spec = doc["accounts"][0]
    spec["positions"][0].update(margin_mode="cross")
    del spec["positions"][0]["margin"]
    spec["balances"] = {"USDT": "18000"}
    y = json.loads(json.dumps(doc["instruments"][0]))
    y.update(symbol="Y", family="Y", index="Y")
    y["tiers"] = {"basis": "contracts", "levels": [{"mmr": "0.005", "max_leverage": "100"}]}
    doc["instruments"].append(y)
    doc["market"]["indices"]["Y"] = [[at(0), "100"], [at(3), "100"]]
    doc["market"]["marks"]["Y"] = doc["market"]["indices"]["Y"]
    spec["positions"].append(
        {
            "symbol": "Y",
            "side": "long",
            "contracts": 10,
            "entry_price": "100",
            "margin_mode": "cross",
            "leverage": "10",
        }
    )
    doc["accounts"][1]["positions"].append(
        {
            "symbol": "Y",
            "side": "short",
            "contracts": 10,
            "entry_price": "100",
            "margin_mode": "isolated",
            "margin": "100",
            "leverage": "10",
        }
    )
    # Cross equity at 9,900: 18,000 - 10,000 + 0 = 8,000 against 9,405 + 0.001*10*100*0.5% (Y):
    # liquidated. X steps 20,000 down (equity 8,000 > 5,445 + 0.005), Y is left alone.
    engine, result, _, _ = run(doc)
    assert [(r["symbol"], r["partial"], r["contracts"]) for r in result["liquidations"]] == [
        ("X", True, 20_000)
    ]
    rows = engine.book.account == row_of(engine, "A")
    assert sorted(engine.book.contracts[rows].tolist()) == [10, 80_000]
    assert (engine.book.contracts >= 0).all()


# ----- 3. the band, relisting ---------------------------------------------------------------

# A: long 1,000 at 10,000 with 900 USDT isolated (cv 0.01: notional 100,000). Bankruptcy price
# 10,000 - 900/10 = 9,910. At 9,950 equity is 900 - 500 = 400 <= 0.5% of 99,500 = 497.5: the
# position is taken over. Band 2%: a sell no lower than 9,950*0.98 = 9,751. The book holds 100
# contracts per 1% from the mid (9,950), so 200 fit in the band, at a VWAP of 9,950*0.99 = 9,850.5.
# Each fill of 200: pnl 2*(9,850.5 - 10,000) = -299 against 200/1,000 of the margin, 180:
# a deficit of 119 USDT.
BAND_MARKS = [(0, "10000"), (1, "9950"), (8, "9950")]


def band_scenario(refill_seconds: str, *, reservation: bool = False) -> dict[str, Any]:
    return scenario(
        [
            position("A", "long", 1_000, "10000", margin="900", leverage="100"),
            position("B", "short", 1_000, "10000", margin="100000", leverage="1"),
        ],
        BAND_MARKS,
        cv="0.01",
        band="0.02",
        fund="10000",
        book={"depth": "100", "refill_seconds": refill_seconds},
        policy={"fund_reservation": reservation},
    )


def test_a_liquidation_order_never_fills_beyond_the_band_in_the_tick_it_is_sent() -> None:
    # A book that takes a day to refill: 200 contracts fill at t=1, and in the 7 s after only
    # 200*7/86,400 of a contract comes back: nothing more fills.
    doc = band_scenario("86400")
    _engine, result, events, probes = run(
        doc,
        lambda e: (
            [(o.remaining, o.fills, o.filled_value) for o in e.desk.orders],
            e.liquidity[0].last_price,
        ),
    )
    (started,) = of_type(events[1], LiquidationStarted)
    assert (started.account, started.contracts, started.bankruptcy_price) == ("A", 1_000, 9910.0)
    orders, last_price = probes[1]
    # 200 of 1,000 filled at a VWAP of 9,850.5 (price units of 0.000001); the last (worst) fill
    # is the band's limit, 9,751, and never below it.
    assert orders == [(800, 1, 200 * 9_850_500_000)]
    assert last_price == pytest.approx(9751.0) and last_price >= 9751.0
    assert probes[7][0] == [(800, 1, 200 * 9_850_500_000)]  # no room in the band since
    assert result["liquidations"] == []  # still working at the end
    assert result["insurance_fund"]["USDT"]["deficit_out"] == "119"


def test_the_unfilled_part_is_relisted_and_fills_as_the_book_refills() -> None:
    # Refill in 1 s: the bids are whole again each tick, so 200 more fill at each of t=2..5 at the
    # same 9,850.5. Five fills: pnl 10*(9,850.5 - 10,000) = -1,495 against the margin of 900:
    # a deficit of 595, all paid by the fund (10,000 -> 9,405).
    doc = band_scenario("1")
    _, result, _events, remaining = run(doc, lambda e: [o.remaining for o in e.desk.orders])
    assert remaining == {1: [800], 2: [600], 3: [400], 4: [200], 5: [], 6: [], 7: [], 8: []}
    (liquidation,) = result["liquidations"]
    assert liquidation == {
        "time": at(1),
        "finished": at(5),
        "account": "A",
        "symbol": "X",
        "side": "long",
        "contracts": 1_000,
        "partial": False,
        "fill_price": "9850.5",
        "bankruptcy_price": "9910",
        "surplus": "0",
        "deficit": "595",
        "covered_by_fund": "595",
        "currency": "USDT",
        "fills": 5,
    }
    assert result["insurance_fund"]["USDT"]["end"] == "9405"
    assert result["deficit"]["USDT"] == {"total": "595", "covered_by_fund": "595", "uncovered": "0"}


def test_a_slower_refill_relists_what_came_back() -> None:
    # Refill in 2 s: one second after a fill half the hole is back (1% of the 2%), so 100 contracts
    # fill each tick after the first, between 1% and 2% from the mid: VWAP 9,950*0.985 = 9,800.75.
    doc = band_scenario("2")
    _, _, _, filled = run(doc, lambda e: [(o.remaining, o.filled_value) for o in e.desk.orders])
    assert filled[1] == [(800, 200 * 9_850_500_000)]
    assert filled[2] == [(700, 200 * 9_850_500_000 + 100 * 9_800_750_000)]
    assert filled[3] == [(600, 200 * 9_850_500_000 + 200 * 9_800_750_000)]


# ----- 4. fund reservation on detection, release of what was not needed --------------------


def test_the_fund_reserves_the_worst_loss_on_detection_and_releases_the_rest() -> None:
    # Worst loss at detection: all 1,000 at the band's limit 9,751 lose 10*249 = 2,490, less the
    # margin of 900: 1,590 USDT reserved at once. Each fill's deficit of 119 is paid from the
    # reservation; what is left of it (1,590 - 5*119 = 995) is released when the order is done.
    doc = band_scenario("1", reservation=True)
    _, result, events, probes = run(
        doc,
        lambda e: (
            e.desk.reserved["USDT"],
            e.desk.fund_free("USDT"),
            e.ledger.balance(INSURANCE_FUND, "USDT"),
        ),
    )
    (started,) = of_type(events[1], LiquidationStarted)
    assert started.reserved == 1_590 * USDT
    assert probes[1] == (1_471 * USDT, (9_881 - 1_471) * USDT, 9_881 * USDT)
    assert probes[4] == (1_114 * USDT, (9_524 - 1_114) * USDT, 9_524 * USDT)
    assert probes[5] == (0, 9_405 * USDT, 9_405 * USDT)  # done: the 995 left is released
    assert result["insurance_fund"]["USDT"]["end"] == "9405"


def test_without_the_reservation_policy_nothing_is_reserved() -> None:
    _, result, events, reserved = run(band_scenario("1"), lambda e: e.desk.reserved["USDT"])
    (started,) = of_type(events[1], LiquidationStarted)
    assert started.reserved == 0
    assert set(reserved.values()) == {0}
    assert result["insurance_fund"]["USDT"]["end"] == "9405"


# ----- 3. surplus to the fund, deficit from the fund ----------------------------------------

# A: long 10 at 100 with 10 USDT isolated (10x): bankruptcy price 99; liquidated at or below
# 10*P - 990 <= 0.05*P, i.e. P <= 99.497...
TWO_SIDES = [
    position("A", "long", 10, "100", margin="10"),
    position("B", "short", 10, "100", margin="100"),
]


def test_a_fill_better_than_bankruptcy_pays_collateral_plus_pnl_into_the_fund() -> None:
    # Filled at the mark 99.4: pnl 10*(99.4 - 100) = -6; the fund gains 10 - 6 = 4 exactly.
    engine, result, _, _ = run(scenario(TWO_SIDES, [(0, "100"), (1, "99.4"), (3, "99.4")]))
    (liquidation,) = result["liquidations"]
    assert (liquidation["fill_price"], liquidation["surplus"], liquidation["deficit"]) == (
        "99.4",
        "4",
        "0",
    )
    assert engine.ledger.balance(INSURANCE_FUND, "USDT") == 4 * USDT
    assert result["insurance_fund"]["USDT"] == {
        "start": "0",
        "surplus_in": "4",
        "deficit_out": "0",
        "injections": "0",
        "end": "4",
    }
    assert result["final_balances"]["A"] == {"USDT": "0"}


@pytest.mark.parametrize("reservation", [False, True])
def test_a_fill_worse_than_bankruptcy_is_paid_by_the_fund_as_far_as_it_goes(
    reservation: bool,
) -> None:
    # A gap to 98: pnl 10*(98 - 100) = -20 against 10 of collateral, a deficit of 10. The fund of
    # 3 pays 3 (reserved on detection with the policy on: the worst loss at 98*0.99 is 19.8,
    # capped at the 3 the fund has) and never goes negative; 7 is left uncovered.
    doc = scenario(
        TWO_SIDES,
        [(0, "100"), (1, "98"), (3, "98")],
        fund="3",
        policy={"fund_reservation": reservation},
    )
    engine, result, events, fund = run(doc, lambda e: e.ledger.balance(INSURANCE_FUND, "USDT"))
    (started,) = of_type(events[1], LiquidationStarted)
    assert started.reserved == (3 * USDT if reservation else 0)
    (liquidation,) = result["liquidations"]
    assert (liquidation["deficit"], liquidation["covered_by_fund"]) == ("10", "3")
    assert set(fund.values()) == {0}
    assert engine.desk.reserved["USDT"] == 0
    assert result["deficit"]["USDT"] == {"total": "10", "covered_by_fund": "3", "uncovered": "7"}
    assert engine.uncovered[("X", "USDT")] == 7 * USDT
    assert result["insurance_fund"]["USDT"]["end"] == "0"


def test_a_loss_beyond_the_margin_at_expiry_is_a_deficit() -> None:
    # The mark stays at 100 (A is never liquidated) but the index, and so the settlement price at
    # the expiry (t=5), is 90: A's 10 long realize 10*(90 - 100) = -100 on a margin of 10. A can
    # lose only its 10; the other 90 is a deficit: the fund pays its 4, and the 86 left is
    # clawed back from B's profit of 100.
    doc = scenario(TWO_SIDES, [(0, "100"), (5, "100")], fund="4")
    doc["instruments"][0]["expiry"] = at(5)
    doc["market"]["indices"]["X"] = [[at(0), "90"], [at(5), "90"]]
    _, result, _, _ = run(doc)
    assert result["settlements"][0]["price"] == "90"
    assert result["final_balances"]["A"] == {"USDT": "0"}
    assert result["deficit"]["USDT"]["total"] == "90"
    assert result["insurance_fund"]["USDT"]["end"] == "0"
    assert result["final_balances"]["B"] == {"USDT": "114"}


# ----- 5. auto-deleveraging ------------------------------------------------------------------


def test_adl_takes_a_counterparty_down_to_zero_at_most_and_reports_the_rest_uncovered() -> None:
    # A: long 10 at 100 with 10 isolated (bankruptcy 99); the mark gaps to 98 and the fund is
    # empty, so A's 10 go to ADL at 99 against C: short 10 at 97 with 16 isolated, equity
    # 16 - 10 = 6 at the mark. Each contract closed at 99 instead of 98 costs C 1 more: C can take
    # 6 at most (5, with the engine's few minor units of headroom) and is not wiped out. It
    # realizes 5*(97 - 99) = -10 and keeps 5 open on 6 of margin (equity 1, liquidated at t=2 at
    # its bankruptcy price 97 + 6/5 = 98.2, filled at the mark, 98: surplus 1). A's other 5 go to
    # the book (the mark, 98): 5*(99 - 98) = 5 beyond A's collateral, uncovered and reported so.
    doc = scenario(
        [
            position("A", "long", 10, "100", margin="10"),
            position("C", "short", 10, "97", margin="16"),
        ],
        [(0, "100"), (1, "98"), (3, "98")],
        policy={"deficit": "adl"},
    )
    engine, result, _, _ = run(doc)
    assert [(r["account"], r["contracts"], r["price"]) for r in result["adl"]] == [("C", 5, "99")]
    liquidated = [(r["account"], r["contracts"], r["deficit"]) for r in result["liquidations"]]
    assert liquidated == [("A", 10, "5"), ("C", 5, "0")]
    assert result["final_balances"]["C"] == {"USDT": "0"}
    assert result["deficit"]["USDT"] == {"total": "5", "covered_by_fund": "0", "uncovered": "5"}
    assert engine.uncovered[("X", "USDT")] == 5 * USDT
    assert result["insurance_fund"]["USDT"]["end"] == "1"
    assert engine.ledger.balance(trader(row_of(engine, "C")), "USDT") == 0


def gap_against_isolated_short(*others: dict[str, Any]) -> dict[str, Any]:
    """A: long 10 at 100 on 10 isolated, C: short 10 at 98.5 on 3 isolated, and `others`; the mark
    gaps from 100 to 95 with the fund empty, under ADL."""
    accounts = [position("A", "long", 10, "100", margin="10"), *others]
    accounts.append(position("C", "short", 10, "98.5", margin="3"))
    return scenario(accounts, [(0, "100"), (1, "95"), (3, "95")], policy={"deficit": "adl"})


def test_adl_keeps_an_isolated_counterpartys_margin_at_or_above_zero() -> None:
    # A: long 10 at 100 with 10 isolated (bankruptcy 99); the mark gaps to 95, the fund is empty.
    # C: short 10 at 98.5 with 3 isolated, well in profit at the mark (equity 3 + 35 = 38, room
    # for 9 contracts at 99 counted at the mark). But each contract closed at 99 realizes -0.5
    # against C's entry, paid out of its margin: 5 contracts at most (6 with no headroom), not 9,
    # which would leave the margin at -1.5, a loss nobody pays once C closes. A's other 5 go to
    # the book at the mark, 95: 5*(99 - 95) = 20 beyond A's collateral, uncovered.
    doc = gap_against_isolated_short()
    _, result, _, margins = run(doc, lambda e: int(e.book.iso_margin[row_of(e, "C")]))
    assert [(r["account"], r["contracts"], r["price"]) for r in result["adl"]] == [("C", 5, "99")]
    assert margins == {1: USDT // 2, 2: USDT // 2, 3: USDT // 2}
    assert result["deficit"]["USDT"] == {"total": "20", "covered_by_fund": "0", "uncovered": "20"}


def test_adl_takes_more_from_an_isolated_counterparty_once_its_gain_nets_its_losses() -> None:
    # As above, and B: long 1 at 100 with 5 isolated, bankrupt at the mark (95). In one pass C
    # takes 5 of A's at 99 (-2.5, held back from its margin of 3) and B's 1 at 95 (+3.5): closed
    # together they net +1 to C's cash, its margin untouched. A second pass finds that room:
    # C's last 4 at 99 (-2, margin 3 -> 1). A: 9 at 99 and 1 at the mark, 14 lost on 10 of
    # collateral, 4 uncovered. C closes with 1 + 1 = 2.
    doc = gap_against_isolated_short(position("B", "long", 1, "100", margin="5"))
    _, result, _, _ = run(doc)
    adl = [(r["account"], r["contracts"], r["price"], r["against"]) for r in result["adl"]]
    assert adl == [("C", 5, "99", "A"), ("C", 1, "95", "B"), ("C", 4, "99", "A")]
    assert result["deficit"]["USDT"] == {"total": "4", "covered_by_fund": "0", "uncovered": "4"}
    assert result["final_balances"]["C"] == {"USDT": "2"}


def test_adl_closes_the_highest_ranked_opposite_position_first_at_the_bankruptcy_price() -> None:
    # A: long 6 at 100 with 6 isolated (10x): bankruptcy price 100 - 6/6 = 99. The mark gaps to 98
    # and the fund is empty, so the 6 are closed at once against the shorts, ranked at 98 by
    # PnL% * effective leverage (PnL% = upnl / entry margin, leverage = notional / equity):
    #   B: 4 at 100, margin 40 (10x): upnl 8, 8/40 = 0.2, 392/48 = 8.17 -> 1.63
    #   C: 4 at 100, margin 8 (50x):  upnl 8, 8/8 = 1.0, 392/16 = 24.5 -> 24.5
    #   D: 4 at 102, margin 40.8 (10x): upnl 16, 16/40.8 = 0.39, 392/56.8 = 6.90 -> 2.71
    # C goes first (4), then D (the 2 still needed); B is not touched.
    doc = scenario(
        [
            position("A", "long", 6, "100", margin="6"),
            position("B", "short", 4, "100", margin="40"),
            position("C", "short", 4, "100", margin="8", leverage="50"),
            position("D", "short", 4, "102", margin="40.8"),
            position("E", "long", 6, "100", margin="600", leverage="1"),
        ],
        [(0, "100"), (1, "98"), (3, "98")],
        policy={"deficit": "adl"},
    )
    engine, result, _, _ = run(doc)
    assert [(r["account"], r["contracts"], r["price"], r["against"]) for r in result["adl"]] == [
        ("C", 4, "99", "A"),
        ("D", 2, "99", "A"),
    ]
    contracts = {name: int(engine.book.contracts[row_of(engine, name)]) for name in "ABCDE"}
    assert contracts == {"A": 0, "B": 4, "C": 0, "D": 2, "E": 6}
    (liquidation,) = result["liquidations"]
    assert (liquidation["fill_price"], liquidation["deficit"]) == ("99", "0")
    assert result["deficit"]["USDT"]["uncovered"] == "0"
    assert result["clawbacks"] == []
    # At 99 C realizes 4*(100 - 99) = 4 and D 2*(102 - 99) = 6 (D keeps 2 open).
    assert result["final_balances"]["C"] == {"USDT": "12"}
    assert result["final_balances"]["D"] == {"USDT": "46.8"}
    assert result["final_balances"]["B"] == {"USDT": "40"}


def test_adl_with_no_opposite_position_left_reports_the_deficit_uncovered() -> None:
    # The only other trader is long too (A's counterparty is outside the scenario): ADL has no one
    # to close against, so the book (the mark, 98) fills A with a deficit of 20 - 10 = 10 that the
    # empty fund cannot pay. It is reported uncovered, not hidden in the rounding account.
    doc = scenario(
        [
            position("A", "long", 10, "100", margin="10"),
            position("E", "long", 10, "100", margin="1000", leverage="1"),
        ],
        [(0, "100"), (1, "98"), (3, "98")],
        policy={"deficit": "adl"},
    )
    engine, result, _, _ = run(doc)
    assert result["adl"] == []
    assert result["deficit"]["USDT"] == {"total": "10", "covered_by_fund": "0", "uncovered": "10"}
    assert result["ledger"]["rounding"] == {"USDT": "0"}
    assert engine.uncovered[("X", "USDT")] == 10 * USDT


def test_adl_of_a_position_that_is_stepping_down_counts_toward_its_step() -> None:
    # Tiers: up to 10 contracts at 0.5%, above at 50% (amount 10*(50% - 0.5%) = 4.95 contracts).
    # A1 and A2: long 10 at 100 with 10 isolated each (bankruptcy 99). C: short 20 at 95 with 300.
    # At 98 all three are flagged: A1 and A2 are taken over; C (equity 300 - 60 = 240 against
    # 98*(10 - 4.95) = 494.9) is to be stepped down by 10 to the top of tier 1. The empty fund
    # sends A1 and A2 to ADL at 99 against the only short, C: 10 + 10. The first 10 do C's step,
    # the next 10 close it; the step sends nothing more to the book (C never goes below 0).
    # C realizes 20*(95 - 99) = -80 of its 300.
    doc = scenario(
        [
            position("A1", "long", 10, "100", margin="10"),
            position("A2", "long", 10, "100", margin="10"),
            position("C", "short", 20, "95", margin="300"),
        ],
        [(0, "100"), (1, "98"), (3, "98")],
        tiers={
            "basis": "contracts",
            "levels": [
                {"max": "10", "mmr": "0.005", "max_leverage": "100"},
                {"mmr": "0.5", "max_leverage": "2"},
            ],
        },
        policy={"deficit": "adl", "partial_liquidation": True},
    )
    engine, result, _, contracts = run(doc, lambda e: e.book.contracts.tolist())
    assert [(r["account"], r["contracts"], r["price"], r["against"]) for r in result["adl"]] == [
        ("C", 10, "99", "A1"),
        ("C", 10, "99", "A2"),
    ]
    assert all(n >= 0 for tick in contracts.values() for n in tick)
    assert int(engine.book.contracts[row_of(engine, "C")]) == 0
    assert [(r["account"], r["partial"]) for r in result["liquidations"]] == [
        ("A1", False),
        ("A2", False),
    ]
    assert result["final_balances"]["C"] == {"USDT": "220"}
    assert result["deficit"]["USDT"]["total"] == "0"


def test_a_step_the_book_cannot_fill_in_the_band_reports_only_what_filled() -> None:
    # Tiers: up to 10 at 0.5%, above at 2% (amount 10*1.5% = 0.15 contracts). A: long 20 at 100
    # with 60 isolated. At 98: equity 60 - 40 = 20 <= 98*(0.4 - 0.15) = 24.5: step 10 down. The
    # book holds 2 contracts per 1%: 2 fill in the 1% band at 98*0.995 = 97.51 and the step
    # turns into a takeover of the 18 left. The step reports the 2 it filled at 97.51.
    doc = scenario(
        [
            position("A", "long", 20, "100", margin="60"),
            position("B", "short", 20, "100", margin="2000", leverage="1"),
        ],
        [(0, "100"), (1, "98"), (2, "98")],
        tiers={
            "basis": "contracts",
            "levels": [
                {"max": "10", "mmr": "0.005", "max_leverage": "100"},
                {"mmr": "0.02", "max_leverage": "50"},
            ],
        },
        book={"depth": "2", "refill_seconds": "86400"},
        fund="100",
        policy={"partial_liquidation": True},
    )
    engine, result, events, _ = run(doc)
    step = result["liquidations"][0]
    assert (step["time"], step["partial"], step["contracts"], step["fill_price"]) == (
        at(1),
        True,
        2,
        "97.51",
    )
    (started,) = of_type(events[1], LiquidationStarted)
    # The margin left after the step's 2*(97.51 - 100) = -4.98: 55.02, taken with the 18.
    assert (started.contracts, started.partial, started.bankruptcy_price) == (18, False, 97.0)
    assert int(engine.book.contracts[row_of(engine, "A")]) == 0
    assert engine.desk.orders[0].collateral == 55_020_000


# ----- operator controls: force-reduce through the liquidation path --------------------------


def force_reduce_scenario(*approvals: tuple[int, str]) -> dict[str, Any]:
    # A: cross long 10 at 100 on a balance of 100; the mark rises to 102 and stays there.
    actions = [
        {
            "at": at(1),
            "id": "cut",
            "operator": "alice",
            "action": "force_reduce",
            "account": "A",
            "symbol": "X",
            "contracts": 3,
            "reason": "concentration",
        }
    ]
    actions += [
        {"at": at(seconds), "operator": name, "action": "approve", "request": "cut", "reason": "ok"}
        for seconds, name in approvals
    ]
    return scenario(
        [
            position("A", "long", 10, "100", balance="100"),
            position("B", "short", 10, "100", margin="100"),
        ],
        [(0, "100"), (1, "102"), (6, "102")],
        actions=actions,
    )


def test_force_reduce_waits_for_a_supervisor_and_refuses_self_approval_and_a_viewer() -> None:
    doc = force_reduce_scenario((2, "alice"), (3, "vic"), (4, "bob"), (5, "carol"))
    _engine, result, events, contracts = run(doc, lambda e: int(e.book.contracts[row_of(e, "A")]))
    assert [(r["time"], r["operator"], r["reason"]) for r in result["refused"]] == [
        (at(2), "alice", "self-approval: the approver must be a different person"),
        (at(3), "vic", "role viewer cannot approve"),
        (at(4), "bob", "approving needs the supervisor role, not operator"),
    ]
    # Nothing happens before the supervisor approves; then 3 are sold at the mark, 102.
    assert contracts == {1: 10, 2: 10, 3: 10, 4: 10, 5: 7, 6: 7}
    (recorded,) = of_type(events[1], ActionRecorded)
    assert recorded.detail == "request cut awaits a supervisor"
    (approved,) = of_type(events[5], ActionRecorded)
    assert approved.operator == "carol" and approved.request == "cut"
    (reduced,) = result["liquidations"]
    assert (reduced["time"], reduced["partial"], reduced["contracts"], reduced["fill_price"]) == (
        at(5),
        True,
        3,
        "102",
    )
    # The trader realizes 3*(102 - 100) = 6 on the reduced part; the fund is not involved.
    assert result["final_balances"]["A"] == {"USDT": "106"}
    assert result["insurance_fund"]["USDT"]["end"] == "0"


def test_force_reduce_never_approved_changes_nothing() -> None:
    engine, result, events, _ = run(force_reduce_scenario((2, "alice")))
    assert int(engine.book.contracts[row_of(engine, "A")]) == 10
    assert result["liquidations"] == []
    assert [e.action for tick in events.values() for e in of_type(tick, ActionRefused)] == [
        "approve"
    ]
    assert engine.controls.requests["cut"].status == "pending"


def test_two_force_reduces_of_one_position_never_sell_more_than_it_holds() -> None:
    # A thin book (1 contract per 1%, whole again each second) sells 1 contract a tick at 99.5.
    # Two approved force-reduces of 8 each on a position of 10: together they sell the 10 and stop.
    actions = []
    for seconds, name in ((1, "cut-1"), (2, "cut-2")):
        actions += [
            {
                "at": at(seconds),
                "id": name,
                "operator": "alice",
                "action": "force_reduce",
                "account": "A",
                "symbol": "X",
                "contracts": 8,
                "reason": "concentration",
            },
            {
                "at": at(seconds),
                "operator": "carol",
                "action": "approve",
                "request": name,
                "reason": "ok",
            },
        ]
    doc = scenario(
        [
            position("A", "long", 10, "100", balance="1000"),
            position("B", "short", 10, "100", margin="1000", leverage="1"),
        ],
        [(0, "100"), (20, "100")],
        book={"depth": "1", "refill_seconds": "1"},
        actions=actions,
    )
    engine, result, _, contracts = run(doc, lambda e: int(e.book.contracts[row_of(e, "A")]))
    assert min(contracts.values()) == 0 and contracts[20] == 0
    assert engine.desk.orders == []
    reductions = result["liquidations"]
    assert sum(r["contracts"] for r in reductions) == 10
    assert {r["fill_price"] for r in reductions} == {"99.5"}
    # 10*(99.5 - 100) = -5 realized.
    assert result["final_balances"]["A"] == {"USDT": "995"}


def test_a_force_reduce_that_would_close_below_zero_under_adl_is_taken_over_and_deleveraged() -> (
    None
):
    # A: cross long 10 at 100 on 6 (equity 6 > 0.5% of 1000 = 5: never liquidated). A thin book
    # (5 contracts per 1%, band 2%) would sell the 10 at 99 on average, 10*(99 - 100) = -10, four
    # beyond A's 6: an uncovered deficit. Under ADL the force-reduce closing A's last contracts
    # sells only down to the price leaving A at zero (99.4, one unit inside: 99.41): 2 at 99.8.
    # The 8 left are taken over at A's bankruptcy price 100 - (6 - 0.4)/8 = 99.3 and, the fund
    # being empty, closed against B at once: B realizes 8*(100 - 99.3) = 5.6. No deficit.
    doc = scenario(
        [
            position("A", "long", 10, "100", balance="6"),
            position("B", "short", 10, "100", margin="100"),
        ],
        [(0, "100"), (4, "100")],
        book={"depth": "5", "refill_seconds": "86400"},
        band="0.02",
        policy={"deficit": "adl"},
        actions=[
            {
                "at": at(1),
                "id": "cut",
                "operator": "alice",
                "action": "force_reduce",
                "account": "A",
                "symbol": "X",
                "contracts": 10,
                "reason": "concentration",
            },
            {
                "at": at(1),
                "operator": "carol",
                "action": "approve",
                "request": "cut",
                "reason": "ok",
            },
        ],
    )
    engine, result, _, _ = run(doc)
    liquidated = [(r["partial"], r["contracts"], r["fill_price"]) for r in result["liquidations"]]
    assert liquidated == [(True, 2, "99.8"), (False, 8, "99.3")]
    assert [(r["account"], r["contracts"], r["price"]) for r in result["adl"]] == [("B", 8, "99.3")]
    assert result["deficit"]["USDT"] == {"total": "0", "covered_by_fund": "0", "uncovered": "0"}
    assert result["final_balances"] == {"A": {"USDT": "0"}, "B": {"USDT": "105.6"}}
    assert int(engine.book.contracts[row_of(engine, "A")]) == 0


def test_a_cross_takeover_takes_a_position_being_force_reduced_too() -> None:
    # A: cross, 30 USDT, long 10 X and long 10 Y at 100. A force-reduce of 5 Y is approved at t=1;
    # Y's book (1 contract per 1%, refilling over a day) fills 1 at 99.5 and leaves 4 working.
    # At t=3 X gaps to 97: equity 30 - 0.5 - 30 = -0.5, the account is liquidated. Its cash is
    # taken, so both positions are taken over (the force-reduce is cut), not X alone.
    doc = scenario(
        [
            position("A", "long", 10, "100", balance="30"),
            position("B", "short", 10, "100", margin="1000", leverage="1"),
        ],
        [(0, "100"), (2, "100"), (3, "97"), (5, "97")],
        fund="1000",
        actions=[
            {
                "at": at(1),
                "id": "cut",
                "operator": "alice",
                "action": "force_reduce",
                "account": "A",
                "symbol": "Y",
                "contracts": 5,
                "reason": "concentration",
            },
            {
                "at": at(1),
                "operator": "carol",
                "action": "approve",
                "request": "cut",
                "reason": "ok",
            },
        ],
    )
    y = json.loads(json.dumps(doc["instruments"][0]))
    y.update(symbol="Y", family="Y", index="Y")
    doc["instruments"].append(y)
    doc["market"]["indices"]["Y"] = [[at(0), "100"], [at(5), "100"]]
    doc["market"]["marks"]["Y"] = doc["market"]["indices"]["Y"]
    doc["market"]["books"] = {"Y": {"depth": "1", "refill_seconds": "86400"}}
    y_long = {
        "symbol": "Y",
        "side": "long",
        "contracts": 10,
        "entry_price": "100",
        "margin_mode": "cross",
        "leverage": "10",
    }
    doc["accounts"][0]["positions"].append(y_long)
    doc["accounts"][1]["positions"].append(
        {**y_long, "side": "short", "margin_mode": "isolated", "margin": "1000", "leverage": "1"}
    )
    engine, _, events, contracts = run(
        doc, lambda e: e.book.contracts[e.book.account == row_of(e, "A")].tolist()
    )
    assert contracts[2] == [10, 9]
    assert contracts[3] == [0, 0]
    assert sorted(e.symbol for e in of_type(events[3], LiquidationStarted)) == ["X", "Y"]
    a = row_of(engine, "A")
    assert not [o for o in engine.desk.orders if o.kind == "reduce" and o.row in (a, a + 1)]
    assert int(engine.book.balances[a].sum()) == 0


def test_cross_cash_is_split_exactly_by_largest_remainder() -> None:
    # Shares follow the weights by largest remainder (ties to the first) and always add up,
    # beyond what float weights can carry (2**62 + 1 over weights 1 : 2**40 : 3).
    assert split_exact(10, np.array([1, 1, 1])).tolist() == [4, 3, 3]
    assert split_exact(-10, np.array([1, 1, 1])).tolist() == [-4, -3, -3]
    assert split_exact(7, np.array([0, 0])).tolist() == [7, 0]
    weights = np.array([1, 2**40, 3], dtype=np.int64)
    total = 2**62 + 1
    shares = split_exact(total, weights)
    assert sum(shares.tolist()) == total
    exact = [Fraction(total * int(w), int(weights.sum())) for w in weights]
    assert all(abs(share - part) < 1 for share, part in zip(shares.tolist(), exact, strict=True))


# ----- clawback approval ---------------------------------------------------------------------


def two_traders_with_required_approval() -> dict[str, Any]:
    """Seed 003's two-user example (assets/scenarios/two-traders.json): a deficit of 8 shared by
    B's profit of 9 at the expiry 01:00:01; here the clawback needs a supervisor."""
    doc = json.loads((ASSETS / "scenarios" / "two-traders.json").read_text())
    doc["policy"]["clawback_approval"] = "required"
    for path in (doc["market"]["indices"]["DEMO-USD"], doc["market"]["marks"]["DEMO-USD-180731"]):
        path.append(["2018-07-31T01:00:05Z", "0.10"])
    doc["operators"] = [
        {"name": "alice", "role": "operator"},
        {"name": "carol", "role": "supervisor"},
    ]
    approve = {"action": "approve_clawback", "family": "DEMO-USD", "currency": "BTC"}
    doc["actions"] = [
        {"at": "2018-07-31T01:00:02Z", "operator": "alice", "reason": "looks right", **approve},
        {"at": "2018-07-31T01:00:03Z", "operator": "carol", "reason": "checked", **approve},
    ]
    return doc


def test_a_required_clawback_stays_pending_until_a_supervisor_approves_it() -> None:
    doc = two_traders_with_required_approval()
    engine = Engine(parse_scenario(doc))
    b = engine.book.account_index["B"]
    collector = ResultCollector(engine)
    seen: list[tuple[str, list[str], int]] = []
    for tick_events in engine.run():
        collector.feed(tick_events)
        if engine.now.hour == 1:
            statuses = [c["status"] for c in collector.result()["clawbacks"]]
            seen.append(
                (engine.now.strftime("%H:%M:%S"), statuses, engine.ledger.balance(trader(b), "BTC"))
            )
    # B: margin 1 + profit 9 = 10 BTC after the settlement; 8 of it is taken only on approval
    # (alice, an operator, cannot approve it).
    assert seen[:4] == [
        ("01:00:00", [], 1 * 10**8),
        ("01:00:01", ["pending"], 10 * 10**8),
        ("01:00:02", ["pending"], 10 * 10**8),
        ("01:00:03", ["applied"], 2 * 10**8),
    ]
    result = collector.result()
    (applied,) = result["clawbacks"]  # the decision replaces the pending entry
    assert applied["allocations"] == [{"account": "B", "profit": "9", "amount": "8"}]
    assert applied["decided_at"] is not None
    assert [(r["operator"], r["action"]) for r in result["refused"]] == [
        ("alice", "approve_clawback")
    ]
    assert engine.settlements.pending == {}
    assert result["final_balances"]["B"] == {"BTC": "2"}
    assert result["ledger"]["clearing"] == {"BTC": "0"}


def test_an_unapproved_clawback_moves_no_money() -> None:
    doc = two_traders_with_required_approval()
    doc["actions"] = doc["actions"][:1]
    engine, result, _, _ = run(doc)
    (clawback,) = result["clawbacks"]
    assert clawback["status"] == "pending" and clawback["deficit"] == "8"
    assert result["final_balances"]["B"] == {"BTC": "10"}
    assert ("DEMO-USD", "BTC") in engine.settlements.pending
    # The clearing house is short the 8 until the clawback is applied.
    assert result["ledger"]["clearing"] == {"BTC": "-8"}
    assert Decimal(result["insurance_fund"]["BTC"]["end"]) == 0
