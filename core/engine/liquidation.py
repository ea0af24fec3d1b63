"""The liquidation process: partial step-down, takeover at bankruptcy, band-limited orders against
the book, relisting and auto-deleveraging, a tick at a time vectorized over the orders (columns in
liquidation_orders; the fund, the fills' money and closed positions in liquidation_money; ADL in
liquidation_adl)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from core.engine.deficit import allocate_clawback
from core.engine.liquidation_adl import DeskAdl
from core.engine.liquidation_orders import (
    KIND_NAMES,
    REDUCE,
    TAKEOVER,
    Order,
    OrderColumns,
    cumulative_within,
    float_prices,
    names_at,
    split_exact,
)
from core.market.depth import band_limit
from core.model.arrays import distinct
from core.model.events import LiquidationFilled, LiquidationStarted
from core.model.records import maker
from core.risk.margin import bankruptcy_prices

if TYPE_CHECKING:
    from core.engine.state import EngineState

_started_event = maker(LiquidationStarted)
_filled_event = maker(LiquidationFilled)


class LiquidationDesk(DeskAdl):
    """Works the orders of one engine, tick by tick."""

    def __init__(self, engine: EngineState) -> None:
        self.engine = engine
        self.o = OrderColumns()
        self.reserved: dict[str, int] = dict.fromkeys(engine.currency_codes, 0)
        instruments = engine.instruments
        self._currency = [engine.currency_of(k) for k in range(len(instruments))]
        self._price_unit = [Decimal(i.price_unit) for i in instruments]
        self._currency_index = np.array(
            [engine.currency_codes.index(c) for c in self._currency], dtype=np.int64
        )
        self._started_at: dict[int, datetime] = {}

    @property
    def orders(self) -> list[Order]:
        """The working orders as values (for reports, tests and the state hash)."""
        o = self.o
        head = ("row", "instrument", "side", "entry_units", "total", "remaining", "collateral")
        tail = ("reserved", "filled_value", "surplus", "deficit", "covered", "fills")
        columns = [getattr(o, name).tolist() for name in (*head, "posted", "started", *tail)]
        out = []
        for i, (kind, price, partial) in enumerate(
            zip(o.kind.tolist(), o.bankruptcy.tolist(), o.partial.tolist(), strict=True)
        ):
            values = [column[i] for column in columns]
            out.append(
                Order(
                    KIND_NAMES[kind],
                    *values[:8],
                    self._started(values[8]),
                    None if price != price else price,
                    *values[9:],
                    partial=partial,
                )
            )
        return out

    @property
    def working(self) -> bool:
        return len(self.o) > 0

    def _started(self, tick: int) -> datetime:
        when = self._started_at.get(tick)
        if when is None:
            scenario = self.engine.scenario
            when = scenario.start + timedelta(seconds=tick * scenario.tick_seconds)
            self._started_at[tick] = when
        return when

    # ----- starting -----------------------------------------------------------------------

    def start(self, rows: np.ndarray, own_equity: np.ndarray) -> None:
        """Start the liquidation of flagged rows (ascending; `own_equity` their collateral in
        major units): a partial step where the policy and the tier allow, otherwise a takeover.
        Rows already being reduced are left to their order, except that a cross account taken
        over is taken over whole."""
        engine, book, o = self.engine, self.engine.book, self.o
        bankruptcy = bankruptcy_prices(book, rows, own_equity)
        busy = np.isin(rows, o.row)
        contracts = book.contracts[rows]
        target = np.full(rows.size, -1, dtype=np.int64)
        if engine.scenario.policy.partial_liquidation:
            target = self._step_targets(rows)
        step = (target >= 0) & (contracts > target) & ~busy
        isolated = book.isolated[rows]
        groups = book.group[rows]
        if step.any():
            sel = np.flatnonzero(step)
            self._add_reduce(rows[sel], contracts[sel] - target[sel], bankruptcy[sel])
        # A cross account steps its positions above the lowest tier down first; it is taken over
        # as a whole only once none can step.
        stepping = distinct(groups[step & ~isolated])
        free = ~busy & ~step
        taken = distinct(groups[free & ~isolated & ~np.isin(groups, stepping)])
        self._take_over_accounts(rows, own_equity, bankruptcy, free & isolated, taken)

    def _take_over_accounts(
        self,
        rows: np.ndarray,
        own_equity: np.ndarray,
        bankruptcy: np.ndarray,
        iso_take: np.ndarray,
        taken: np.ndarray,
    ) -> None:
        """Take over the isolated `rows[iso_take]` and the cross groups `taken` whole (`rows`
        ascending, with their own collateral and bankruptcy prices; each taken group has at
        least one of them)."""
        engine, book = self.engine, self.engine.book
        iso_rows = np.flatnonzero(iso_take)
        take_rows = [rows[iso_rows]]
        collateral = [book.iso_margin[rows[iso_rows]].copy()]
        prices = [bankruptcy[iso_rows]]
        if taken.size:
            members = book.rows_of_groups(taken)
            members = members[~book.isolated[members] & (book.contracts[members] > 0)]
            x = engine.x_marks[book.instrument[members]]
            upnl = book.upnl_a[members] * x + book.upnl_b[members]
            # The group's equity from its flagged rows; rows not flagged (being reduced) too.
            where = np.searchsorted(rows, members).clip(max=rows.size - 1)
            flagged = rows[where] == members
            # Per taken group (`taken` is sorted and holds every member's group), not per group
            # of the book: a 1M-account book's column would be 8 MB to clear on every call.
            local = np.searchsorted(taken, book.group[members])
            group_equity = np.zeros(taken.size)
            group_equity[local[flagged]] = own_equity[where[flagged]] + upnl[flagged]
            own = np.where(flagged, own_equity[where], group_equity[local] - upnl)
            take_rows.append(members)
            collateral.append(self._split_cash(taken, members, x))
            prices.append(
                np.where(flagged, bankruptcy[where], bankruptcy_prices(book, members, own))
            )
            accounts, currencies = np.divmod(taken, book.n_currencies)
            book.balances[accounts, currencies] = 0
        all_rows = np.concatenate(take_rows)
        if all_rows.size:
            order = np.argsort(all_rows, kind="stable")
            all_rows = all_rows[order]
            book.iso_margin[all_rows[book.isolated[all_rows]]] = 0
            self._take_over(
                all_rows, np.concatenate(collateral)[order], np.concatenate(prices)[order]
            )

    def _step_targets(self, rows: np.ndarray) -> np.ndarray:
        """Contracts at the top of the next lower tier per row, -1 in the lowest tier."""
        engine, book = self.engine, self.engine.book
        target = np.full(rows.size, -1, dtype=np.int64)
        level = book.tier[rows]
        instruments = book.instrument[rows]
        for k in distinct(instruments[level > 0]).tolist():
            inst = book.instruments[k]
            sel = (instruments == k) & (level > 0)
            if inst.tiers.basis == "notional" and inst.margin_convention == "entry_value":
                target[sel] = self._entry_value_tops(k, rows[sel], level[sel])
                continue
            tops = [-1]
            mark = Decimal(repr(float(engine.marks[k])))
            for lower in inst.tiers.levels[:-1]:
                assert lower.max is not None
                if inst.tiers.basis == "contracts":
                    tops.append(int(lower.max))
                else:
                    tops.append(int(Fraction(lower.max) / inst.notional(1, mark)))
            target[sel] = np.asarray(tops, dtype=np.int64)[level[sel]]
        return target

    def _entry_value_tops(self, k: int, rows: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Contracts at the top of the next lower tier when the tier is read at the entry
        value: each row's own entry price sets how many contracts fit, exactly."""
        book = self.engine.book
        inst = book.instruments[k]
        unit = Fraction(inst.price_unit)
        tops = np.empty(rows.size, dtype=np.int64)
        for i, (units, lvl) in enumerate(
            zip(book.entry_units[rows].tolist(), level.tolist(), strict=True)
        ):
            lower = inst.tiers.levels[lvl - 1].max
            assert lower is not None
            tops[i] = int(Fraction(lower) / inst.notional(1, units * unit))
        return tops

    def _split_cash(self, groups: np.ndarray, members: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Each taken group's cash over its open cross rows by notional at the mark, exactly."""
        book = self.engine.book
        accounts, currencies = np.divmod(groups, book.n_currencies)
        cash = book.balances[accounts, currencies]
        local = np.searchsorted(groups, book.group[members])
        counts = np.bincount(local, minlength=groups.size)
        shares = cash[local].copy()  # a group of one row takes all
        scale = book.currency_scale[book.position_currency[members]]
        weights = np.rint(book.size_per_x[members] * x * scale).astype(np.int64)
        for g in np.flatnonzero(counts > 1).tolist():
            sel = np.flatnonzero(local == g)
            shares[sel] = split_exact(int(cash[g]), weights[sel])
        return shares

    def _take_over(self, rows: np.ndarray, collateral: np.ndarray, prices: np.ndarray) -> None:
        """The engine takes the positions over: each trader loses `collateral` to the clearing
        house, and the engine works the positions out through the book."""
        engine, book, o = self.engine, self.engine.book, self.o
        self._post_traders(rows, -collateral)
        engine.add_period_pnl(rows, -collateral)
        self._cut_reductions(rows)
        contracts = book.contracts[rows].copy()
        first = len(o)
        o.append(
            {
                "kind": np.full(rows.size, TAKEOVER),
                "row": rows,
                "instrument": book.instrument[rows],
                "side": book.side[rows],
                "entry_units": book.entry_units[rows],
                "total": contracts,
                "remaining": contracts,
                "collateral": collateral,
                "started": np.full(rows.size, engine.tick),
                "bankruptcy": prices,
            }
        )
        book.contracts[rows] = 0
        book.refresh(rows)
        new = np.arange(first, len(o))
        policy = engine.scenario.policy
        if policy.fund_reservation or policy.deficit == "adl":
            self._reserve(new)
        events = map(
            _started_event,
            repeat(engine.now),
            names_at(book.account_ids, book.account[rows]),
            self._per_instrument([i.symbol for i in engine.instruments], o.instrument[new]),
            names_at(("short", "long"), (o.side[new] > 0).astype(np.int64)),
            contracts.tolist(),
            repeat(False),
            float_prices(prices),
            o.reserved[new].tolist(),
            self._per_instrument(self._currency, o.instrument[new]),
        )
        engine.events.extend(events)

    def _add_reduce(self, rows: np.ndarray, contracts: np.ndarray, prices: np.ndarray) -> None:
        book = self.engine.book
        self.o.append(
            {
                "kind": np.full(rows.size, REDUCE),
                "row": rows,
                "instrument": book.instrument[rows],
                "side": book.side[rows],
                "entry_units": book.entry_units[rows],
                "total": contracts,
                "remaining": contracts,
                "started": np.full(rows.size, self.engine.tick),
                "bankruptcy": prices,
                "partial": np.ones(rows.size, dtype=bool),
            }
        )

    def force_reduce(self, row: int, contracts: int) -> None:
        """An operator's force-reduce, worked like a partial step until done."""
        amount = min(contracts, int(self.engine.book.contracts[row]))
        self._add_reduce(np.array([row]), np.array([amount], dtype=np.int64), np.array([np.nan]))

    def _cut_reductions(self, rows: np.ndarray, by: np.ndarray | None = None) -> None:
        """Reductions of `rows` stop (or, with `by` per row, need that many fewer): what they will
        no longer fill leaves their total too, so their report counts only what did fill."""
        o = self.o
        hit = np.flatnonzero((o.kind == REDUCE) & np.isin(o.row, rows))
        if hit.size == 0:
            return
        if by is None:
            left = np.zeros(hit.size, dtype=np.int64)
        else:
            amount = by[np.searchsorted(rows, o.row[hit])]
            left = np.maximum(0, o.remaining[hit] - amount)
        o.total[hit] -= o.remaining[hit] - left
        o.remaining[hit] = left

    # ----- working the orders -------------------------------------------------------------

    def work(self) -> None:
        """One tick: top up reservations (ADL where the fund cannot), then execute against the books."""
        engine, o = self.engine, self.o
        policy = engine.scenario.policy
        if policy.fund_reservation or policy.deficit == "adl":
            short = self._reserve(np.arange(len(o)))
            if policy.deficit == "adl" and short.size:
                self._deleverage(short)
        self._budget_reductions()
        active = np.flatnonzero(o.remaining > 0)
        keys = o.instrument[active] * 4 + (o.side[active] > 0) * 2 + o.kind[active]
        # Takeovers go to the book before reductions: they carry the exchange's risk.
        batches = [active[keys == key] for key in distinct(keys).tolist()]
        for idx in batches:
            if policy.deficit == "adl" and o.kind[idx[0]] == REDUCE:
                self._execute_solvent(idx)
            else:
                self._execute(idx)
        self._finish()

    def _execute_solvent(self, idx: np.ndarray) -> None:
        """Reductions under ADL fill in the book only while their accounts stay solvent (see
        `_solvent_limits`); what cannot is taken over, for the fund and the ranked opposite
        positions, rather than realized in the book as an uncovered deficit."""
        o = self.o
        limits = self._solvent_limits(idx)
        below = np.isnan(limits)
        if below.any():
            self._take_over_insolvent(idx[below])
        band = limits == (0.0 if o.side[idx[0]] > 0 else np.inf)
        rest = idx[band & (o.remaining[idx] > 0)]
        if rest.size:
            self._execute(rest)
        bounded = ~below & ~band
        for i, limit in zip(idx[bounded].tolist(), limits[bounded].tolist(), strict=True):
            if o.remaining[i] > 0:
                self._execute(np.array([i]), solvent=limit)

    def _budget_reductions(self) -> None:
        """Reductions of one position (force-reduces, steps) never add up to more than it holds."""
        o = self.o
        idx = np.flatnonzero(o.kind == REDUCE)
        if idx.size == 0:
            return
        idx = idx[np.argsort(o.row[idx], kind="stable")]
        remaining = o.remaining[idx]
        before = cumulative_within(o.row[idx], remaining) - remaining
        left = np.clip(self.engine.book.contracts[o.row[idx]] - before, 0, remaining)
        o.total[idx] -= remaining - left
        o.remaining[idx] = left

    def _execute(self, idx: np.ndarray, solvent: float | None = None) -> None:
        """Send orders `idx` (one instrument, side and kind) to the book within the band, and
        within `solvent` (a reduction's solvency limit, see `_solvent_limits`) when given."""
        engine, o = self.engine, self.o
        k, side = int(o.instrument[idx[0]]), int(o.side[idx[0]])
        inst = engine.instruments[k]
        book_side = "sell" if side > 0 else "buy"
        limit = band_limit(book_side, engine.marks[k], float(inst.liquidation_band))
        bound = solvent is not None and (solvent > limit if side > 0 else solvent < limit)
        if bound:
            limit = solvent
        wanted = int(o.remaining[idx].sum())
        fill = engine.liquidity[k].execute(book_side, wanted, limit, engine.fair_mid(k))
        if fill.contracts_filled:
            price_units = inst.units_near(fill.average_price)
            parts = allocate_clawback(int(fill.contracts_filled), o.remaining[idx].copy()).amounts
            sel = parts > 0
            self._fill(idx[sel], parts[sel], np.full(int(sel.sum()), price_units, dtype=np.int64))
        if bound and o.remaining[idx].any():
            self._take_over_insolvent(idx)
            return
        self._after_unfilled(idx[o.remaining[idx] > 0])

    def _take_over_insolvent(self, idx: np.ndarray) -> None:
        """Take over the accounts (cross) or positions (isolated) of reductions `idx` that cannot
        fill in the book without going below zero, at their bankruptcy prices."""
        book = self.engine.book
        rows = distinct(self.o.row[idx])
        rows = rows[book.contracts[rows] > 0]
        if rows.size == 0:
            return
        equity, upnl = self._equity_of(rows)
        isolated = book.isolated[rows]
        own = np.where(isolated, book.iso_margin_major[rows], equity - upnl)
        taken = distinct(book.group[rows[~isolated]])
        self._take_over_accounts(rows, own, bankruptcy_prices(book, rows, own), isolated, taken)

    def _after_unfilled(self, idx: np.ndarray) -> None:
        """A partial step that the book cannot fill in the band turns into a takeover of the rest
        (isolated positions; a cross account is checked again next tick)."""
        book, o = self.engine.book, self.o
        idx = idx[(o.kind[idx] == REDUCE) & o.partial[idx] & ~np.isnan(o.bankruptcy[idx])]
        if idx.size == 0:
            return
        o.total[idx] -= o.remaining[idx]
        o.remaining[idx] = 0
        rows, first = np.unique(o.row[idx], return_index=True)
        keep = (book.contracts[rows] > 0) & book.isolated[rows]
        rows, prices = rows[keep], o.bankruptcy[idx[first[keep]]]
        if rows.size:
            collateral = book.iso_margin[rows].copy()
            book.iso_margin[rows] = 0
            self._take_over(rows, collateral, prices)

    def _fill(
        self, idx: np.ndarray, contracts: np.ndarray, prices: np.ndarray, *, adl: bool = False
    ) -> None:
        """Account for `contracts` of orders `idx` (in sequence; an order may recur) closed at
        `prices` (price units); `adl`: against ranked opposite positions at bankruptcy prices."""
        o = self.o
        before = o.remaining[idx] - (cumulative_within(idx, contracts) - contracts)
        np.subtract.at(o.remaining, idx, contracts)
        np.add.at(o.fills, idx, 1)
        np.add.at(o.filled_value, idx, contracts * prices)
        reduce = o.kind[idx] == REDUCE
        if reduce.any():
            self.close_positions(o.row[idx[reduce]], contracts[reduce], prices[reduce])
        if not reduce.all():
            take = ~reduce
            self._settle_takeovers(idx[take], contracts[take], prices[take], before[take], adl)

    def _finish(self) -> None:
        engine, book, o = self.engine, self.engine.book, self.o
        done = o.remaining == 0
        if not done.any():
            return
        idx = np.flatnonzero(done)
        for k in distinct(o.instrument[idx]).tolist():
            self.reserved[self._currency[k]] -= int(o.reserved[idx[o.instrument[idx] == k]].sum())
        report = idx[(o.kind[idx] == TAKEOVER) | (o.fills[idx] > 0)]
        k = o.instrument[report]
        events = map(
            _filled_event,
            repeat(engine.now),
            self._start_times(o.started[report]),
            names_at(book.account_ids, book.account[o.row[report]]),
            self._per_instrument([i.symbol for i in engine.instruments], k),
            names_at(("short", "long"), (o.side[report] > 0).astype(np.int64)),
            o.total[report].tolist(),
            (o.kind[report] == REDUCE).tolist(),
            self._vwaps(k, o.filled_value[report], o.total[report]),
            float_prices(o.bankruptcy[report]),
            o.surplus[report].tolist(),
            o.deficit[report].tolist(),
            o.covered[report].tolist(),
            self._per_instrument(self._currency, k),
            o.fills[report].tolist(),
        )
        engine.events.extend(events)
        o.keep(~done)

    def _vwaps(self, k: np.ndarray, value: np.ndarray, filled: np.ndarray) -> list[Decimal]:
        """Each order's VWAP as an exact decimal (most fill at one price: one Decimal each)."""
        units, rest = np.divmod(value, np.maximum(filled, 1))
        keys, inverse = np.unique(np.stack((k, units)), axis=1, return_inverse=True)
        exact = [Decimal(u) * self._price_unit[i] for i, u in zip(*keys.tolist(), strict=True)]
        out = [exact[j] for j in inverse.reshape(-1).tolist()]
        for i in np.flatnonzero(rest).tolist():
            fraction = Fraction(int(value[i]), int(filled[i])) * Fraction(self._price_unit[k[i]])
            out[i] = Decimal(fraction.numerator) / Decimal(fraction.denominator)
        return out

    @staticmethod
    def _per_instrument(values: list[str], k: np.ndarray) -> list[str]:
        return [values[int(k[0])]] * k.size if k.size and (k == k[0]).all() else names_at(values, k)

    def _start_times(self, ticks: np.ndarray) -> list[datetime]:
        if ticks.size == 0:
            return []
        uniq, inverse = np.unique(ticks, return_inverse=True)
        return names_at([self._started(t) for t in uniq.tolist()], inverse.reshape(-1))

    def close_at(self, instrument: int, price_units: int) -> None:
        """Expiry: every order on the instrument is closed at the settlement price."""
        o = self.o
        idx = np.flatnonzero((o.instrument == instrument) & (o.remaining > 0))
        if idx.size:
            self._fill(idx, o.remaining[idx].copy(), np.full(idx.size, price_units, dtype=np.int64))
        self._finish()
