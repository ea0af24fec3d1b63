"""The incident report's chart data read from a store: price lines thinned to MAX_POINTS points,
liquidation markers, the insurance fund's balance and margin-ratio distributions before and after."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlite_utils

from core.model.events import iso
from core.report.scope import LiquidationRow, Scope, money, parse_time

MAX_POINTS = 2000
# Half the window of the close-up price chart around the largest liquidation.
ZOOM_SECONDS = 3600
# Upper edges of the margin-ratio bins (equity / maintenance; liquidation at 1).
RATIO_EDGES = (1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Series:
    """A price line (index, mark or last of one name), thinned to at most MAX_POINTS points by
    keeping each bucket's low and high."""

    kind: str
    name: str
    times: tuple[str, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Marker:
    """A listed liquidation on the price chart: when it started, at its average fill price."""

    time: str
    symbol: str
    side: str
    account: str
    contracts: int
    price: float


@dataclass(frozen=True, slots=True)
class FundSeries:
    """The insurance fund's balance after each posting in the range (minor units)."""

    currency: str
    times: tuple[str, ...]
    balances: tuple[int, ...] = money(())


@dataclass(frozen=True, slots=True)
class Distribution:
    """Open positions in scope by margin ratio (equity / maintenance; liquidation at 1)."""

    label: str
    tick: int
    time: str
    bins: tuple[str, ...]
    counts: tuple[int, ...]
    positions: int
    liquidatable: int


@dataclass(frozen=True, slots=True)
class Charts:
    """`zoom` is the prices from ZOOM_SECONDS before to after the start of the largest listed
    liquidation (`zoom_start` to `zoom_end`), when the range is longer than that window."""

    prices: tuple[Series, ...]
    markers: tuple[Marker, ...]
    fund: tuple[FundSeries, ...]
    margin: tuple[Distribution, ...]
    zoom: tuple[Series, ...]
    zoom_start: str | None
    zoom_end: str | None


def build_charts(
    db: sqlite_utils.Database,
    scope: Scope,
    listed: tuple[LiquidationRow, ...],
    store_path: str | Path,
    distributions: bool,
    progress: Callable[[str, int], None],
) -> Charts:
    lines = _price_lines(db, scope, scope.start_tick, scope.end_tick)
    zoom: tuple[Series, ...] = ()
    zoom_start = zoom_end = None
    largest = max(listed, key=lambda r: r.contracts, default=None)
    step = (parse_time(scope.run_end, "end") - parse_time(scope.run_start, "start")).total_seconds()
    step /= max(1, _last_tick(db))
    if largest is not None and (scope.end_tick - scope.start_tick) * step > 4 * ZOOM_SECONDS:
        centre = parse_time(largest.started, "started")
        first = max(parse_time(scope.start, "start"), centre - timedelta(seconds=ZOOM_SECONDS))
        last = min(parse_time(scope.end, "end"), centre + timedelta(seconds=ZOOM_SECONDS))
        zoom_start, zoom_end = iso(first), iso(last)
        ticks = [round((t - parse_time(scope.run_start, "start")).total_seconds() / step)
                 for t in (first, last)]  # fmt: skip
        zoom = _price_lines(db, scope, ticks[0], ticks[1])
    markers = tuple(
        Marker(r.started, r.symbol, r.side, r.account, r.contracts, float(r.fill_price))
        for r in listed
    )
    fund = []
    for code in scope.currency_codes:
        rows = db.execute(
            "SELECT time, balance_after FROM fund_history WHERE currency = ? "
            "AND time BETWEEN ? AND ? ORDER BY tick, seq",
            (code, scope.start, scope.end),
        ).fetchall()
        keep = _thin(np.array([r[1] for r in rows], dtype=np.float64)) if rows else []
        fund.append(
            FundSeries(code, tuple(rows[i][0] for i in keep), tuple(int(rows[i][1]) for i in keep))
        )
    margin: list[Distribution] = []
    if distributions:
        for label, tick, pct in (("before", scope.start_tick, 55), ("after", scope.end_tick, 75)):
            progress(f"margin ratios {label}", pct)
            margin.append(_distribution(store_path, scope, label, tick))
    return Charts(lines, markers, tuple(fund), tuple(margin), zoom, zoom_start, zoom_end)


def _last_tick(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT max(tick) FROM journal WHERE kind = 'tick'").fetchone()[0] or 0)


def _price_lines(
    db: sqlite_utils.Database, scope: Scope, first: int, last: int
) -> tuple[Series, ...]:
    """Index lines of the instruments in scope, then each one's mark and last, ticks first..last."""
    lines: list[Series] = []
    wanted = [("index", name) for name in dict.fromkeys(i for _, i in scope.symbol_index)]
    for symbol in scope.symbols:
        wanted += [("mark", symbol), ("last", symbol)]
    for kind, name in wanted:
        rows = db.execute(
            "SELECT time, price FROM prices WHERE kind = ? AND name = ? AND tick BETWEEN ? AND ? "
            "ORDER BY tick",
            (kind, name, first, last),
        ).fetchall()
        rows = [r for r in rows if r[1] is not None and math.isfinite(r[1])]
        if rows:
            keep = _thin(np.array([r[1] for r in rows], dtype=np.float64))
            lines.append(
                Series(kind, name, tuple(rows[i][0] for i in keep), tuple(rows[i][1] for i in keep))
            )
    return tuple(lines)


def _thin(values: np.ndarray) -> list[int]:
    """Indices of at most MAX_POINTS points: first, last, and each bucket's low and high."""
    n = values.size
    if n <= MAX_POINTS:
        return list(range(n))
    edges = np.linspace(0, n, MAX_POINTS // 2 + 1).astype(np.int64)
    keep = {0, n - 1}
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if b > a:
            chunk = values[a:b]
            keep.add(a + int(np.argmin(chunk)))
            keep.add(a + int(np.argmax(chunk)))
    return sorted(keep)


def ratio_bins() -> tuple[str, ...]:
    labels = [f"<= {RATIO_EDGES[0]:g}"]
    labels += [f"{a:g}-{b:g}" for a, b in itertools.pairwise(RATIO_EDGES)]
    return (*labels, f"> {RATIO_EDGES[-1]:g}")


def _distribution(store_path: str | Path, scope: Scope, label: str, tick: int) -> Distribution:
    from core.session.session import Session

    session = Session.open(store_path, at=tick)
    try:
        engine = session.engine
        book, valuation = engine.book, engine.valuation
        held = book.contracts > 0
        if scope.instruments:
            wanted = [k for k, i in enumerate(engine.instruments) if i.symbol in scope.symbols]
            held &= np.isin(book.instrument, wanted)
        if scope.accounts:
            ids = [book.account_index[a] for a in scope.accounts if a in book.account_index]
            held &= np.isin(book.account, ids)
        ratio = valuation.margin_ratio[held]
        # A ratio of exactly an edge belongs to the bin it closes (<= 1 is liquidatable).
        counts = np.bincount(
            np.searchsorted(np.array(RATIO_EDGES), ratio, side="left"),
            minlength=len(RATIO_EDGES) + 1,
        )
        return Distribution(
            label=label,
            tick=int(engine.tick),
            time=iso(engine.now),
            bins=ratio_bins(),
            counts=tuple(int(c) for c in counts),
            positions=int(ratio.size),
            liquidatable=int(np.count_nonzero(ratio <= 1.0)),
        )
    finally:
        session.close()
