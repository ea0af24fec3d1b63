"""The stress ladder: for each mark shock (every instrument's mark moved by the same percentage),
what the insurance fund would pay, the deficit left and the projected clawback ratio, computed
from the engine's columns without changing them (docs/console.md, "Stress ladder")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.model.arrays import distinct
from core.session.snapshot import StressRow

if TYPE_CHECKING:
    from core.engine.facade import Engine

SHOCKS = (-0.20, -0.15, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15, 0.20)


def projected_clawback_ratios(
    engine: Engine,
    upnl: np.ndarray | None = None,
    added: dict[tuple[str, str], int] | None = None,
) -> dict[str, float]:
    """Per currency, the worst clawback ratio a settlement now would apply (the deficit beyond the
    fund's free balance over the family's profit), as DESIGN.md section 4 defines it. `upnl` (per
    position, major units) and `added` (more deficit per family and currency, minor units) value
    it at shocked marks; by default it is the engine's own valuation and deficit."""
    book, out = engine.book, {}
    upnl = engine.valuation.upnl if upnl is None else upnl
    for (family, code), pnl in engine.period_pnl.items():
        uncovered = engine.uncovered[(family, code)] + (added or {}).get((family, code), 0)
        shared = uncovered - max(0, engine.desk.fund_free(code))
        if shared <= 0:
            out[code] = max(out.get(code, 0.0), 0.0)
            continue
        scale = float(engine.scenario.currencies[code].scale)
        in_family = np.array([i.family == family for i in engine.instruments])
        rows = np.flatnonzero(in_family[book.instrument] & (book.contracts > 0))
        account_upnl = np.bincount(
            book.account[rows], weights=upnl[rows], minlength=len(book.account_ids)
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
    desk is already working (reserved for in the fund) are left out. The engine is only read."""
    book = engine.book
    codes = engine.currency_codes
    scale = book.currency_scale
    cross = ~book.isolated
    open_rows = book.contracts > 0
    families = [(i.family, i.settle_currency) for i in engine.instruments]
    marks = np.asarray(engine.marks, dtype=np.float64)
    out: list[StressRow] = []
    for shock in shocks:
        x = book.x_of_marks(marks * (1.0 + shock))[book.instrument]
        # Shock 0 takes the engine's own valuation, so that its row is the overview's figures.
        upnl = np.asarray(engine.valuation.upnl) if shock == 0.0 else book.upnl_a * x + book.upnl_b
        maintenance = book.mm_c * x - book.mm_d
        cash = (book.balances / scale).ravel()
        group_equity = cash + np.bincount(
            book.group, weights=np.where(cross & open_rows, upnl, 0.0), minlength=book.n_groups
        )
        group_need = np.bincount(
            book.group,
            weights=np.where(cross & open_rows, maintenance, 0.0),
            minlength=book.n_groups,
        )
        iso_equity = book.iso_margin_major + upnl
        iso_hit = open_rows & book.isolated & (iso_equity <= maintenance)
        has_cross = np.bincount(book.group[cross & open_rows], minlength=book.n_groups) > 0
        group_hit = has_cross & (group_equity <= group_need)
        # Each hit cross group's deficit goes to the family of its largest position (by size).
        cross_rows = np.flatnonzero(cross & open_rows & group_hit[book.group])
        size = book.size_per_x * x
        pick = np.full(book.n_groups, -1, dtype=np.int64)
        if cross_rows.size:
            by_size = cross_rows[np.argsort(size[cross_rows], kind="stable")]
            pick[book.group[by_size]] = by_size  # the last (largest) write wins
        added: dict[tuple[str, str], int] = {}
        hits = dict.fromkeys(codes, 0)
        for rows, equity in (
            (np.flatnonzero(iso_hit), iso_equity),
            (pick[group_hit & (pick >= 0)], None),
        ):
            if rows.size == 0:
                continue
            values = equity[rows] if equity is not None else group_equity[book.group[rows]]
            currency = book.position_currency[rows]
            minor = np.rint(np.maximum(0.0, -values) * scale[currency]).astype(np.int64)
            instrument = book.instrument[rows]
            for k in distinct(instrument).tolist():
                sel = instrument == k
                key = families[k]
                added[key] = added.get(key, 0) + int(minor[sel].sum())
                hits[key[1]] += int(sel.sum())
        ratios = projected_clawback_ratios(engine, upnl, added)
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
