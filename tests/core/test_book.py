"""The order-book depth model and the fill-at-mark fallback (core.market.depth)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from core.market.depth import BookState, DepthBook, FillAtMark, band_limit, liquidity_for
from core.model.scenario_values import BookSpec

MID = 7480.0
DEPTH = 50_000.0  # contracts per 1% from mid, each side


def fresh_book(refill_seconds: float = 60.0) -> DepthBook:
    return DepthBook(DEPTH, refill_seconds)


def test_sell_moves_price_by_k_over_depth_percent_and_vwap_is_the_midpoint() -> None:
    # 20,000 contracts into 50,000 per 1%: the bids are eaten 0.4% deep, 7480 -> 7450.08; the
    # density is uniform in price, so the VWAP is the middle of the slice, 0.2% down: 7465.04.
    book = fresh_book()
    fill = book.execute("sell", 20_000, limit_price=0.0, mid=MID)
    assert fill.contracts_filled == 20_000 and fill.contracts_unfilled == 0
    assert fill.worst_price == pytest.approx(7450.08, abs=1e-9)
    assert fill.last_price == fill.worst_price
    assert fill.average_price == pytest.approx(7465.04, abs=1e-9)
    assert book.best_bid(MID) == pytest.approx(7450.08, abs=1e-9)
    assert book.best_ask(MID) == MID  # the other side is untouched
    assert book.mid_after_impact(MID) == pytest.approx((7450.08 + 7480.0) / 2, abs=1e-9)
    assert book.last_price == fill.last_price


def test_a_second_sell_continues_from_where_the_first_stopped() -> None:
    book = fresh_book()
    book.execute("sell", 20_000, 0.0, MID)
    fill = book.execute("sell", 20_000, 0.0, MID)  # the slice from 0.4% to 0.8%
    assert fill.average_price == pytest.approx(MID * (1 - 0.006), abs=1e-9)
    assert fill.worst_price == pytest.approx(MID * (1 - 0.008), abs=1e-9)


def test_buy_is_the_mirror_image() -> None:
    book = fresh_book()
    fill = book.execute("buy", 25_000, limit_price=math.inf, mid=MID)
    assert fill.contracts_filled == 25_000
    assert fill.worst_price == pytest.approx(MID * 1.005, abs=1e-9)
    assert fill.average_price == pytest.approx(MID * 1.0025, abs=1e-9)
    assert book.best_ask(MID) == pytest.approx(MID * 1.005, abs=1e-9)
    assert book.best_bid(MID) == MID


def test_limit_price_stops_the_fill() -> None:
    # A liquidation sell limited to 0.2% below mid finds only 10,000 of its 20,000 contracts.
    book = fresh_book()
    limit = MID * (1 - 0.002)
    fill = book.execute("sell", 20_000, limit_price=limit, mid=MID)
    assert fill.contracts_filled == 10_000
    assert fill.contracts_unfilled == 10_000
    assert fill.worst_price >= limit
    assert fill.worst_price == pytest.approx(limit, abs=1e-9)
    assert fill.average_price == pytest.approx(MID * (1 - 0.001), abs=1e-9)
    # The book is now at the limit: nothing more at that price, the touch is reported.
    again = book.execute("sell", 5_000, limit_price=limit, mid=MID)
    assert again.contracts_filled == 0
    assert again.average_price == pytest.approx(book.best_bid(MID))


def test_partial_fill_counts_whole_contracts_only() -> None:
    book = DepthBook(depth=3.0, refill_seconds=60.0)  # 300 contracts per unit of price fraction
    fill = book.execute("sell", 10, limit_price=100.0 * (1 - 0.0105), mid=100.0)
    assert fill.contracts_filled == 3  # 3.15 available: floor
    assert fill.worst_price == pytest.approx(99.0)
    assert book.bid_consumed == pytest.approx(0.01)  # the 0.15 left stays in the book


def test_a_limit_better_than_the_touch_fills_nothing_and_changes_nothing() -> None:
    book = fresh_book()
    before = book.snapshot()
    fill = book.execute("sell", 100, limit_price=MID * 1.001, mid=MID)
    assert fill.contracts_filled == 0
    assert fill.worst_price == MID
    assert book.snapshot() == before


def test_the_bids_end_at_price_zero() -> None:
    book = DepthBook(depth=1.0, refill_seconds=60.0)  # 100 contracts between mid and 0
    fill = book.execute("sell", 150, limit_price=0.0, mid=100.0)
    assert fill.contracts_filled == 100
    assert fill.average_price == pytest.approx(50.0)
    assert fill.worst_price == pytest.approx(0.0)


def test_refill_restores_liquidity_linearly_over_refill_seconds() -> None:
    book = fresh_book(refill_seconds=60.0)
    book.execute("sell", 20_000, 0.0, MID)
    book.refill(30.0)
    assert book.bid_consumed == pytest.approx(0.002)  # half way back after half the time
    for _ in range(30):
        book.refill(1.0)
    assert book.bid_consumed == 0.0
    assert book.best_bid(MID) == MID
    assert book.execute("sell", 20_000, 0.0, MID).average_price == pytest.approx(7465.04)


def test_a_new_fill_restarts_the_refill_clock() -> None:
    book = fresh_book(refill_seconds=60.0)
    book.execute("sell", 20_000, 0.0, MID)
    book.refill(30.0)  # 0.2% still missing
    book.execute("sell", 10_000, 0.0, MID)  # eaten to 0.4% again, 60 s to come back
    book.refill(59.0)
    assert book.bid_consumed == pytest.approx(0.004 / 60)
    book.refill(1.0)
    assert book.bid_consumed == 0.0


def test_zero_refill_seconds_refills_on_the_next_step() -> None:
    book = fresh_book(refill_seconds=0.0)
    book.execute("buy", 1_000, math.inf, MID)
    book.refill(0.0)
    assert book.ask_consumed > 0
    book.refill(1.0)
    assert book.ask_consumed == 0.0


def test_snapshot_restores_the_same_book() -> None:
    book = fresh_book()
    book.execute("sell", 12_345, 0.0, MID)
    book.refill(7.0)
    state = book.snapshot()
    assert isinstance(state, BookState)
    copy = fresh_book()
    copy.restore(state)
    assert copy.execute("sell", 100, 0.0, MID) == book.execute("sell", 100, 0.0, MID)


def test_depth_profile() -> None:
    book = fresh_book()
    book.execute("sell", 25_000, 0.0, MID)  # bids eaten 0.5% deep
    prices, cumulative = book.depth_profile(MID, levels=4, span=0.01)
    assert np.allclose(prices, MID * (1 + np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4]) * 0.0025))
    assert np.allclose(cumulative, [25_000, 12_500, 0, 0, 0, 12_500, 25_000, 37_500, 50_000])


def test_orders_are_validated() -> None:
    book = fresh_book()
    with pytest.raises(ValueError, match="side"):
        book.execute("short", 1, 0.0, MID)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        book.execute("sell", 1.5, 0.0, MID)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mid"):
        book.execute("sell", 1, 0.0, math.nan)
    with pytest.raises(ValueError, match="positive"):
        DepthBook(0.0, 60.0)


def test_fill_at_mark_fills_everything_at_the_given_price() -> None:
    at_mark = FillAtMark()
    fill = at_mark.execute(
        "sell", 4_168_515, limit_price=band_limit("sell", 7000.0, Decimal("0.01")), mid=7000.0
    )
    assert fill.contracts_filled == 4_168_515
    assert fill.average_price == fill.worst_price == fill.last_price == 7000.0
    assert at_mark.last_price == 7000.0
    assert at_mark.mid_after_impact(7000.0) == 7000.0
    at_mark.refill(60.0)
    assert (
        at_mark.execute(
            "buy", 10, band_limit("buy", 7000.0, Decimal("0.01")), 7000.0
        ).contracts_filled
        == 10
    )
    # A limit the mark does not satisfy is respected.
    assert at_mark.execute("sell", 10, limit_price=7100.0, mid=7000.0).contracts_filled == 0
    prices, cumulative = at_mark.depth_profile(7000.0, levels=2, span=0.02)
    assert len(prices) == 5 and cumulative[2] == 0 and np.isinf(cumulative[0])


def test_liquidity_for_picks_the_model_from_the_scenario() -> None:
    spec = BookSpec(Decimal("50000"), "contracts per 1% from mid", Decimal("60"))
    book = liquidity_for(spec)
    assert isinstance(book, DepthBook) and book.depth == 50_000.0 and book.refill_seconds == 60.0
    assert isinstance(liquidity_for(None), FillAtMark)
