"""The columnar position book: every position in numpy columns, revalued per tick without a loop.

Price enters as `x` (P linear, 1/P inverse), so upnl = a*x + b and maintenance = c*x - d per
position, with a, b, c, d cached until the position or its tier changes.

One module past 500 lines: the book, its valuation and the liquidation watch share the cached
coefficients and group indexes, which only they may touch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.model.arrays import distinct
from core.model.instruments import Instrument
from core.model.units import Currency
from core.risk import kernels

_VALUATION_FIELDS = (
    "notional",
    "upnl",
    "maintenance",
    "tier",
    "equity",
    "requirement",
    "liquidatable",
    "group_equity",
    "group_maintenance",
    "group_notional_over_leverage",
)


class Valuation:
    """One revaluation of the whole book at a set of marks (valuation floats in major units).

    Per position: notional, upnl, maintenance, tier (level index), equity (isolated margin + upnl,
    or its cross group's equity), requirement (its own maintenance, or its cross group's) and
    liquidatable (equity <= requirement). Per cross group (account * n_currencies + currency):
    group_equity, group_maintenance, group_notional_over_leverage (the position margin of the OKX
    cross margin rate). Arrays are read-only.

    `PositionBook.valuation` makes one that is computed on the first read of a field (a replay
    steps through many ticks nobody looks at): it values the book as it stands at that read, so
    read it on the engine's thread before the engine steps again.
    """

    __slots__ = ("_book", "_values", "marks")

    def __init__(
        self,
        marks: np.ndarray,
        values: dict[str, np.ndarray] | None = None,
        book: PositionBook | None = None,
    ) -> None:
        self.marks = marks
        self._values = values
        self._book = book

    def _get(self, name: str) -> np.ndarray:
        if self._values is None:
            assert self._book is not None
            self._values = self._book.revalue(self.marks)._values
            self._book = None
        assert self._values is not None
        return self._values[name]

    @property
    def notional(self) -> np.ndarray:
        return self._get("notional")

    @property
    def upnl(self) -> np.ndarray:
        return self._get("upnl")

    @property
    def maintenance(self) -> np.ndarray:
        return self._get("maintenance")

    @property
    def tier(self) -> np.ndarray:
        return self._get("tier")

    @property
    def equity(self) -> np.ndarray:
        return self._get("equity")

    @property
    def requirement(self) -> np.ndarray:
        return self._get("requirement")

    @property
    def liquidatable(self) -> np.ndarray:
        return self._get("liquidatable")

    @property
    def group_equity(self) -> np.ndarray:
        return self._get("group_equity")

    @property
    def group_maintenance(self) -> np.ndarray:
        return self._get("group_maintenance")

    @property
    def group_notional_over_leverage(self) -> np.ndarray:
        return self._get("group_notional_over_leverage")

    @property
    def margin_ratio(self) -> np.ndarray:
        """equity / maintenance margin: liquidation at 1 or below (inf when nothing is required)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.requirement > 0, self.equity / self.requirement, np.inf)


# What core/risk/kernels.value_rows returns, in its order: the valuation's fields but the tier.
_KERNEL_FIELDS = tuple(name for name in _VALUATION_FIELDS if name != "tier")


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# PositionBook attributes a snapshot leaves out: caches and indexes rebuilt from the columns.
_DERIVED = frozenset(
    {
        "account_index",
        "position_currency",
        "group",
        "group_order",
        "group_start",
        "size_per_x",
        "upnl_a",
        "upnl_b",
        "iso_margin_major",
        "entry_margin",
        "tier",
        "mm_c",
        "mm_d",
        "_tier_lo",
        "_tier_hi",
        "_watch",
        "inst_fee",
        "inst_entry_value",
    }
)


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
        self._conventions()
        self.position_currency = self.inst_currency[self.instrument]
        self.group = self.account * self.n_currencies + self.position_currency
        self.n_groups = len(self.account_ids) * self.n_currencies
        # Rows by cross group, in row order: a group's rows are a slice (rows never change group).
        self.group_order = np.argsort(self.group, kind="stable")
        self.group_start = np.searchsorted(
            self.group[self.group_order], np.arange(self.n_groups + 1)
        )
        self._watch: LiquidationWatch | None = None
        self.refresh()

    def __len__(self) -> int:
        return len(self.contracts)

    def __getstate__(self) -> dict[str, object]:
        """What a snapshot keeps: the positions and balances, not what is derived from them
        (a third of the size at 1M positions; rebuilt on restore)."""
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._conventions()
        self.account_index = {name: i for i, name in enumerate(self.account_ids)}
        self.position_currency = self.inst_currency[self.instrument]
        self.group = self.account * self.n_currencies + self.position_currency
        self.group_order = np.argsort(self.group, kind="stable")
        self.group_start = np.searchsorted(
            self.group[self.group_order], np.arange(self.n_groups + 1)
        )
        self._watch = None
        self.refresh()

    def _conventions(self) -> None:
        """Per instrument: the close fee rate and whether maintenance is valued at the entry
        (derived from the instruments, so a snapshot need not hold them)."""
        self.inst_fee = np.array([float(i.close_fee_rate) for i in self.instruments])
        self.inst_entry_value = np.array(
            [i.margin_convention == "entry_value" for i in self.instruments], dtype=bool
        )

    @property
    def entry_price(self) -> np.ndarray:
        return self.entry_units * self.inst_price_unit[self.instrument]

    def refresh(self, rows: np.ndarray | None = None) -> None:
        """Recompute the cached coefficients of all rows (or of `rows`) after a change.

        Every change to a row (contracts, entry, isolated margin) or to an account's cash must be
        followed by a refresh of the rows concerned (for cash: any row of that account and
        currency), so the liquidation watch re-checks them."""
        if self._watch is not None:
            if rows is None:
                self._watch.reset()
            else:
                self._watch.touch(rows)
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

    def rows_of_groups(self, groups: np.ndarray) -> np.ndarray:
        """All rows of the cross groups `groups` (unique), group by group, each in row order."""
        starts, ends = self.group_start[groups], self.group_start[groups + 1]
        return self.group_order[_ranges(starts, ends)]

    def watch(self) -> LiquidationWatch:
        """The incremental liquidation detector of this book (made on first use)."""
        if self._watch is None:
            self._watch = LiquidationWatch(self)
        return self._watch

    def x_of_marks(self, marks: np.ndarray) -> np.ndarray:
        marks = np.asarray(marks, dtype=np.float64)
        return np.where(self.inst_inverse, 1.0 / marks, marks)

    def _update_tiers(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Re-select tiers only where the price left the band its cached tier holds in (`x` per
        row of the book, or per row of `rows`)."""
        if rows is None:
            stale = np.flatnonzero((x <= self._tier_lo) | (x > self._tier_hi))
            picked, x_picked = stale, x[stale]
        else:
            stale = np.flatnonzero((x <= self._tier_lo[rows]) | (x > self._tier_hi[rows]))
            picked, x_picked = rows[stale], x[stale]
        if picked.size == 0:
            return
        instruments = self.instrument[picked]
        for k in distinct(instruments):
            mine = instruments == k
            self._assign_tiers(int(k), picked[mine], x_picked[mine])

    def entry_x(self, rows: np.ndarray) -> np.ndarray:
        """The price variable at each row's entry: E linear, 1/E inverse."""
        inst = self.instrument[rows]
        entry = self.entry_units[rows] * self.inst_price_unit[inst]
        return np.where(self.inst_inverse[inst], 1.0 / entry, entry)

    def tier_sizes(self, k: int, rows: np.ndarray, x_rows: np.ndarray) -> np.ndarray:
        """The size `rows` of instrument k read the tier table with at `x_rows`: contracts, or
        notional at the price (convention `mark`) or at the entry (`entry_value`)."""
        if self.instruments[k].tiers.basis == "contracts":
            return self.contracts[rows].astype(np.float64)
        x = self.entry_x(rows) if self.inst_entry_value[k] else x_rows
        return self.size_per_x[rows] * x

    def requirement_coefficients(
        self, k: int, rows: np.ndarray, level: np.ndarray | int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(c, d) with requirement = c*x - d for `rows` of instrument k in tier `level`, under
        the instrument's convention and with its close fee (docs/conventions.md)."""
        tiers = self.instruments[k].tiers
        per_x = self.size_per_x[rows]
        mmr, amount = tiers.mmrs[level], tiers.amounts[level]
        if tiers.basis == "contracts":
            # maintenance = cv*x*(n*mmr - amount in contracts); the level never moves with price
            contracts = self.contracts[rows].astype(np.float64)
            c = self.inst_cv[k] * (contracts * mmr - amount)
            d = np.zeros(rows.size)
        else:
            c = per_x * mmr
            d = np.broadcast_to(amount, rows.shape).astype(np.float64)
        if self.inst_entry_value[k]:
            # Valued once at the entry, the maintenance margin is a constant: c*x_entry - d.
            d = d - c * self.entry_x(rows)
            c = np.zeros(rows.size)
        fee = self.inst_fee[k]
        if fee:
            c = c + fee * per_x
        return c, d

    def _assign_tiers(self, k: int, rows: np.ndarray, x_rows: np.ndarray) -> None:
        tiers = self.instruments[k].tiers
        maxes = tiers.maxes
        floors = np.concatenate(([-np.inf], maxes[:-1]))
        level = np.searchsorted(maxes, self.tier_sizes(k, rows, x_rows), side="left")
        self.mm_c[rows], self.mm_d[rows] = self.requirement_coefficients(k, rows, level)
        if tiers.basis == "contracts" or self.inst_entry_value[k]:
            # The size the level is read with does not move with the price.
            self._tier_lo[rows] = -np.inf
            self._tier_hi[rows] = np.inf
        else:
            per_x = self.size_per_x[rows]
            with np.errstate(divide="ignore", invalid="ignore"):
                self._tier_lo[rows] = np.where(per_x > 0, floors[level] / per_x, -np.inf)
                self._tier_hi[rows] = np.where(per_x > 0, maxes[level] / per_x, np.inf)
        self.tier[rows] = level

    def revalue(self, marks: np.ndarray) -> Valuation:
        """Value every position and cross group at `marks` (one price per instrument): the
        compiled pass of core/risk/kernels.py, equal to the bit to `revalue_numpy`."""
        if not kernels.ENABLED:
            return self.revalue_numpy(marks)
        x, stale = kernels.stale_rows(
            self.x_of_marks(marks), self.instrument, self._tier_lo, self._tier_hi
        )
        if stale.size:
            self._update_tiers(x[stale], stale)
        cash = (self.balances / self.currency_scale).ravel()
        computed = kernels.value_rows(
            x,
            self.upnl_a,
            self.upnl_b,
            self.mm_c,
            self.mm_d,
            self.size_per_x,
            self.leverage,
            self.isolated,
            self.group,
            cash,
            self.iso_margin_major,
            self.contracts,
        )
        values = dict(zip(_KERNEL_FIELDS, computed, strict=True))
        values["tier"] = self.tier.copy()
        return Valuation(
            _readonly(np.array(marks, dtype=np.float64)),
            {name: _readonly(values[name]) for name in _VALUATION_FIELDS},
        )

    def revalue_numpy(self, marks: np.ndarray) -> Valuation:
        """`revalue` in numpy passes: the reference the compiled pass is tested against."""
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
        values = {
            "notional": notional,
            "upnl": upnl,
            "maintenance": maintenance,
            "tier": self.tier.copy(),
            "equity": equity,
            "requirement": requirement,
            "liquidatable": liquidatable,
            "group_equity": group_equity,
            "group_maintenance": group_maintenance,
            "group_notional_over_leverage": group_position_margin,
        }
        return Valuation(
            _readonly(np.array(marks, dtype=np.float64)),
            {name: _readonly(values[name]) for name in _VALUATION_FIELDS},
        )

    def valuation(self, marks: np.ndarray) -> Valuation:
        """The valuation at `marks`, computed when first read (see `Valuation`)."""
        return Valuation(_readonly(np.array(marks, dtype=np.float64)), None, self)

    def okx_margin_rate(self, valuation: Valuation) -> np.ndarray:
        """OKX's margin rate (seed 003): cross equity / (position margin + frozen order margin);
        isolated (fixed margin + upnl) * E * leverage / (cv * n), i.e. equity over entry margin.
        The engine models no resting orders, so no order margin is frozen."""
        cross_denominator = valuation.group_notional_over_leverage[self.group]
        denominator = np.where(self.isolated, self.entry_margin, cross_denominator)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, valuation.equity / denominator, np.inf)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenated ranges [starts[i], ends[i])."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total, dtype=np.int64)


# Thresholds are widened by this share of the magnitudes summed into an entry's margin: far above
# the float error of that sum, far below any price move that matters.
_SLACK = 1e-12
_DOWN, _UP = 0, 1
_EMPTY_F = np.zeros(0, dtype=np.float64)
_EMPTY_I = np.zeros(0, dtype=np.int64)


class LiquidationWatch:
    """Finds the positions a mark move makes liquidatable without revaluing the whole book.

    An entry is an isolated position or a cross group. While its tiers hold, its margin (equity
    minus requirement) is affine in its instrument's x, so it can only become liquidatable, or
    leave a tier band, once x passes a threshold known in advance. Thresholds sit in two sorted
    lists per instrument (x falling, x rising); a tick looks at the entries whose threshold it
    passed, those refreshed since, and those liquidatable last time; cross groups spread over
    several instruments share their margin out between them. Each is valued exactly as
    `revalue` values it, so the flags are the same; thresholds are widened by a bound on the
    float error.
    """

    def __init__(self, book: PositionBook) -> None:
        self.book = book
        self.n_rows = len(book)
        self.version = np.zeros(self.n_rows + book.n_groups, dtype=np.int64)
        self.cross_groups = distinct(book.group[~book.isolated])
        self.reset()

    def reset(self) -> None:
        """Forget every threshold: the next `detect` values every entry (after a bulk change)."""
        self._full = True
        self._dirty: list[np.ndarray] = []
        self.hot = _EMPTY_I
        n = len(self.book.instruments)
        self._main = [[(_EMPTY_F, _EMPTY_I, _EMPTY_I) for _ in (_DOWN, _UP)] for _ in range(n)]
        self._pending = (_EMPTY_F, _EMPTY_I, _EMPTY_I, _EMPTY_I)

    def touch(self, rows: np.ndarray) -> None:
        """Rows changed: their entries (and their accounts' cross groups) are valued next tick."""
        rows = np.asarray(rows, dtype=np.int64)
        book = self.book
        self._dirty.append(rows[book.isolated[rows]])
        self._dirty.append(self.n_rows + book.group[rows])

    def detect(self, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(liquidatable rows ascending, each one's own collateral in major units: its isolated
        margin, or its cross group's equity less its own upnl) at `marks`."""
        book = self.book
        x_inst = book.x_of_marks(marks)
        if self._full:
            self._full = False
            self._dirty = []
            entries = np.concatenate(
                (np.flatnonzero(book.isolated), self.n_rows + self.cross_groups)
            )
        else:
            parts = [*self._dirty, self.hot, self._fired(x_inst)]
            self._dirty = []
            entries = distinct(np.concatenate(parts))
        return self._evaluate(entries, x_inst)

    def _fired(self, x_inst: np.ndarray) -> np.ndarray:
        fired_e: list[np.ndarray] = []
        fired_v: list[np.ndarray] = []
        for k, sides in enumerate(self._main):
            xk = x_inst[k]
            t, e, v = sides[_DOWN]
            cut = int(np.searchsorted(t, xk, side="left"))
            fired_e.append(e[cut:])
            fired_v.append(v[cut:])
            sides[_DOWN] = (t[:cut], e[:cut], v[:cut])
            t, e, v = sides[_UP]
            cut = int(np.searchsorted(t, xk, side="right"))
            fired_e.append(e[:cut])
            fired_v.append(v[:cut])
            sides[_UP] = (t[cut:], e[cut:], v[cut:])
        t, e, v, key = self._pending
        if t.size:
            xs = x_inst[key >> 1]
            fire = np.where((key & 1) == _DOWN, t >= xs, t <= xs)
            fired_e.append(e[fire])
            fired_v.append(v[fire])
            keep = ~fire
            self._pending = (t[keep], e[keep], v[keep], key[keep])
        entries = np.concatenate(fired_e)
        return entries[self.version[entries] == np.concatenate(fired_v)]

    def _evaluate(self, entries: np.ndarray, x_inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value `entries` (sorted) as `revalue` would, return the liquidatable rows, and arm
        the others."""
        book = self.book
        n, n_iso = entries.size, int(np.searchsorted(entries, self.n_rows))
        iso, groups = entries[:n_iso], entries[n_iso:] - self.n_rows
        members = book.rows_of_groups(groups)
        members = members[~book.isolated[members]]
        rows = np.concatenate((iso, members))
        owner = np.concatenate(
            (np.arange(n_iso), n_iso + np.searchsorted(groups, book.group[members]))
        )
        inst = book.instrument[rows]
        x = x_inst[inst]
        book._update_tiers(x, rows)
        a, b = book.upnl_a[rows], book.upnl_b[rows]
        c, d = book.mm_c[rows], book.mm_d[rows]
        upnl = a * x + b
        maintenance = c * x - d
        open_rows = book.contracts[rows] > 0
        cash = np.concatenate(
            (
                book.iso_margin_major[iso],
                book.balances.reshape(-1)[groups] / book.currency_scale[groups % book.n_currencies],
            )
        )
        # Summed per entry in row order, as `revalue` sums them: the same floats, the same flags.
        equity = cash + np.bincount(owner, upnl, n)
        requirement = np.bincount(owner, maintenance, n)
        row_flag = open_rows & (equity <= requirement)[owner]
        entry_flag = np.bincount(owner, row_flag, n) > 0
        self.hot = entries[entry_flag]
        own = np.where(np.arange(rows.size) < n_iso, cash[owner], equity[owner] - upnl)
        flagged, own = rows[row_flag], own[row_flag]
        order = np.argsort(flagged, kind="stable")
        # Arm the rest, per (entry, instrument): the margin moves by slope * dx while tiers hold.
        size = np.abs(cash) + np.bincount(
            owner, np.abs(a * x) + np.abs(b) + np.abs(c * x) + np.abs(d), n
        )
        margin = equity - requirement - _SLACK * size
        armed = (np.bincount(owner, open_rows, n) > 0) & ~entry_flag
        width = len(book.instruments)
        keys, pair = np.unique(owner * width + inst, return_inverse=True)
        pair_entry, pair_inst = keys // width, keys % width
        slope = np.bincount(pair, a - c, keys.size)
        lo = np.full(keys.size, -np.inf)
        hi = np.full(keys.size, np.inf)
        np.maximum.at(lo, pair, book._tier_lo[rows])
        np.minimum.at(hi, pair, book._tier_hi[rows])
        # Several instruments share the margin: each may use its part of it (a move of another
        # instrument the other way only adds margin).
        budget = margin[pair_entry] / np.bincount(pair_entry, minlength=n)[pair_entry]
        live = armed[pair_entry]
        self._arm(
            entries[armed],
            entries[pair_entry[live]],
            pair_inst[live],
            x_inst[pair_inst[live]],
            slope[live],
            budget[live],
            lo[live],
            hi[live],
        )
        return flagged[order], own[order]

    def _arm(
        self,
        entries: np.ndarray,
        pair_entry: np.ndarray,
        inst: np.ndarray,
        x0: np.ndarray,
        slope: np.ndarray,
        budget: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> None:
        """Store when each entry must be looked at again: for each of its instruments, where
        that instrument's part of the margin is used up, or a tier band ends."""
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = x0 - budget / slope
        down = np.maximum(np.where(slope > 0, reach, -np.inf), lo)
        up = np.minimum(np.where(slope < 0, reach, np.inf), hi)
        # No margin left to share out: look again every tick.
        spent = budget <= 0
        self.hot = distinct(np.concatenate((self.hot, pair_entry[spent])))
        self.version[entries] += 1
        versions = self.version[pair_entry]
        t, e, v, key = self._pending
        parts_t, parts_e, parts_v, parts_k = [t], [e], [v], [key]
        for direction, bound in ((_DOWN, down), (_UP, up)):
            live = np.isfinite(bound) & ~spent
            parts_t.append(bound[live])
            parts_e.append(pair_entry[live])
            parts_v.append(versions[live])
            parts_k.append(inst[live] * 2 + direction)
        self._pending = (
            np.concatenate(parts_t),
            np.concatenate(parts_e),
            np.concatenate(parts_v),
            np.concatenate(parts_k),
        )
        stored = sum(t.size for sides in self._main for t, _, _ in sides)
        if self._pending[0].size > 4096 + stored // 8:
            self._merge()

    def _merge(self) -> None:
        """Move pending thresholds into the sorted lists, dropping ones superseded since."""
        t, e, v, key = self._pending
        for k, sides in enumerate(self._main):
            for direction in (_DOWN, _UP):
                mine = key == k * 2 + direction
                main_t, main_e, main_v = sides[direction]
                all_t = np.concatenate((main_t, t[mine]))
                all_e = np.concatenate((main_e, e[mine]))
                all_v = np.concatenate((main_v, v[mine]))
                live = self.version[all_e] == all_v
                all_t, all_e, all_v = all_t[live], all_e[live], all_v[live]
                order = np.argsort(all_t, kind="stable")
                sides[direction] = (all_t[order], all_e[order], all_v[order])
        self._pending = (_EMPTY_F, _EMPTY_I, _EMPTY_I, _EMPTY_I)
