"""The stress ladder: for each mark shock (every instrument's mark moved by the same percentage),
what the insurance fund would pay, the deficit left and the projected clawback ratio, computed
from the engine's columns without changing them (docs/console.md, "Stress ladder")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from core.model.arrays import distinct
from core.session.snapshot import StressRow

if TYPE_CHECKING:
    from core.engine.facade import Engine
    from core.risk.positions import PositionBook

SHOCKS = (-0.20, -0.15, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15, 0.20)


def projected_clawback_ratios(
    engine: Engine,
    upnl: Callable[[], np.ndarray] | None = None,
    added: dict[tuple[str, str], int] | None = None,
) -> dict[str, float]:
    """Per currency, the worst clawback ratio a settlement now would apply (the deficit beyond the
    fund's free balance over the family's profit), as DESIGN.md section 4 defines it. `upnl` (per
    position, major units, asked for only when some deficit is shared) and `added` (more deficit
    per family and currency, minor units) value it at shocked marks; by default it is the
    engine's own valuation and deficit."""
    book, out = engine.book, {}
    position_upnl: np.ndarray | None = None
    for (family, code), pnl in engine.period_pnl.items():
        uncovered = engine.uncovered[(family, code)] + (added or {}).get((family, code), 0)
        shared = uncovered - max(0, engine.desk.fund_free(code))
        if shared <= 0:
            out[code] = max(out.get(code, 0.0), 0.0)
            continue
        if position_upnl is None:
            position_upnl = engine.valuation.upnl if upnl is None else upnl()
        scale = float(engine.scenario.currencies[code].scale)
        in_family = np.array([i.family == family for i in engine.instruments])
        rows = np.flatnonzero(in_family[book.instrument] & (book.contracts > 0))
        account_upnl = np.bincount(
            book.account[rows], weights=position_upnl[rows], minlength=len(book.account_ids)
        )
        profit = pnl / scale + account_upnl
        total = float(profit[profit > 0].sum())
        ratio = min(1.0, shared / scale / total) if total > 0 else 1.0
        out[code] = max(out.get(code, 0.0), ratio)
    return out


def stress_ladder(engine: Engine, shocks: tuple[float, ...] = SHOCKS) -> tuple[StressRow, ...]:
    """One row per currency and shock. At a shocked mark a position (an isolated one, or the
    cross group it is in) whose equity falls to its maintenance margin or below is liquidated
    there; its equity below zero is new deficit. The fund's free balance pays the deficit waiting
    for settlement plus the new one first; what it cannot pay is left to the clawback.

    Valuation floats, as the engine's own: the maintenance tiers stay those of the current marks,
    a new deficit is rounded to the nearest minor unit, liquidation surpluses and the orders the
    desk is already working (reserved for in the fund) are left out. The engine is only read.
    What no shock changes (which rows are open, cross or isolated, their coefficients) is taken
    once; each shock then values only the open rows."""
    book = engine.book
    # The engine's valuation first: reading it brings the tier coefficients up to the marks.
    engine_upnl = np.asarray(engine.valuation.upnl)
    codes = engine.currency_codes
    scale = book.currency_scale
    open_rows = book.contracts > 0
    cross_rows = np.flatnonzero(open_rows & ~book.isolated)
    iso_rows = np.flatnonzero(open_rows & book.isolated)
    cross = _Rows(book, cross_rows)
    iso = _Rows(book, iso_rows)
    cross_group = book.group[cross_rows]
    iso_margin = book.iso_margin_major[iso_rows]
    cash = (book.balances / scale).ravel()
    has_cross = np.bincount(cross_group, minlength=book.n_groups) > 0
    families = [(i.family, i.settle_currency) for i in engine.instruments]
    marks = np.asarray(engine.marks, dtype=np.float64)
    out: list[StressRow] = []
    for shock in shocks:
        x_of_instrument = book.x_of_marks(marks * (1.0 + shock))
        # Shock 0 takes the engine's own valuation, so that its row is the overview's figures.
        own = shock == 0.0
        cross_upnl, cross_maintenance = cross.valued(x_of_instrument, engine_upnl if own else None)
        iso_upnl, iso_maintenance = iso.valued(x_of_instrument, engine_upnl if own else None)
        group_equity = cash + np.bincount(cross_group, cross_upnl, minlength=book.n_groups)
        group_need = np.bincount(cross_group, cross_maintenance, minlength=book.n_groups)
        iso_equity = iso_margin + iso_upnl
        iso_hit = iso_equity <= iso_maintenance
        group_hit = has_cross & (group_equity <= group_need)
        # Each hit cross group's deficit goes to the family of its largest position (by size).
        in_hit = group_hit[cross_group]
        hit_rows = cross_rows[in_hit]
        pick = np.full(book.n_groups, -1, dtype=np.int64)
        if hit_rows.size:
            size = book.size_per_x[hit_rows] * x_of_instrument[book.instrument[hit_rows]]
            by_size = hit_rows[np.argsort(size, kind="stable")]
            pick[book.group[by_size]] = by_size  # the last (largest) write wins
        added: dict[tuple[str, str], int] = {}
        hits = dict.fromkeys(codes, 0)
        picked = pick[group_hit & (pick >= 0)]
        for rows, values in (
            (iso_rows[iso_hit], iso_equity[iso_hit]),
            (picked, group_equity[book.group[picked]]),
        ):
            if rows.size == 0:
                continue
            currency = book.position_currency[rows]
            minor = np.rint(np.maximum(0.0, -values) * scale[currency]).astype(np.int64)
            instrument = book.instrument[rows]
            for k in distinct(instrument).tolist():
                sel = instrument == k
                key = families[k]
                added[key] = added.get(key, 0) + int(minor[sel].sum())
                hits[key[1]] += int(sel.sum())

        def shocked_upnl(x: np.ndarray = x_of_instrument, own: bool = own) -> np.ndarray:
            if own:
                return engine_upnl
            return book.upnl_a * x[book.instrument] + book.upnl_b

        ratios = projected_clawback_ratios(engine, shocked_upnl, added)
        for code in codes:
            waiting = sum(v for (_, c), v in engine.uncovered.items() if c == code)
            new = sum(v for (_, c), v in added.items() if c == code)
            free = max(0, engine.desk.fund_free(code))
            pays = min(free, waiting + new)
            out.append(
                StressRow(
                    currency=code,
                    decimals=engine.scenario.currencies[code].decimals,
                    shock=shock,
                    liquidations=hits[code],
                    new_deficit=new,
                    fund_pays=pays,
                    deficit_left=waiting + new - pays,
                    clawback_ratio=ratios.get(code, 0.0),
                )
            )
    return tuple(out)


class _Rows:
    """Some rows of the book with their valuation coefficients, taken once for every shock."""

    def __init__(self, book: PositionBook, rows: np.ndarray) -> None:
        self.rows = rows
        self.instrument = book.instrument[rows]
        self.upnl_a, self.upnl_b = book.upnl_a[rows], book.upnl_b[rows]
        self.mm_c, self.mm_d = book.mm_c[rows], book.mm_d[rows]

    def valued(
        self, x_of_instrument: np.ndarray, upnl: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(unrealized PnL, maintenance margin) of the rows at these prices (the PnL given, when
        it is the engine's own)."""
        x = x_of_instrument[self.instrument]
        pnl = self.upnl_a * x + self.upnl_b if upnl is None else upnl[self.rows]
        return pnl, self.mm_c * x - self.mm_d
