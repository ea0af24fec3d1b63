"""Liquidation and bankruptcy prices of every position, vectorized over the book.

Both solve collateral + upnl(x) = requirement(x) in the affine price variable x (P linear, 1/P
inverse); the liquidation price re-selects the tier at the price it finds. Each instrument's
convention (docs/conventions.md) shapes the requirement; the close fee enters both prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.risk.positions import PositionBook, Valuation


@dataclass(frozen=True, slots=True)
class RiskPrices:
    """Per position; NaN where no such price exists (no move of the mark can reach it)."""

    liquidation: np.ndarray
    bankruptcy: np.ndarray


def _price_of_x(x: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        price = np.where(inverse, 1.0 / x, x)
    return np.where(np.isfinite(x) & (x > 0) & np.isfinite(price), price, np.nan)


def risk_prices(book: PositionBook, valuation: Valuation) -> RiskPrices:
    """Liquidation and bankruptcy price of every open position, other instruments' marks fixed.

    Cross positions see the rest of their account (its other positions' upnl and maintenance at
    their current marks) as a constant collateral; isolated positions see their own margin.
    """
    cross = ~book.isolated
    upnl = valuation.upnl
    group = book.group
    own_equity = np.where(cross, valuation.group_equity[group] - upnl, book.iso_margin_major)
    others_maintenance = np.where(
        cross, valuation.group_maintenance[group] - valuation.maintenance, 0.0
    )
    inverse = book.inst_inverse[book.instrument]
    x_now = book.x_of_marks(valuation.marks)[book.instrument]
    x_liq = _liquidation_x(book, own_equity - others_maintenance, x_now)
    open_rows = book.contracts > 0
    return RiskPrices(
        liquidation=np.where(open_rows, _price_of_x(x_liq, inverse), np.nan),
        bankruptcy=bankruptcy_prices(book, np.arange(len(book)), own_equity),
    )


def bankruptcy_prices(book: PositionBook, rows: np.ndarray, own_equity: np.ndarray) -> np.ndarray:
    """Bankruptcy price of `rows` (NaN where none), given each one's own collateral in major
    units: its isolated margin, or its cross group's equity less its own upnl. Where the
    instrument has a close fee, the equity left is the fee of closing at that price."""
    a, b = book.upnl_a[rows], book.upnl_b[rows]
    fee = book.inst_fee[book.instrument[rows]]
    slope = np.where(fee > 0, a - fee * book.size_per_x[rows], a)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_bankrupt = -(own_equity + b) / slope
    inverse = book.inst_inverse[book.instrument[rows]]
    return np.where(book.contracts[rows] > 0, _price_of_x(x_bankrupt, inverse), np.nan)


def _liquidation_x(book: PositionBook, collateral: np.ndarray, x_now: np.ndarray) -> np.ndarray:
    """Solve collateral + a*x + b = c_k*x - d_k for each tier k; keep the self-consistent root
    nearest the current x (the first one the mark reaches)."""
    best = np.full(len(book), np.nan)
    for k, inst in enumerate(book.instruments):
        rows = np.flatnonzero(book.instrument == k)
        if rows.size == 0:
            continue
        tiers = inst.tiers
        maxes = tiers.maxes
        floors = np.concatenate(([-np.inf], maxes[:-1]))
        # The size the tier is read with, per unit of x where it moves with the price.
        moves = tiers.basis == "notional" and not book.inst_entry_value[k]
        fixed_size = book.tier_sizes(k, rows, np.ones(rows.size))
        a, b, base = book.upnl_a[rows], book.upnl_b[rows], collateral[rows]
        chosen = np.full(rows.size, np.nan)
        for level in range(len(tiers.levels)):
            c, d = book.requirement_coefficients(k, rows, level)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                x = (base + b + d) / (c - a)
                size = fixed_size * x if moves else fixed_size
            consistent = np.isfinite(x) & (x > 0) & (size > floors[level]) & (size <= maxes[level])
            closer = np.isnan(chosen) | (np.abs(x - x_now[rows]) < np.abs(chosen - x_now[rows]))
            chosen = np.where(consistent & closer, x, chosen)
        best[rows] = chosen
    return best
