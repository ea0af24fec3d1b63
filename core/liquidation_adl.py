"""Auto-deleveraging for the liquidation desk: what ADL counterparties and reductions can bear
without going below zero, and takeover remainders closed against the ranked opposite positions at
their bankruptcy prices."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from core.deficit import adl_order, adl_ranking, effective_leverage
from core.events import AdlFill
from core.liquidation_money import DeskMoney
from core.units import Rounding, round_fraction


class DeskAdl(DeskMoney):
    """The ADL side of LiquidationDesk, which works the orders."""

    _price_unit: list[Decimal]

    if TYPE_CHECKING:

        def _fill(
            self,
            idx: np.ndarray,
            contracts: np.ndarray,
            prices: np.ndarray,
            *,
            adl: bool = False,
        ) -> None: ...

        def _cut_reductions(self, rows: np.ndarray, by: np.ndarray | None = None) -> None: ...

    # ----- what a position can bear -------------------------------------------------------

    def _equity_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Equity at the marks (major units) of `rows`, its cross group's or the isolated
        position's, and each row's own upnl; only the groups concerned are valued."""
        engine, book = self.engine, self.engine.book
        x = engine.x_marks
        own = book.upnl_a[rows] * x[book.instrument[rows]] + book.upnl_b[rows]
        groups, local = np.unique(book.group[rows], return_inverse=True)
        members = book.rows_of_groups(groups)
        members = members[~book.isolated[members]]
        upnl = book.upnl_a[members] * x[book.instrument[members]] + book.upnl_b[members]
        where = np.searchsorted(groups, book.group[members])
        accounts, currencies = np.divmod(groups, book.n_currencies)
        cash = book.balances[accounts, currencies] / book.currency_scale[currencies]
        group_equity = cash + np.bincount(where, weights=upnl, minlength=groups.size)
        iso = book.isolated[rows]
        equity = np.where(iso, book.iso_margin_major[rows] + own, group_equity[local.reshape(-1)])
        return equity, own

    def _spare(self, equity: np.ndarray, k: int) -> np.ndarray:
        """`equity` less a few minor units and a relative float error, so that floors of realized
        PnL and float valuations never make a bound computed from it overdraw an account."""
        unit = 10.0 ** -self.engine.decimals(k)
        return equity - 4 * unit - 1e-12 * np.abs(equity)

    def _adl_room(self, rows: np.ndarray, k: int, price_units: np.ndarray) -> np.ndarray:
        """Contracts each ADL counterparty among `rows` (instrument `k`) can be closed at the
        worst of `price_units` while its equity at the mark (its account's for cross, its own for
        isolated) stays at or above zero: deleveraging may take a counterparty's profit and
        collateral, never more (which would leave a new deficit)."""
        engine, book = self.engine, self.engine.book
        prices = price_units.astype(np.float64) * float(engine.instruments[k].price_unit)
        x_prices = 1.0 / prices if book.inst_inverse[k] else prices
        per_contract = book.upnl_a[rows] / np.maximum(book.contracts[rows], 1)
        # What closing one contract at each price instead of the mark costs; the worst counts.
        loss = np.max(per_contract[:, None] * (engine.x_marks[k] - x_prices[None, :]), axis=1)
        spare = self._spare(self._equity_of(rows)[0], k)
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(loss > 0, np.floor(spare / loss), np.where(spare >= 0, np.inf, 0.0))
        return np.minimum(np.maximum(room, 0), book.contracts[rows]).astype(np.int64)

    def _solvent_limits(self, idx: np.ndarray) -> np.ndarray:
        """Under ADL, the worst price at which each reduction among `idx` (one instrument and
        side) may fill: NaN where its account (cross) or position (isolated) is below zero at the
        mark already; where it closes the account's last contracts, the price that leaves it at
        zero, one price unit inside (a floor for a sell, a ceiling for a buy); otherwise no bound
        (0 for a sell, inf for a buy): a loss beyond zero with a position left open is the next
        detection's, at its bankruptcy price."""
        engine, book, o = self.engine, self.engine.book, self.o
        k = int(o.instrument[idx[0]])
        rows = o.row[idx]
        spare = self._spare(self._equity_of(rows)[0], k)
        sell = bool(o.side[idx[0]] > 0)
        free = 0.0 if sell else np.inf
        # Reductions of one row together, against what it and its cross group hold.
        reducing = np.zeros(len(book), dtype=np.int64)
        np.add.at(reducing, rows, o.remaining[idx])
        groups = book.group[rows]
        members = book.rows_of_groups(np.unique(groups))
        left = members[~book.isolated[members] & (book.contracts[members] > reducing[members])]
        closing = (reducing[rows] >= book.contracts[rows]) & (
            book.isolated[rows] | ~np.isin(groups, book.group[left])
        )
        slope = book.upnl_a[rows] / np.maximum(book.contracts[rows], 1)  # upnl per contract per x
        # Closing q at x instead of the mark costs q*slope*(x_mark - x): solvent while <= spare.
        with np.errstate(divide="ignore", invalid="ignore"):
            x_limit = engine.x_marks[k] - spare / (reducing[rows] * slope)
            if book.inst_inverse[k]:
                price = np.where(x_limit > 0, 1.0 / x_limit, np.nan if sell else np.inf)
            else:
                price = np.where(x_limit > 0, x_limit, 0.0 if sell else np.nan)
        unit = float(engine.instruments[k].price_unit)
        bound = price + unit if sell else price - unit
        return np.where(spare < 0, np.nan, np.where(closing, bound, free))

    # ----- auto-deleveraging --------------------------------------------------------------

    def _deleverage(self, idx: np.ndarray) -> None:
        """Close the remainders of takeovers `idx` (in order) against the ranked opposite
        positions at each one's bankruptcy price, one shared queue per instrument and side."""
        engine, book, o = self.engine, self.engine.book, self.o
        units = np.array([self._bankruptcy_units(int(i)) for i in idx.tolist()], dtype=np.int64)
        usable = (units > 0) & (o.remaining[idx] > 0)
        idx, units = idx[usable], units[usable]
        if idx.size == 0:
            return
        valuation = book.revalue(engine.marks)
        cushion = np.maximum(valuation.equity, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            pnl_pct = np.where(book.entry_margin > 0, valuation.upnl / book.entry_margin, 0.0)
        leverage = effective_leverage(valuation.notional, valuation.notional - cushion)
        scores = adl_ranking(np.nan_to_num(pnl_pct), np.nan_to_num(leverage, posinf=1e300))
        keys = o.instrument[idx] * 2 + (o.side[idx] > 0)
        for key in np.unique(keys).tolist():
            sel = keys == key
            orders, prices = idx[sel], units[sel]
            k, side = key // 2, 1 if key % 2 else -1
            opposite = (book.instrument == k) & (book.side == -side) & (book.contracts > 0)
            if not opposite.any():
                continue
            queue = adl_order(scores, opposite)
            room = self._adl_room(queue, k, prices)
            queue, room = queue[room > 0], room[room > 0]
            if queue.size == 0:
                continue
            demand = np.cumsum(o.remaining[orders])
            supply = np.cumsum(room)
            end = min(int(demand[-1]), int(supply[-1]))
            points = np.unique(np.concatenate((demand, supply)))
            points = points[(points > 0) & (points <= end)]
            starts = np.r_[0, points[:-1]]
            take = points - starts
            which = np.searchsorted(demand, starts, side="right")
            rows = queue[np.searchsorted(supply, starts, side="right")]
            pair_prices = prices[which]
            self.close_positions(rows, take, pair_prices)
            per_row = np.unique(rows)
            by = np.zeros(per_row.size, dtype=np.int64)
            np.add.at(by, np.searchsorted(per_row, rows), take)
            self._cut_reductions(per_row, by)
            self._fill(orders[which], take, pair_prices, adl=True)
            inst = engine.instruments[k]
            unit = self._price_unit[k]
            now, ids = engine.now, book.account_ids
            engine.events.extend(
                AdlFill(now, ids[account], inst.symbol, n, Decimal(p) * unit, ids[against])
                for account, n, p, against in zip(
                    book.account[rows].tolist(),
                    take.tolist(),
                    pair_prices.tolist(),
                    book.account[o.row[orders[which]]].tolist(),
                    strict=True,
                )
            )

    def _bankruptcy_units(self, i: int) -> int:
        """The exact price at which order `i`'s remainder loses its remaining collateral, in
        price units, rounded in the liquidated trader's favour so the fill leaves no deficit
        (0 where there is none)."""
        engine, o = self.engine, self.o
        k = int(o.instrument[i])
        inst = engine.instruments[k]
        left = Fraction(int(o.collateral[i] - o.posted[i]), 10 ** engine.decimals(k))
        side = int(o.side[i])
        per_unit = side * int(o.remaining[i]) * Fraction(inst.contract_value)
        entry = Fraction(int(o.entry_units[i])) * Fraction(inst.price_unit)
        if inst.inverse:
            reciprocal = 1 / entry + left / per_unit
            if reciprocal <= 0:
                return 0
            price = 1 / reciprocal
        else:
            price = entry - left / per_unit
        rounding = Rounding.CEIL if side > 0 else Rounding.FLOOR
        units = round_fraction(price / Fraction(inst.price_unit), rounding)
        return max(units, 0)
