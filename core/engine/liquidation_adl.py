"""Auto-deleveraging for the liquidation desk: what ADL counterparties and reductions can bear
without going below zero, and takeover remainders closed against the ranked opposite positions at
their bankruptcy prices."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from core.engine.deficit import adl_order, adl_ranking, effective_leverage
from core.engine.liquidation_money import DeskMoney
from core.model.arrays import distinct
from core.model.events import AdlFill
from core.model.units import Rounding, round_fraction


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

    def _adl_pairs(
        self, queue: np.ndarray, k: int, demand: np.ndarray, price_units: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Match the remainders `demand` (in order, closed at `price_units` each) against the
        ranked opposite positions `queue` of instrument `k`: each remainder takes from the
        highest-ranked position first, and each position is closed for at most the contracts
        that leave its equity at the mark (its account's for cross, its own for isolated) at or
        above zero, what earlier remainders took from it counted at their own prices. An isolated
        position's realized losses come out of its margin (`close_positions`), which must also
        stay at or above zero: a margin below zero stays a loss nobody pays when it closes.
        Deleveraging may take a counterparty's profit and collateral, never more (which would
        leave a new deficit). Returns (queue positions, contracts, remainders) per pair."""
        engine, book = self.engine, self.engine.book
        prices = price_units.astype(np.float64) * float(engine.instruments[k].price_unit)
        x_prices = 1.0 / prices if book.inst_inverse[k] else prices
        # Upnl per contract per unit of x; each closed contract costs it times (x_mark - x).
        slope = book.upnl_a[queue] / np.maximum(book.contracts[queue], 1)
        dx = engine.x_marks[k] - x_prices
        left = book.contracts[queue].copy()
        # One position per account and symbol: no two rows of the queue share a cross account's
        # equity, so each row's spare is its own to spend.
        spare = self._spare(self._equity_of(queue)[0], k)
        margin = np.where(
            book.isolated[queue], self._spare(book.iso_margin_major[queue], k), np.inf
        )
        # Realized PnL per contract per unit of x is the slope too: closing at x realizes
        # slope * x + offset a contract, a loss out of an isolated margin where below zero.
        offset = book.upnl_b[queue] / np.maximum(book.contracts[queue], 1)
        unit = 10.0 ** -engine.decimals(k)
        # A position below zero, or short of one contract at the cheapest price, takes nothing.
        cheapest = np.minimum(slope * dx.min(), slope * dx.max())
        floor = np.maximum(cheapest, 0)
        candidates = np.flatnonzero((left > 0) & (spare >= floor))
        out_q: list[np.ndarray] = []
        out_n: list[np.ndarray] = []
        out_j: list[np.ndarray] = []
        reached = 0  # the candidates past it are untouched, still as alive as at the start
        for j, need in enumerate(demand.tolist()):
            head = candidates[:reached]
            head = head[(left[head] > 0) & (spare[head] >= floor[head])]
            candidates = np.concatenate((head, candidates[reached:]))
            reached = head.size
            pos, window = 0, 64
            while need > 0 and pos < candidates.size:
                seg = candidates[pos : pos + window]
                cost = slope[seg] * dx[j]
                # What closing one contract realizes against the entry: a loss (> 0) out of an
                # isolated margin; a gain refills it, as the row's fills net in one close.
                loss = -(slope[seg] * x_prices[j] + offset[seg])
                with np.errstate(divide="ignore", invalid="ignore"):
                    afford = np.where(cost > 0, np.floor(spare[seg] / cost), np.inf)
                    from_margin = np.where(loss > 0, np.floor(margin[seg] / loss), np.inf)
                can = np.clip(np.minimum(afford, from_margin), 0, left[seg]).astype(np.int64)
                got = np.minimum(np.cumsum(can), need)
                take = np.diff(got, prepend=0)
                hit = take > 0
                if hit.any():
                    rows, n = seg[hit], take[hit]
                    left[rows] -= n
                    spare[rows] -= n * cost[hit]
                    # Each fill's PnL is floored apart: a minor unit more per fill.
                    margin[rows] -= n * loss[hit] + unit
                    out_q.append(rows)
                    out_n.append(n)
                    out_j.append(np.full(rows.size, j, dtype=np.int64))
                need -= int(got[-1])
                pos += seg.size
                window *= 2
            reached = max(reached, pos)
        if not out_q:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(out_q), np.concatenate(out_n), np.concatenate(out_j)

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
        # Reductions of one row together, against what it and its cross group hold; summed per
        # distinct row, not in a column of the whole book.
        reduced, at = np.unique(rows, return_inverse=True)
        at = at.reshape(-1)
        total = np.zeros(reduced.size, dtype=np.int64)
        np.add.at(total, at, o.remaining[idx])
        groups = book.group[rows]
        members = book.rows_of_groups(distinct(groups))
        found = np.searchsorted(reduced, members).clip(max=reduced.size - 1)
        of_members = np.where(reduced[found] == members, total[found], 0)
        left = members[~book.isolated[members] & (book.contracts[members] > of_members)]
        reducing = total[at]
        closing = (reducing >= book.contracts[rows]) & (
            book.isolated[rows] | ~np.isin(groups, book.group[left])
        )
        slope = book.upnl_a[rows] / np.maximum(book.contracts[rows], 1)  # upnl per contract per x
        # Closing q at x instead of the mark costs q*slope*(x_mark - x): solvent while <= spare.
        with np.errstate(divide="ignore", invalid="ignore"):
            x_limit = engine.x_marks[k] - spare / (reducing * slope)
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
        # The cushion above bankruptcy: equity less the fee of closing where one is charged.
        fee = book.inst_fee[book.instrument]
        cushion = np.maximum(
            np.where(fee > 0, valuation.equity - fee * valuation.notional, valuation.equity), 0.0
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            pnl_pct = np.where(book.entry_margin > 0, valuation.upnl / book.entry_margin, 0.0)
        leverage = effective_leverage(valuation.notional, valuation.notional - cushion)
        scores = adl_ranking(np.nan_to_num(pnl_pct), np.nan_to_num(leverage, posinf=1e300))
        keys = o.instrument[idx] * 2 + (o.side[idx] > 0)
        # A remainder closed at a price better than the mark for its counterparty (a gap the
        # other way) adds to that account's room, which remainders matched before it (of this
        # instrument or, for a cross account, of another) may still use: a second pass takes it.
        # So does an isolated counterparty's realized gain. Gains are taken whole in the first
        # pass, so a third would find nothing.
        for _ in range(2):
            gained = False
            for key in distinct(keys).tolist():
                sel = (keys == key) & (o.remaining[idx] > 0)
                if sel.any():
                    gained |= self._deleverage_queue(key, idx[sel], units[sel], scores)
            if not gained or not (o.remaining[idx] > 0).any():
                break

    def _deleverage_queue(
        self, key: int, orders: np.ndarray, prices: np.ndarray, scores: np.ndarray
    ) -> bool:
        """Close remainders `orders` (one instrument and side, `key`) against the ranked opposite
        positions at their bankruptcy `prices`; whether a second pass may find more room (a
        counterparty gained against the mark, or an isolated one still open realized a gain)."""
        engine, book, o = self.engine, self.engine.book, self.o
        k, side = key // 2, 1 if key % 2 else -1
        opposite = (book.instrument == k) & (book.side == -side) & (book.contracts > 0)
        if not opposite.any():
            return False
        queue = adl_order(scores, opposite)
        at, take, which = self._adl_pairs(queue, k, o.remaining[orders], prices)
        if take.size == 0:
            return False
        rows = queue[at]
        pair_prices = prices[which]
        pnl = self.close_positions(rows, take, pair_prices)
        per_row = distinct(rows)
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
        # A long remainder's short counterparty gains below the mark; a short's long, above it.
        # An isolated counterparty's realized gain nets against the losses its margin was held
        # back for (one close of the row's fills), which leaves that margin room for more.
        mark_units = engine.marks[k] / float(inst.price_unit)
        beyond_mark = (side * (pair_prices - mark_units) < 0).any()
        refilled = book.isolated[rows] & (pnl > 0) & (book.contracts[rows] > 0)
        return bool(beyond_mark or refilled.any())

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
