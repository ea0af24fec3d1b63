"""Realized PnL in exact minor units: the definition for one position (`realized_pnl_minor`) and
the one array path every caller takes (`realized_pnl`): liquidation fills, settlement, clawback
previews and the console's force-reduce preview."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from core.model.instruments import Instrument

INT64_MAX = 2**63 - 1
_INT64_SAFE = 2**62
# Relative error bound of the float64 estimate (five roundings, with a wide margin).
_RELATIVE_ERROR = 4e-15


@lru_cache(maxsize=256)
def pnl_factor(instrument: Instrument, decimals: int) -> tuple[int, int]:
    """(numerator, denominator) turning price-unit differences into minor units of PnL."""
    if instrument.inverse:
        factor = (
            Fraction(instrument.contract_value) * 10**decimals / Fraction(instrument.price_unit)
        )
    else:
        factor = (
            Fraction(instrument.contract_value) * Fraction(instrument.price_unit) * 10**decimals
        )
    return factor.numerator, factor.denominator


def realized_pnl_minor(
    instrument: Instrument,
    decimals: int,
    side: int,
    contracts: int,
    entry_units: int,
    price_units: int,
) -> int:
    """Exact PnL of closing `contracts` bought (side +1) or sold (-1) at entry, at price, in minor
    units of the settle currency, rounded toward minus infinity (the sub-unit stays with the house).

    linear side*n*cv*(P-E); inverse side*n*cv*(1/E - 1/P) = side*n*cv*(P-E)/(E*P).
    """
    numerator, denominator = pnl_factor(instrument, decimals)
    move = side * contracts * (price_units - entry_units) * numerator
    if instrument.inverse:
        denominator *= entry_units * price_units
    return move // denominator


def realized_pnl(
    instrument: Instrument,
    decimals: int,
    side: np.ndarray | int,
    contracts: np.ndarray | int,
    entry_units: np.ndarray | int,
    price_units: np.ndarray | int,
) -> np.ndarray:
    """`realized_pnl_minor` of many positions of one instrument, each at its price (or all at one),
    exactly equal to it row by row, as int64.

    Exact int64 arithmetic where the bounds allow. Otherwise a float64 estimate; rows whose
    estimate lies within its error bound of an integer are recomputed exactly in Python ints (a
    handful of rows: the floor is never wrong). OverflowError when a PnL leaves int64.
    """
    side, contracts, entry, price = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.int64) for a in (side, contracts, entry_units, price_units))
    )
    if not contracts.size:
        return np.zeros(contracts.shape, dtype=np.int64)
    numerator, denominator = pnl_factor(instrument, decimals)
    move = price - entry
    largest = int(np.abs(contracts).max()) * (int(np.abs(move).max()) + 1) * numerator
    if largest < _INT64_SAFE:
        if not instrument.inverse:
            return np.floor_divide(side * contracts * move * numerator, denominator)
        if denominator * int(entry.max()) * int(price.max()) < _INT64_SAFE:
            return np.floor_divide(side * contracts * move * numerator, denominator * entry * price)
    estimate = (side * contracts).astype(np.float64) * move.astype(np.float64)
    estimate *= numerator / denominator
    if instrument.inverse:
        estimate /= entry.astype(np.float64) * price.astype(np.float64)
    floor = np.floor(estimate)
    fraction = estimate - floor
    tolerance = np.abs(estimate) * _RELATIVE_ERROR + 1e-9
    unsure = (fraction < tolerance) | (fraction > 1 - tolerance) | (np.abs(estimate) > 2.0**52)
    unsure &= move != 0
    result = np.where(unsure | (move == 0), 0.0, floor).astype(np.int64)
    for row in np.flatnonzero(unsure).tolist():
        exact = realized_pnl_minor(
            instrument,
            decimals,
            int(side.flat[row]),
            int(contracts.flat[row]),
            int(entry.flat[row]),
            int(price.flat[row]),
        )
        if abs(exact) > INT64_MAX:
            raise OverflowError(f"PnL of position row {row} leaves int64")
        result.flat[row] = exact
    return result
