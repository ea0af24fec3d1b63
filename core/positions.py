"""The columnar position book: every position in numpy columns, revalued per tick without a loop.

Price enters as `x` (P linear, 1/P inverse), so upnl = a*x + b and maintenance = c*x - d per
position, with a, b, c, d cached until the position or its tier changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.instruments import Instrument
from core.units import Currency


@dataclass(frozen=True, slots=True)
class Valuation:
    """One revaluation of the whole book at a set of marks (valuation floats in major units)."""

    marks: np.ndarray  # per instrument
    notional: np.ndarray  # per position, settle currency
    upnl: np.ndarray  # per position
    maintenance: np.ndarray  # per position
    tier: np.ndarray  # per position, level index
    equity: np.ndarray  # per position: isolated margin + upnl, or its cross group's equity
    requirement: np.ndarray  # per position: its own maintenance, or its cross group's
    liquidatable: np.ndarray  # per position: equity <= requirement
    group_equity: np.ndarray  # per cross group (account * n_currencies + currency)
    group_maintenance: np.ndarray
    group_notional_over_leverage: np.ndarray  # position margin of the OKX cross margin rate

    @property
    def margin_ratio(self) -> np.ndarray:
        """equity / maintenance margin: liquidation at 1 or below (inf when nothing is required)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.requirement > 0, self.equity / self.requirement, np.inf)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class PositionBook:
    """All positions and cross balances of an exchange, in numpy columns.

    Positions are rows; a row whose `contracts` is 0 is closed and values to zero. Cross collateral
    lives in `balances[account, currency]` (minor units, int64); isolated margin in `iso_margin`.
    """

    def __init__(
        self,
        instruments: Sequence[Instrument],
        currencies: Sequence[Currency],
        account_ids: Sequence[str],
        balances: np.ndarray,
        account: np.ndarray,
        instrument: np.ndarray,
        side: np.ndarray,
        contracts: np.ndarray,
        entry_units: np.ndarray,
        isolated: np.ndarray,
        iso_margin: np.ndarray,
        leverage: np.ndarray,
    ) -> None:
        self.instruments = tuple(instruments)
        self.currencies = tuple(currencies)
        self.account_ids = list(account_ids)
        self.account_index = {name: i for i, name in enumerate(self.account_ids)}
        currency_index = {c.code: i for i, c in enumerate(self.currencies)}
        self.n_currencies = len(self.currencies)
        self.balances = np.ascontiguousarray(balances, dtype=np.int64).reshape(
            len(self.account_ids), self.n_currencies
        )
        self.account = np.ascontiguousarray(account, dtype=np.int64)
        self.instrument = np.ascontiguousarray(instrument, dtype=np.int64)
        self.side = np.ascontiguousarray(side, dtype=np.int8)
        self.contracts = np.ascontiguousarray(contracts, dtype=np.int64)
        self.entry_units = np.ascontiguousarray(entry_units, dtype=np.int64)
        self.isolated = np.ascontiguousarray(isolated, dtype=bool)
        self.iso_margin = np.ascontiguousarray(iso_margin, dtype=np.int64)
        self.leverage = np.ascontiguousarray(leverage, dtype=np.float64)

        self.inst_cv = np.array([float(i.contract_value) for i in self.instruments])
        self.inst_inverse = np.array([i.inverse for i in self.instruments], dtype=bool)
        self.inst_price_unit = np.array([float(i.price_unit) for i in self.instruments])
        self.inst_currency = np.array(
            [currency_index[i.settle_currency] for i in self.instruments], dtype=np.int64
        )
        self.currency_scale = np.array([float(c.scale) for c in self.currencies])
        self.position_currency = self.inst_currency[self.instrument]
        self.group = self.account * self.n_currencies + self.position_currency
        self.n_groups = len(self.account_ids) * self.n_currencies
        self.frozen_order_margin = np.zeros(self.n_groups, dtype=np.float64)
        self.refresh()

    def __len__(self) -> int:
        return len(self.contracts)

    @property
    def entry_price(self) -> np.ndarray:
        return self.entry_units * self.inst_price_unit[self.instrument]

    def refresh(self, rows: np.ndarray | None = None) -> None:
        """Recompute the cached coefficients of all rows (or of `rows`) after a change."""
        sel = slice(None) if rows is None else rows
        inst = self.instrument[sel]
        cv = self.inst_cv[inst]
        inverse = self.inst_inverse[inst]
        entry = self.entry_units[sel] * self.inst_price_unit[inst]
        x_entry = np.where(inverse, 1.0 / entry, entry)
        signed = self.side[sel] * self.contracts[sel] * cv
        slope = np.where(inverse, -signed, signed)
        if rows is None:
            self.size_per_x = self.contracts * cv  # notional = size_per_x * x
            self.upnl_a = slope
            self.upnl_b = -slope * x_entry
            self.iso_margin_major = self.iso_margin / self.currency_scale[self.position_currency]
            self.entry_margin = self.contracts * cv * x_entry / self.leverage
            self.tier = np.zeros(len(self.contracts), dtype=np.int64)
            self.mm_c = np.zeros(len(self.contracts))
            self.mm_d = np.zeros(len(self.contracts))
            self._tier_lo = np.full(len(self.contracts), np.inf)
            self._tier_hi = np.full(len(self.contracts), -np.inf)
        else:
            self.size_per_x[rows] = self.contracts[rows] * cv
            self.upnl_a[rows] = slope
            self.upnl_b[rows] = -slope * x_entry
            scale = self.currency_scale[self.position_currency[rows]]
            self.iso_margin_major[rows] = self.iso_margin[rows] / scale
            self.entry_margin[rows] = self.contracts[rows] * cv * x_entry / self.leverage[rows]
            self._tier_lo[rows] = np.inf
            self._tier_hi[rows] = -np.inf

    def x_of_marks(self, marks: np.ndarray) -> np.ndarray:
        marks = np.asarray(marks, dtype=np.float64)
        return np.where(self.inst_inverse, 1.0 / marks, marks)

    def _update_tiers(self, x: np.ndarray) -> None:
        """Re-select tiers only where the price left the band its cached tier holds in."""
        stale = (x <= self._tier_lo) | (x > self._tier_hi)
        if not stale.any():
            return
        rows = np.flatnonzero(stale)
        for k in np.unique(self.instrument[rows]):
            self._assign_tiers(int(k), rows[self.instrument[rows] == k], x)

    def _assign_tiers(self, k: int, rows: np.ndarray, x: np.ndarray) -> None:
        tiers = self.instruments[k].tiers
        maxes = tiers.maxes
        floors = np.concatenate(([-np.inf], maxes[:-1]))
        contracts = self.contracts[rows].astype(np.float64)
        if tiers.basis == "contracts":
            level = np.searchsorted(maxes, contracts, side="left")
            # maintenance = cv*x*(n*mmr - amount in contracts); the level never moves with price
            self.mm_c[rows] = self.inst_cv[k] * (
                contracts * tiers.mmrs[level] - tiers.amounts[level]
            )
            self.mm_d[rows] = 0.0
            self._tier_lo[rows] = -np.inf
            self._tier_hi[rows] = np.inf
        else:
            per_x = self.size_per_x[rows]
            level = np.searchsorted(maxes, per_x * x[rows], side="left")
            self.mm_c[rows] = per_x * tiers.mmrs[level]
            self.mm_d[rows] = tiers.amounts[level]
            with np.errstate(divide="ignore", invalid="ignore"):
                self._tier_lo[rows] = np.where(per_x > 0, floors[level] / per_x, -np.inf)
                self._tier_hi[rows] = np.where(per_x > 0, maxes[level] / per_x, np.inf)
        self.tier[rows] = level

    def revalue(self, marks: np.ndarray) -> Valuation:
        """Value every position and cross group at `marks` (one price per instrument)."""
        x_inst = self.x_of_marks(marks)
        x = x_inst[self.instrument]
        self._update_tiers(x)
        upnl = self.upnl_a * x + self.upnl_b
        maintenance = self.mm_c * x - self.mm_d
        notional = self.size_per_x * x
        cross = ~self.isolated
        scale = self.currency_scale
        cash = (self.balances / scale).ravel()
        group_equity = cash + np.bincount(
            self.group, weights=np.where(cross, upnl, 0.0), minlength=self.n_groups
        )
        group_maintenance = np.bincount(
            self.group, weights=np.where(cross, maintenance, 0.0), minlength=self.n_groups
        )
        group_position_margin = np.bincount(
            self.group,
            weights=np.where(cross, notional / self.leverage, 0.0),
            minlength=self.n_groups,
        )
        equity = np.where(cross, group_equity[self.group], self.iso_margin_major + upnl)
        requirement = np.where(cross, group_maintenance[self.group], maintenance)
        open_rows = self.contracts > 0
        liquidatable = open_rows & (equity <= requirement)
        return Valuation(
            marks=_readonly(np.array(marks, dtype=np.float64)),
            notional=_readonly(notional),
            upnl=_readonly(upnl),
            maintenance=_readonly(maintenance),
            tier=_readonly(self.tier.copy()),
            equity=_readonly(equity),
            requirement=_readonly(requirement),
            liquidatable=_readonly(liquidatable),
            group_equity=_readonly(group_equity),
            group_maintenance=_readonly(group_maintenance),
            group_notional_over_leverage=_readonly(group_position_margin),
        )

    def okx_margin_rate(self, valuation: Valuation) -> np.ndarray:
        """OKX's margin rate (seed 003): cross equity / (position margin + frozen order margin);
        isolated (fixed margin + upnl) * E * leverage / (cv * n), i.e. equity over entry margin."""
        cross_denominator = (valuation.group_notional_over_leverage + self.frozen_order_margin)[
            self.group
        ]
        denominator = np.where(self.isolated, self.entry_margin, cross_denominator)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, valuation.equity / denominator, np.inf)
