"""Margin math on hand-worked cases, exact Fraction oracles and hypothesis properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.risk.margin import risk_prices
from tests.core.conftest import book, instrument, tiers

SEED_003_TIERS = tiers(
    "contracts",
    ("50000", "0.015", "0"),
    ("80000", "0.02", "0"),
    ("120000", "0.025", "0"),
    (None, "0.03", "0"),
)


def test_tier_levels_follow_seed_003_example() -> None:
    # 100,000 contracts sit in tier 3 (2.5%); tier 2 ends at 80,000 (2%): a 20,000 step-down.
    assert SEED_003_TIERS.level_of(100_000) == 2
    assert SEED_003_TIERS.levels[2].mmr == Decimal("0.025")
    assert SEED_003_TIERS.level_of(80_000) == 1
    assert SEED_003_TIERS.levels[1].mmr == Decimal("0.02")
    assert SEED_003_TIERS.level_of(80_001) == 2


def test_maintenance_amount_is_derived_continuous() -> None:
    table = tiers(
        "notional", ("50000", "0.004", None), ("250000", "0.005", None), (None, "0.01", None)
    )
    assert [level.maintenance_amount for level in table.levels] == [0, 50, 1300]
    linear = instrument(cv="1", currency="USDT", table=table)
    for notional in (50000, 250000):
        below = linear.maintenance_margin(notional, Decimal(1))
        above = linear.maintenance_margin(notional + 1, Decimal(1))
        assert above - below == pytest.approx(
            float(linear.maintenance_margin(1, Decimal(1))) * 1, abs=0.02
        )


def test_linear_isolated_long_hand_worked() -> None:
    # 10 contracts of 1 at 1, margin 1, mmr 0.5%: 1 + 10(P-1) = 0.05P -> P = 9/9.95
    b = book([instrument()], [("A", 0, 1, 10, "1", True, 10**8, 10.0)])
    v = b.revalue(np.array([1.0]))
    prices = risk_prices(b, v)
    assert prices.liquidation[0] == pytest.approx(9 / 9.95, rel=1e-12)
    assert prices.bankruptcy[0] == pytest.approx(0.9, rel=1e-12)
    assert v.margin_ratio[0] == pytest.approx(1 / 0.05)


def test_linear_isolated_short_hand_worked() -> None:
    # 1 - 10(P-1) = 0.05P -> P = 11/10.05; bankrupt at 1.1
    b = book([instrument()], [("B", 0, -1, 10, "1", True, 10**8, 10.0)])
    prices = risk_prices(b, b.revalue(np.array([1.0])))
    assert prices.liquidation[0] == pytest.approx(11 / 10.05, rel=1e-12)
    assert prices.bankruptcy[0] == pytest.approx(1.1, rel=1e-12)


def test_inverse_cross_long_hand_worked_and_okx_rate() -> None:
    inverse = instrument("I", "inverse", cv="100")
    b = book([inverse], [("C", 0, 1, 1000, "8100", False, 0, 10.0)], {"C": {"BTC": 10**8}})
    v = b.revalue(np.array([8100.0]))
    prices = risk_prices(b, v)
    # 1 + 1e5(1/8100 - 1/P) = 0 ; with mmr: 1 + 1e5/8100 - 1e5 u = 0.005e5 u
    assert prices.bankruptcy[0] == pytest.approx(1 / (1 / 8100 + 1e-5), rel=1e-12)
    assert prices.liquidation[0] == pytest.approx(100_500 / (1 + 100_000 / 8100), rel=1e-12)
    # OKX cross margin rate: equity / (notional / leverage) = 1 / (1e5/8100/10)
    assert b.okx_margin_rate(v)[0] == pytest.approx(0.081 * 10, rel=1e-12)


def test_okx_isolated_margin_rate_matches_seed_formula() -> None:
    inverse = instrument("I", "inverse", cv="100")
    b = book([inverse], [("A", 0, 1, 10, "8100", True, 10_000_000, 10.0)])
    mark = 7900.0
    v = b.revalue(np.array([mark]))
    upnl = 10 * 100 * (1 / 8100 - 1 / mark)
    seed_formula = (0.1 + upnl) * 8100 * 10 / (100 * 10)
    assert b.okx_margin_rate(v)[0] == pytest.approx(seed_formula, rel=1e-12)


def test_cross_account_with_two_instruments_sees_the_other_as_collateral() -> None:
    linear = instrument("L", cv="0.01", currency="USDT")
    other = instrument("M", cv="0.01", currency="USDT")
    b = book(
        [linear, other],
        [("A", 0, 1, 100, "100", False, 0, 10.0), ("A", 1, -1, 50, "200", False, 0, 10.0)],
        {"A": {"USDT": 20 * 10**6}},
    )
    v = b.revalue(np.array([100.0, 210.0]))
    prices = risk_prices(b, v)
    # other leg: upnl -50*0.01*10 = -5, maintenance 0.005*0.5*210 = 0.525
    # 20 - 5 + 1(P - 100) = 0.005P + 0.525 -> P = (100 - 15 + 0.525)/0.995
    assert prices.liquidation[0] == pytest.approx((85 + 0.525) / 0.995, rel=1e-12)
    assert prices.bankruptcy[0] == pytest.approx(85.0, rel=1e-12)


def test_liquidation_price_reselects_the_tier_at_the_price() -> None:
    # Inverse long: notional n*cv/P grows as the price falls, into the second tier.
    table = tiers("notional", ("10", "0.005", None), (None, "0.05", None))
    inverse = instrument("I", "inverse", cv="100", table=table)
    b = book([inverse], [("A", 0, 1, 900, "10000", True, 2 * 10**8, 5.0)])
    v = b.revalue(np.array([10000.0]))
    assert v.tier[0] == 0  # 9 BTC at the mark
    liq = risk_prices(b, v).liquidation[0]
    assert inverse.tiers.level_of(Fraction(90_000) / Fraction(liq)) == 1
    equity = 2 + inverse.upnl(1, 900, Decimal(10000), Fraction(liq))
    assert float(equity - inverse.maintenance_margin(900, Fraction(liq))) == pytest.approx(
        0, abs=1e-9
    )


def test_no_liquidation_price_for_an_unlevered_short_inverse() -> None:
    inverse = instrument("I", "inverse", cv="100")
    b = book([inverse], [("A", 0, -1, 100, "10000", True, 2 * 10**8, 0.5)])
    prices = risk_prices(b, b.revalue(np.array([10000.0])))
    assert np.isnan(prices.liquidation[0]) and np.isnan(prices.bankruptcy[0])


def settle(kind: str) -> tuple[str, str, int]:
    """(contract value, settle currency, decimals): inverse in BTC, linear in USDT."""
    return ("100", "BTC", 8) if kind == "inverse" else ("0.01", "USDT", 6)


def exact_equity_and_maintenance(
    kind: str, side: int, n: int, entry: str, margin: int, price: float
) -> tuple[Fraction, Fraction]:
    cv, currency, decimals = settle(kind)
    inst = instrument(kind=kind, cv=cv, currency=currency)
    p = Fraction(price)
    equity = Fraction(margin, 10**decimals) + inst.upnl(side, n, Decimal(entry), p)
    return equity, inst.maintenance_margin(n, p)


position = st.tuples(
    st.sampled_from(["linear", "inverse"]),
    st.sampled_from([1, -1]),
    st.integers(1, 100_000),
    st.integers(500_000, 10_000_000),  # entry in cents
    st.floats(1.5, 100.0),  # leverage
)


@settings(max_examples=300, deadline=None)
@given(position)
def test_properties_at_liquidation_and_bankruptcy_prices(case) -> None:
    kind, side, n, entry_cents, lev = case
    entry = f"{entry_cents / 100:.2f}"
    cv, currency, decimals = settle(kind)
    inst = instrument(kind=kind, cv=cv, currency=currency)
    notional = inst.notional(n, Decimal(entry))
    margin = int(notional / Fraction(lev) * 10**decimals) + 1
    b = book([inst], [("A", 0, side, n, entry, True, margin, lev)])
    mark = float(entry)
    prices = risk_prices(b, b.revalue(np.array([mark])))
    liq, bankrupt = prices.liquidation[0], prices.bankruptcy[0]
    minor = 10.0**-decimals
    if not np.isnan(bankrupt):
        equity, _ = exact_equity_and_maintenance(kind, side, n, entry, margin, bankrupt)
        assert abs(float(equity)) <= minor
    if not np.isnan(liq):
        equity, maintenance = exact_equity_and_maintenance(kind, side, n, entry, margin, liq)
        assert abs(float(equity - maintenance)) <= minor
        if not np.isnan(bankrupt):
            assert min(mark, bankrupt) <= liq <= max(mark, bankrupt)


def test_a_float_price_in_price_units_is_the_nearest_or_the_one_below() -> None:
    inst = instrument(kind="linear", cv="0.01", tick="0.5")
    unit = float(inst.price_unit)
    assert inst.units_near(1000 * unit + 0.5 * unit) == 1000  # half to even
    assert inst.units_near(1001 * unit + 0.5 * unit) == 1002
    assert inst.units_near(1001 * unit + 0.9 * unit, down=True) == 1001
    assert inst.units_near(0.0) == 1  # never below one unit
    both = inst.units_near(np.array([7.2 * unit, 7.7 * unit]), down=True)
    assert both.dtype == np.int64 and both.tolist() == [7, 7]
