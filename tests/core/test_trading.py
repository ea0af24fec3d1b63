"""Trades as scenario input (`x-trades`): parsing errors naming the field, opening, adding at an
exact average entry, reducing and flipping, refusals that change nothing, and the volume log.

Unless a test says otherwise: one linear perpetual `X` of 1 unit settled in USDT (6 decimals),
tick 0.01, its mark pinned to 100, one tier at mmr 0.5% up to 100x; no book (fills at the mark).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from core.engine.facade import Engine
from core.engine.ledger import trader
from core.engine.trading import TradeApplied, TradeRefused, average_entry_units, parse_trades
from core.model.errors import InputError
from core.risk.pnl import realized_pnl_minor
from core.scenario.parse import parse_scenario

USDT = 10**6


def at(seconds: int) -> str:
    return f"2018-07-31T00:{seconds // 60:02d}:{seconds % 60:02d}Z"


def doc(
    trades: list[dict[str, Any]],
    *,
    accounts: list[dict[str, Any]] | None = None,
    marks: list[tuple[int, str]] | None = None,
    actions: list[dict[str, Any]] | None = None,
    max_leverage: str = "100",
) -> dict[str, Any]:
    path = [[at(s), p] for s, p in (marks or [(0, "100"), (20, "100")])]
    out: dict[str, Any] = {
        "format": "risk-scenario/1",
        "name": "trades",
        "start": at(0),
        "currencies": {"USDT": 6},
        "instruments": [
            {
                "symbol": "X",
                "type": "linear",
                "contract_value": "1",
                "settle_currency": "USDT",
                "tick_size": "0.01",
                "index": "X",
                "tiers": {
                    "basis": "contracts",
                    "levels": [{"mmr": "0.005", "max_leverage": max_leverage}],
                },
            }
        ],
        "insurance_fund": {"USDT": "1000"},
        "accounts": accounts
        if accounts is not None
        else [
            {"id": "A", "balances": {"USDT": "1000"}},
            {"id": "B", "balances": {"USDT": "1000"}},
        ],
        "market": {"indices": {"X": path}, "marks": {"X": path}},
        "policy": {"settlement": {"every": "expiry"}},
        "operators": [
            {"name": "alice", "role": "operator"},
            {"name": "carol", "role": "supervisor"},
        ],
        "x-trades": trades,
    }
    if actions:
        out["actions"] = actions
    return out


def trade(
    seconds: int, account: str, side: str, contracts: int, price: str, **extra: Any
) -> dict[str, Any]:
    return {
        "at": at(seconds),
        "account": account,
        "symbol": "X",
        "side": side,
        "contracts": contracts,
        "price": price,
        **extra,
    }


def run(document: dict[str, Any], ticks: int | None = None) -> tuple[Engine, list[Any]]:
    engine = Engine(parse_scenario(document))
    events: list[Any] = []
    while not engine.finished and (ticks is None or engine.tick < ticks):
        events += engine.step()
    return engine, events


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def open_row(engine: Engine, account: str) -> int:
    a = engine.book.account_index[account]
    (row,) = np.flatnonzero((engine.book.account == a) & (engine.book.contracts > 0)).tolist()
    return row


# ----- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"contracts": 0}, "x-trades[1].contracts", "contracts > 0"),
        ({"contracts": 1.5}, "x-trades[1].contracts", "whole number"),
        ({"contracts": 10**13}, "x-trades[1].contracts", "at most"),
        ({"price": "100.005"}, "x-trades[1].price", "tick size 0.01"),
        ({"price": 100.5}, "x-trades[1].price", "decimal string"),
        ({"price": "-1"}, "x-trades[1].price", "> 0"),
        ({"side": "long"}, "x-trades[1].side", '"buy", "sell"'),
        ({"symbol": "Y"}, "x-trades[1].symbol", "instrument symbol"),
        ({"margin": "1.0000001"}, "x-trades[1].margin", "at most 6 decimals"),
        ({"leverage": "0"}, "x-trades[1].leverage", "> 0"),
        ({"at": at(0).replace("Z", "+02:00")}, "x-trades[1].at", "UTC"),
        ({"at": "2018-07-31T01:00:00Z"}, "x-trades[1].at", "within the run"),
        ({"colour": "red"}, "x-trades[1].colour", "unknown field"),
        ({"account": ""}, "x-trades[1].account", "non-empty"),
    ],
)
def test_a_bad_trade_is_an_input_error_naming_its_field(
    change: dict[str, Any], field: str, words: str
) -> None:
    second = {**trade(2, "A", "buy", 1, "100"), **change}
    document = doc([trade(1, "A", "buy", 1, "100"), second])
    with pytest.raises(InputError) as error:
        parse_trades(parse_scenario(document))
    assert error.value.field == field
    assert words in error.value.message
    with pytest.raises(InputError):
        Engine(parse_scenario(document))  # the engine refuses to start on it too


def test_trades_out_of_time_order_and_a_missing_field_are_named() -> None:
    document = doc([trade(5, "A", "buy", 1, "100"), trade(4, "A", "buy", 1, "100")])
    with pytest.raises(InputError, match="time order") as error:
        parse_trades(parse_scenario(document))
    assert error.value.field == "x-trades[1].at"
    missing = trade(5, "A", "buy", 1, "100")
    del missing["price"]
    with pytest.raises(InputError) as error:
        parse_trades(parse_scenario(doc([missing])))
    assert error.value.field == "x-trades[0].price"
    with pytest.raises(InputError) as error:
        parse_trades(parse_scenario({**doc([]), "x-trades": {"at": at(1)}}))
    assert error.value.field == "x-trades"


def test_x_field_inside_a_trade_passes_and_trades_parse_to_exact_values() -> None:
    (parsed,) = parse_trades(
        parse_scenario(doc([trade(3, "A", "sell", "7", "99.5", margin="10.5", **{"x-note": 1})]))
    )
    assert (parsed.index, parsed.side, parsed.contracts) == (0, "sell", 7)
    assert parsed.price == Decimal("99.5") and parsed.margin == Decimal("10.5")


# ----- the exact entry price -------------------------------------------------------------------


def test_linear_entry_is_the_contract_weighted_mean_rounded_half_even() -> None:
    # 10 at 100.00 + 5 at 101.00 = 100.333... -> 100.333333 (units of 1e-6)
    assert average_entry_units(False, 10, 100_000_000, 5, 101_000_000) == 100_333_333
    # 1 at 1e-6 + 1 at 2e-6: 1.5 units, the tie goes to the even 2
    assert average_entry_units(False, 1, 1, 1, 2) == 2
    assert average_entry_units(False, 1, 2, 1, 3) == 2


def test_inverse_entry_is_the_harmonic_mean_so_the_pnl_of_the_parts_adds_up() -> None:
    # 100 at 8000 + 300 at 8400: 400 / (100/8000 + 300/8400) = 8296.296296...
    exact = Fraction(400) / (Fraction(100, 8000) + Fraction(300, 8400))
    units = average_entry_units(True, 100, 8_000_000_000, 300, 8_400_000_000)
    assert units == round(exact * 10**6)
    # Closing the whole at 7000 realizes what closing both parts would (to a satoshi or so).
    from core.model.instruments import Instrument, TierTable

    inst = Instrument(
        "BTC-USD", "inverse", Decimal(100), "BTC", Decimal("0.01"), None, "BTC-USD", "BTC-USD",
        TierTable.build("contracts", [(None, Decimal("0.01"), Decimal(20), None)]),
    )  # fmt: skip
    whole = realized_pnl_minor(inst, 8, 1, 400, units, 7_000_000_000)
    parts = realized_pnl_minor(inst, 8, 1, 100, 8_000_000_000, 7_000_000_000) + realized_pnl_minor(
        inst, 8, 1, 300, 8_400_000_000, 7_000_000_000
    )
    assert abs(whole - parts) <= 2


# ----- applying ------------------------------------------------------------------------------


def test_opening_isolated_moves_cash_to_margin_inside_the_traders_ledger_account() -> None:
    engine, events = run(doc([trade(1, "A", "buy", 10, "100", margin="100")]), ticks=1)
    (done,) = of_type(events, TradeApplied)
    assert (done.position, done.entry_price, done.realized) == (10, Decimal("100"), 0)
    row = open_row(engine, "A")
    book = engine.book
    assert book.isolated[row] and int(book.iso_margin[row]) == 100 * USDT
    assert int(book.balances[book.account_index["A"], 0]) == 900 * USDT
    assert float(book.leverage[row]) == 10.0  # derived: notional 1,000 over margin 100
    # The trader's ledger balance holds cash and isolated margin together: unchanged.
    assert engine.ledger.balance(trader(book.account_index["A"]), "USDT") == 1000 * USDT
    assert engine.trading.traded("A", "X") == 10


def test_adding_averages_the_entry_and_reducing_realizes_through_the_engine() -> None:
    trades = [
        trade(1, "A", "buy", 10, "100", margin="100"),
        trade(2, "A", "buy", 5, "103", margin="50"),
        trade(3, "A", "sell", 6, "104"),
    ]
    engine, events = run(doc(trades), ticks=3)
    applied = of_type(events, TradeApplied)
    assert [(e.position, e.entry_price) for e in applied] == [
        (10, Decimal("100")),
        (15, Decimal("101")),
        (9, Decimal("101")),
    ]
    # 6 * (104 - 101) = 18 realized into cash; the isolated margin stays with the 9 left.
    assert applied[-1].realized == 18 * USDT
    book, a = engine.book, engine.book.account_index["A"]
    assert int(book.balances[a, 0]) == (850 + 18) * USDT
    assert int(book.iso_margin[open_row(engine, "A")]) == 150 * USDT
    assert engine.ledger.balance(trader(a), "USDT") == 1018 * USDT
    engine.ledger.check()


def test_closing_an_isolated_position_returns_its_margin_and_a_flip_opens_the_rest_cross() -> None:
    trades = [
        trade(1, "A", "buy", 10, "100", margin="100"),
        trade(2, "A", "sell", 10, "98"),  # closes: loses 20, the margin (80 left) returns
        trade(3, "A", "sell", 4, "98", leverage="10"),  # opens a cross short
        trade(4, "A", "buy", 10, "97"),  # closes the short (+4) and opens a cross long of 6
    ]
    engine, events = run(doc(trades), ticks=4)
    applied = of_type(events, TradeApplied)
    assert [e.position for e in applied] == [10, 0, -4, 6]
    assert applied[1].realized == -20 * USDT and applied[1].entry_price is None
    assert applied[3].realized == 4 * USDT
    book, a = engine.book, engine.book.account_index["A"]
    row = open_row(engine, "A")
    assert not book.isolated[row] and int(book.side[row]) == 1
    assert int(book.entry_units[row]) == 97 * 10**6  # price units of 1e-6
    assert int(book.balances[a, 0]) == (1000 - 20 + 4) * USDT
    # The rows were reused: A holds one row in X however often it opened and closed.
    assert int(np.sum(book.account == a)) == 1


def test_a_new_position_gets_a_row_and_is_liquidated_like_any_other() -> None:
    # A has no position; it opens 100 long at 100 with 200 of margin (50x); the mark falls to 98.
    trades = [trade(1, "A", "buy", 100, "100", margin="200")]
    engine, events = run(doc(trades, marks=[(0, "100"), (1, "100"), (3, "98"), (6, "98")]))
    assert len(engine.book) == 1
    started = [e for e in events if type(e).__name__ == "LiquidationStarted"]
    assert [(e.account, e.contracts) for e in started] == [("A", 100)]
    engine.ledger.check()


def test_the_log_keeps_each_change_for_surveillance() -> None:
    trades = [trade(1, "A", "buy", 10, "100"), trade(2, "A", "sell", 4, "100")]
    engine, _ = run(doc(trades), ticks=2)
    keys, changes = engine.trading.changes_since(0)
    a = engine.book.account_index["A"]
    assert keys.tolist() == [a, a] and changes.tolist() == [10.0, -4.0]
    assert engine.trading.changes_since(2)[1].tolist() == [-4.0]
    assert engine.trading.traded("A", "X") == 14 and engine.trading.traded("B", "X") == 0


# ----- refusals ------------------------------------------------------------------------------


def book_state(engine: Engine) -> tuple[bytes, ...]:
    book = engine.book
    columns = (book.contracts, book.entry_units, book.iso_margin, book.balances, book.side)
    return (*(c.tobytes() for c in columns), engine.ledger.state_digest().encode())


@pytest.mark.parametrize(
    ("refused", "code"),
    [
        (trade(2, "nobody", "buy", 1, "100"), "unknown_account"),
        (trade(2, "A", "buy", 10, "100", margin="1001"), "insufficient_cash"),
        (trade(2, "A", "buy", 1000, "100", leverage="10"), "insufficient_cash"),
        (trade(2, "A", "buy", 10, "100", margin="5", leverage="100"), "initial_margin"),
        (trade(2, "A", "buy", 10, "100", leverage="101"), "leverage"),
    ],
)
def test_a_refused_trade_is_recorded_and_changes_nothing(
    refused: dict[str, Any], code: str
) -> None:
    # 1,000 contracts at 100 cross at 10x need 10,000 of collateral; A has 1,000. 10 contracts at
    # 100x need 10 of initial margin; 5 is short.
    without, _ = run(doc([trade(1, "B", "buy", 1, "100")]), ticks=2)
    engine, events = run(doc([trade(1, "B", "buy", 1, "100"), refused]), ticks=2)
    (refusal,) = of_type(events, TradeRefused)
    assert refusal.code == code and refusal.trade == 1 and refusal.reason
    assert [e.trade for e in of_type(events, TradeApplied)] == [0]
    assert book_state(engine) == book_state(without)


def test_margin_on_a_cross_position_and_on_a_pure_reduction_is_refused() -> None:
    trades = [
        trade(1, "A", "buy", 10, "100"),
        trade(2, "A", "buy", 10, "100", margin="10"),
        trade(3, "A", "sell", 5, "100", margin="10"),
    ]
    _, events = run(doc(trades), ticks=3)
    assert [e.code for e in of_type(events, TradeRefused)] == ["margin_mode", "margin_on_reduce"]


def restricted(action: str, trades: list[dict[str, Any]]) -> list[Any]:
    actions = [{"at": at(2), "operator": "alice", "action": action, "account": "A", "reason": "r"}]
    _, events = run(doc(trades, actions=actions))
    return events


def test_a_frozen_account_cannot_trade_at_all() -> None:
    trades = [
        trade(1, "A", "buy", 10, "100"),
        trade(3, "A", "buy", 1, "100"),
        trade(4, "A", "sell", 1, "100"),
        trade(5, "A", "sell", 20, "100"),
    ]
    events = restricted("freeze", trades)
    assert [e.code for e in of_type(events, TradeRefused)] == ["frozen"] * 3
    assert [e.position for e in of_type(events, TradeApplied)] == [10]


def test_reduce_only_refuses_opening_and_increasing_but_lets_the_account_reduce() -> None:
    trades = [
        trade(1, "A", "buy", 10, "100"),
        trade(3, "A", "buy", 1, "100"),  # increase: refused
        trade(4, "A", "sell", 4, "100"),  # reduce: done
        trade(5, "A", "sell", 10, "100"),  # would flip to a short of 4: refused whole
        trade(6, "A", "sell", 6, "100"),  # closes: done
        trade(7, "A", "sell", 1, "100"),  # opens a short: refused
    ]
    events = restricted("restrict", trades)
    assert [(e.trade, e.code) for e in of_type(events, TradeRefused)] == [
        (1, "reduce_only"),
        (3, "reduce_only"),
        (5, "reduce_only"),
    ]
    assert [e.position for e in of_type(events, TradeApplied)] == [10, 6, 0]


def test_same_trades_same_state_hash_and_a_trade_changes_it() -> None:
    trades = [trade(1, "A", "buy", 10, "100"), trade(2, "A", "sell", 3, "101")]
    first, _ = run(doc(trades))
    again, _ = run(doc(copy.deepcopy(trades)))
    assert first.state_hash() == again.state_hash()
    fewer, _ = run(doc(trades[:1]))
    assert fewer.state_hash() != first.state_hash()
