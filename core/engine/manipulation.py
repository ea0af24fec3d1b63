"""Settlement-window manipulation checks (seed 003's safeguard): the thresholds, the per-tick price
series and fill volumes they read, and the pure assessment of one family's window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from core.model.events import AdlFill, Event, Indicator, LiquidationFilled
from core.model.settlement import SettlementChecks, WindowAssessment

if TYPE_CHECKING:
    from core.engine.state import EngineState


class TickSeries:
    """float64 samples of a fixed set of columns, one row per tick, over a trailing retention.

    Rows are appended; when the buffer is full the rows older than the retention are dropped and
    the rest moved to the front (amortized O(1) per tick). Times are whole seconds since the run's
    start and increase; a second sample at the same time replaces the first.
    """

    def __init__(self, columns: int, retention_seconds: int) -> None:
        self.retention_seconds = retention_seconds
        self._times = np.empty(256, dtype=np.int64)
        self._values = np.empty((256, columns), dtype=np.float64)
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def add(self, seconds: int, row: Sequence[float]) -> None:
        if self._length and self._times[self._length - 1] >= seconds:
            if self._times[self._length - 1] == seconds:
                self._values[self._length - 1] = row
                return
            raise ValueError(f"sample at {seconds} s is before the last one")
        if self._length == len(self._times):
            live = self._times[: self._length]
            first = int(np.searchsorted(live, seconds - self.retention_seconds, side="right"))
            kept = self._length - first
            size = len(self._times) * 2 if kept > len(self._times) // 2 else len(self._times)
            times = np.empty(size, dtype=np.int64)
            values = np.empty((size, self._values.shape[1]), dtype=np.float64)
            times[:kept] = self._times[first : self._length]
            values[:kept] = self._values[first : self._length]
            self._times, self._values, self._length = times, values, kept
        self._times[self._length] = seconds
        self._values[self._length] = row
        self._length += 1

    def window(self, begin: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the (times, rows) with begin < t <= end."""
        live = self._times[: self._length]
        lo = int(np.searchsorted(live, begin, side="right"))
        hi = int(np.searchsorted(live, end, side="right"))
        return self._times[lo:hi].copy(), self._values[lo:hi].copy()

    def digest_bytes(self) -> bytes:
        return self._times[: self._length].tobytes() + self._values[: self._length].tobytes()


class VolumeTape:
    """Fills as (seconds, instrument, account, contracts), kept over a trailing retention."""

    def __init__(self, retention_seconds: int) -> None:
        self.retention_seconds = retention_seconds
        self._rows: list[tuple[int, int, int, int]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, seconds: int, instrument: int, account: int, contracts: int) -> None:
        if contracts > 0:
            self._rows.append((seconds, instrument, account, contracts))

    def prune(self, now: int) -> None:
        cutoff = now - self.retention_seconds
        if self._rows and self._rows[0][0] <= cutoff:
            self._rows = [r for r in self._rows if r[0] > cutoff]

    def window(self, begin: int, end: int, instruments: Sequence[int]) -> np.ndarray:
        """An (n, 2) int64 array of (account, contracts) of the fills in (begin, end]."""
        wanted = set(instruments)
        rows = [(a, c) for t, k, a, c in self._rows if begin < t <= end and k in wanted]
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def digest_bytes(self) -> bytes:
        return repr(self._rows).encode()


class WindowWatch:
    """What one engine's settlement windows are judged on: each tick's index, mark and last price
    per instrument, and the fills per account (liquidations, and trades when the engine has them).

    The last price of a tick is the latest print in it (a trade's price, or the book's last fill),
    else the book's mid. A liquidation counts when it finishes (its event carries all its fills);
    a trade is any other event with an account, a symbol, contracts and a Decimal price (what
    `engine.trading` emits); ADL fills are off the book and do not count.
    """

    def __init__(self, engine: EngineState, retention_seconds: int) -> None:
        self.engine = engine
        self.symbols = {inst.symbol: k for k, inst in enumerate(engine.instruments)}
        self.series = TickSeries(3 * len(engine.instruments), retention_seconds)
        self.tape = VolumeTape(retention_seconds)
        self.observed_since: int | None = None  # seconds since the start, None when not watching
        self._last_prints: list[float | None] = [None] * len(engine.instruments)
        # The event list of the last tick watched, how much of it was counted then, and its time:
        # the liquidations of a tick come after the settlements, so they are counted a tick later.
        self._tick_events: tuple[list[Event], int, int] | None = None

    def digest(self) -> str:
        data = self.series.digest_bytes() + self.tape.digest_bytes()
        return f"{self.observed_since}|{hashlib.sha256(data).hexdigest()}"

    def observe(self, seconds: int, watching: bool) -> None:
        """Record the tick at `seconds` (after its prices and actions, before its liquidations)."""
        engine = self.engine
        if not watching:
            self.observed_since, self._tick_events = None, None
            return
        if self.observed_since is None:
            self.observed_since = seconds - engine.scenario.tick_seconds
        if self._tick_events is not None:
            previous, counted, at = self._tick_events
            self._count(previous[counted:], at)
        current = engine.events
        prints = self._count(current, seconds)
        self._tick_events = (current, len(current), seconds)
        row: list[float] = []
        for k, inst in enumerate(engine.instruments):
            liquidity = engine.liquidity[k]
            printed = liquidity.last_price
            last = prints.get(k)
            if last is None and printed is not None and printed != self._last_prints[k]:
                last = printed
            if last is None:
                last = liquidity.mid_after_impact(engine.fair_mid(k))
            self._last_prints[k] = printed
            row += [engine.index_now[inst.index], float(engine.marks[k]), last]
        self.series.add(seconds, row)
        self.tape.prune(seconds)

    def _count(self, events: list[Event], seconds: int) -> dict[int, float]:
        """Put the fills among `events` on the tape; returns the last trade price per instrument."""
        book = self.engine.book
        prints: dict[int, float] = {}
        for event in events:
            if isinstance(event, AdlFill):
                continue
            k = self.symbols.get(getattr(event, "symbol", ""))
            account = book.account_index.get(getattr(event, "account", ""))
            contracts = getattr(event, "contracts", None)
            if k is None or account is None or not isinstance(contracts, int):
                continue
            if isinstance(event, LiquidationFilled):
                self.tape.add(seconds, k, account, contracts)
                continue
            price = getattr(event, "price", None)
            if isinstance(price, Decimal):
                self.tape.add(seconds, k, account, contracts)
                prints[k] = float(price)
        return prints

    def assess(self, checks: SettlementChecks, family: str, end: int) -> WindowAssessment:
        """The checks of `family` over the window ending at `end` (seconds since the start)."""
        engine, book = self.engine, self.engine.book
        begin = end - checks.window_seconds
        ks = [k for k, inst in enumerate(engine.instruments) if inst.family == family]
        times, rows = self.series.window(begin, end)
        columns = np.array([3 * k for k in ks], dtype=np.int64)
        open_rows = np.isin(book.instrument, ks) & (book.contracts > 0)
        open_interest = max(
            int(book.contracts[open_rows & (book.side > 0)].sum()),
            int(book.contracts[open_rows & (book.side < 0)].sum()),
        )
        coverage = 0.0
        if self.observed_since is not None:
            coverage = max(0.0, min(1.0, (end - max(begin, self.observed_since)) / (end - begin)))
        return assess(
            checks,
            end,
            times,
            rows[:, columns],
            rows[:, columns + 1],
            rows[:, columns + 2],
            self.tape.window(begin, end, ks),
            open_interest,
            coverage,
            [engine.instruments[k].symbol for k in ks],
            book.account_ids,
        )


def assess(
    checks: SettlementChecks,
    end: int,
    times: np.ndarray,
    index: np.ndarray,
    mark: np.ndarray,
    last: np.ndarray,
    fills: np.ndarray,
    open_interest: int,
    coverage: float,
    symbols: Sequence[str],
    account_ids: Sequence[str],
) -> WindowAssessment:
    """Assess one family's window ending at `end` (seconds since the start).

    `times` (m,) and `index`, `mark`, `last` (m, k) are the window's ticks for the family's k
    instruments (`symbols`); `fills` is (n, 2) of (account, contracts) in the window.
    """
    indicators = (
        _gap("mark_gap", checks, times, index, mark, symbols),
        _gap("last_gap", checks, times, index, last, symbols),
        _volume_share(checks, fills, open_interest, account_ids),
        _jump(checks, end, times, index, last, symbols),
    )
    suspected = coverage >= checks.min_coverage and any(i.tripped for i in indicators)
    return WindowAssessment(indicators, coverage, suspected)


def _gap(
    name: str,
    checks: SettlementChecks,
    times: np.ndarray,
    index: np.ndarray,
    price: np.ndarray,
    symbols: Sequence[str],
) -> Indicator:
    if not times.size:
        return Indicator(name, 0.0, checks.price_gap, False, "no sample")
    gaps = np.abs(price - index) / index
    row, column = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    value = float(gaps[row, column])
    detail = (
        f"{symbols[column]} at {price[row, column]:.8g} against index {index[row, column]:.8g} "
        f"at {int(times[row])} s"
    )
    return Indicator(name, value, checks.price_gap, value > checks.price_gap, detail)


def _volume_share(
    checks: SettlementChecks, fills: np.ndarray, open_interest: int, account_ids: Sequence[str]
) -> Indicator:
    threshold = checks.volume_share
    if not len(fills):
        return Indicator("volume_share", 0.0, threshold, False, "no fill in the window")
    accounts, inverse = np.unique(fills[:, 0], return_inverse=True)
    volume = np.zeros(len(accounts), dtype=np.int64)
    np.add.at(volume, inverse, fills[:, 1])
    top = int(np.argmax(volume))
    total = int(volume.sum())
    share = int(volume[top]) / total
    material = int(volume[top]) >= checks.volume_min_open_interest * max(open_interest, 0)
    detail = (
        f"account {account_ids[int(accounts[top])]}: {int(volume[top])} of {total} contracts "
        f"(open interest {open_interest})"
    )
    return Indicator("volume_share", share, threshold, share > threshold and material, detail)


def _jump(
    checks: SettlementChecks,
    end: int,
    times: np.ndarray,
    index: np.ndarray,
    last: np.ndarray,
    symbols: Sequence[str],
) -> Indicator:
    recent = times > end - checks.jump_seconds
    if not recent.any():
        return Indicator("jump", 0.0, checks.jump, False, "no sample")
    best, detail = 0.0, ""
    for label, series in (("index", index[recent]), ("last price", last[recent])):
        ranges = series.max(axis=0) / series.min(axis=0) - 1
        column = int(np.argmax(ranges))
        if float(ranges[column]) > best or not detail:
            best = float(ranges[column])
            detail = (
                f"{label} of {symbols[column]} ranged {series[:, column].min():.8g}-"
                f"{series[:, column].max():.8g} in the last {checks.jump_seconds} s"
            )
    return Indicator("jump", best, checks.jump, best > checks.jump, detail)
