"""Contracts (linear and inverse) and their tier tables (risk limits).

Prices enter the math through `x`: the price itself for a linear contract, its reciprocal for an
inverse one, so notional, PnL and maintenance margin are all affine in `x` for both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import numpy as np

Kind = Literal["linear", "inverse"]
# How an exchange values maintenance margin (docs/conventions.md): at the price itself (Binance,
# OKX, Gate) or once at the position's entry value (Bybit).
Convention = Literal["mark", "entry_value"]
CONVENTIONS: tuple[Convention, ...] = ("mark", "entry_value")
# Prices are held as integers of tick_size / PRICE_SUBTICKS: average entry prices are finer than
# the tick, and exact integer PnL needs them exact.
PRICE_SUBTICKS = 10_000
Basis = Literal["contracts", "notional"]


@dataclass(frozen=True, slots=True)
class TierLevel:
    """One level of a risk-limit table. `max` is inclusive; None means unbounded.

    `maintenance_amount` is in the unit of the table's basis: settle currency for a notional table,
    contracts for a contracts table (worth `contract_value` at the price, like the position).
    """

    max: Decimal | None
    mmr: Decimal
    max_leverage: Decimal
    maintenance_amount: Decimal


@dataclass(frozen=True, slots=True)
class TierTable:
    """Levels ordered by size; maintenance margin = size*mmr - amount of the level the size falls in."""

    basis: Basis
    levels: tuple[TierLevel, ...]

    @classmethod
    def build(
        cls,
        basis: Basis,
        levels: list[tuple[Decimal | None, Decimal, Decimal, Decimal | None]],
    ) -> TierTable:
        """Levels as (max, mmr, max_leverage, amount or None); a missing amount is derived so that
        the requirement is continuous: amount_k = floor_k*(mmr_k - mmr_{k-1}) + amount_{k-1}."""
        built: list[TierLevel] = []
        floor = Decimal(0)
        for index, (upper, mmr, max_leverage, amount) in enumerate(levels):
            if amount is None:
                if index == 0:
                    amount = Decimal(0)
                else:
                    previous = built[-1]
                    amount = floor * (mmr - previous.mmr) + previous.maintenance_amount
            built.append(TierLevel(upper, mmr, max_leverage, amount))
            floor = upper if upper is not None else floor
        return cls(basis, tuple(built))

    def level_of(self, size: Decimal | Fraction | float) -> int:
        """Index of the level a size falls in (contracts or notional, by the basis)."""
        for index, level in enumerate(self.levels):
            if level.max is None or size <= level.max:
                return index
        return len(self.levels) - 1

    @property
    def maxes(self) -> np.ndarray:
        """Upper bounds as float64, +inf for the last level (for `np.searchsorted`, side='left')."""
        bounds = [float(level.max) if level.max is not None else np.inf for level in self.levels]
        bounds[-1] = np.inf
        return np.asarray(bounds, dtype=np.float64)

    @property
    def mmrs(self) -> np.ndarray:
        return np.asarray([float(level.mmr) for level in self.levels], dtype=np.float64)

    @property
    def amounts(self) -> np.ndarray:
        return np.asarray(
            [float(level.maintenance_amount) for level in self.levels], dtype=np.float64
        )


@dataclass(frozen=True, slots=True)
class Instrument:
    """A futures contract or perpetual swap."""

    symbol: str
    kind: Kind
    contract_value: Decimal
    settle_currency: str
    tick_size: Decimal
    expiry: datetime | None
    family: str
    index: str
    tiers: TierTable
    ema_seconds: Decimal = Decimal(60)
    liquidation_band: Decimal = Decimal("0.01")
    margin_convention: Convention = "mark"
    # The taker fee of closing, valued at the price like the notional: it enters the
    # requirement (liquidation) and the zero-margin point (bankruptcy), as OKX and Gate put it.
    close_fee_rate: Decimal = Decimal(0)

    @property
    def convention_text(self) -> str:
        """The convention in words, for people: "mark", "entry value, close fee 0.05%"."""
        text = self.margin_convention.replace("_", " ")
        if self.close_fee_rate:
            text += f", close fee {(self.close_fee_rate * 100).normalize():f}%"
        return text

    @property
    def inverse(self) -> bool:
        return self.kind == "inverse"

    @property
    def price_unit(self) -> Decimal:
        """The integer unit prices are stored in."""
        return self.tick_size / PRICE_SUBTICKS

    def price_units(self, price: Decimal) -> int:
        """A price as an exact count of price units; ValueError if it is finer than that."""
        units = price / self.price_unit
        if units != units.to_integral_value():
            raise ValueError(f"{price} is finer than {self.price_unit.normalize()}")
        return int(units)

    def units_near(self, price: float | np.ndarray, *, down: bool = False) -> Any:
        """A float price (a fill's average, a band limit, a mark) in whole price units, at least
        one: the nearest unit (half to even), or with `down` the unit at or below it; an int for
        a number, an int64 array for an array. Exact prices go through `price_units`."""
        scaled = np.asarray(price, dtype=np.float64) / float(self.price_unit)
        units = np.maximum(1, np.floor(scaled) if down else np.rint(scaled)).astype(np.int64)
        return int(units) if units.ndim == 0 else units

    def x_of(self, price: Decimal | Fraction) -> Fraction:
        """The affine price variable: P for linear, 1/P for inverse."""
        return 1 / Fraction(price) if self.inverse else Fraction(price)

    def notional(self, contracts: int, price: Decimal | Fraction) -> Fraction:
        """Value of `contracts` in the settle currency: linear n*cv*P, inverse n*cv/P."""
        return contracts * Fraction(self.contract_value) * self.x_of(price)

    def upnl(
        self, side: int, contracts: int, entry: Decimal | Fraction, price: Decimal | Fraction
    ) -> Fraction:
        """Unrealized PnL in the settle currency: linear side*n*cv*(P-E), inverse side*n*cv*(1/E-1/P)."""
        move = self.x_of(price) - self.x_of(entry)
        if self.inverse:
            move = -move
        return side * contracts * Fraction(self.contract_value) * move

    def tier_size(self, contracts: int, price: Decimal | Fraction) -> Fraction:
        """The size the tier table is read with: contracts, or notional at the price."""
        return (
            Fraction(contracts)
            if self.tiers.basis == "contracts"
            else self.notional(contracts, price)
        )

    def maintenance_margin(
        self,
        contracts: int,
        price: Decimal | Fraction,
        entry: Decimal | Fraction | None = None,
    ) -> Fraction:
        """notional*mmr - maintenance amount of the level the position falls in, valued at
        `price` (convention `mark`) or at `entry` (convention `entry_value`, which needs it).
        The exact definition; the book's arrays follow it."""
        if self.margin_convention == "entry_value":
            if entry is None:
                raise ValueError(f"{self.symbol} values maintenance at the entry: give `entry`")
            price = entry
        level = self.tiers.levels[self.tiers.level_of(self.tier_size(contracts, price))]
        notional = self.notional(contracts, price)
        amount = Fraction(level.maintenance_amount)
        if self.tiers.basis == "contracts":
            amount *= Fraction(self.contract_value) * self.x_of(price)
        return notional * Fraction(level.mmr) - amount

    def requirement(
        self, contracts: int, price: Decimal | Fraction, entry: Decimal | Fraction | None = None
    ) -> Fraction:
        """What liquidation compares equity with: maintenance margin plus the close fee at
        `price` (the fee is always valued at the price it would be paid at)."""
        fee = self.notional(contracts, price) * Fraction(self.close_fee_rate)
        return self.maintenance_margin(contracts, price, entry) + fee
