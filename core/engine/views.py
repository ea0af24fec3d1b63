"""Per-position risk views (valuation, risk prices, ADL lights) as plain rows for results and
the console."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np

from core.engine.deficit import adl_quintiles, adl_ranking, effective_leverage
from core.model.units import decimal_str
from core.risk.margin import risk_prices
from core.risk.positions import PositionBook, Valuation


def price_str(value: float | Decimal | None) -> str | None:
    """A price or ratio as a decimal string; None where it does not exist (NaN, infinite)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return decimal_str(value, 12)


def position_rows(
    book: PositionBook, valuation: Valuation, rows: np.ndarray
) -> list[dict[str, Any]]:
    """`rows` of the book valued at `valuation`: every field of the result's positions_at_start."""
    prices = risk_prices(book, valuation)
    margin_rate = book.okx_margin_rate(valuation)
    quintiles = adl_lights(book, valuation)
    out = []
    for row in rows.tolist():
        inst = book.instruments[book.instrument[row]]
        out.append(
            {
                "account": book.account_ids[book.account[row]],
                "symbol": inst.symbol,
                "side": "long" if book.side[row] > 0 else "short",
                "contracts": int(book.contracts[row]),
                "entry_price": decimal_str(
                    Decimal(int(book.entry_units[row])) * inst.price_unit, 14
                ),
                "mark_price": price_str(float(valuation.marks[book.instrument[row]])),
                "margin_mode": "isolated" if book.isolated[row] else "cross",
                "maintenance_margin": decimal_str(float(valuation.maintenance[row]), 10),
                "margin_ratio": price_str(float(valuation.margin_ratio[row])),
                "okx_margin_rate": price_str(float(margin_rate[row])),
                "liquidation_price": price_str(float(prices.liquidation[row])),
                "bankruptcy_price": price_str(float(prices.bankruptcy[row])),
                "adl_quintile": int(quintiles[row]),
            }
        )
    return out


def adl_lights(book: PositionBook, valuation: Valuation) -> np.ndarray:
    """ADL quintile (1-5, 5 first in line) of every open position within its instrument and side."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pnl_pct = np.where(book.entry_margin > 0, valuation.upnl / book.entry_margin, 0.0)
    leverage = effective_leverage(
        valuation.notional, valuation.notional - np.maximum(valuation.equity, 0.0)
    )
    scores = adl_ranking(np.nan_to_num(pnl_pct), np.nan_to_num(leverage, posinf=1e300))
    groups = book.instrument * 2 + (book.side > 0)
    return adl_quintiles(scores, groups, book.contracts > 0)
