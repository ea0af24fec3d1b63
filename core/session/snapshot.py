"""Immutable snapshots of a running session for the console: the position table (read-only numpy
columns), per-currency overview figures, per-tick series, and append-only liquidation and event
logs, as values safe to read from any thread. They are built on the engine's thread by
core/session/snapshot_builder.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from core.model.units import format_minor

if TYPE_CHECKING:
    from core.feed.link import LinkStatus

AT_RISK_RATIO = 1.5  # margin ratio at or below which an account counts as at risk
LIQUIDATING = (
    1 << 6
)  # flags bit beside core.engine.controls' account flags: a desk order is working it
HISTOGRAM_EDGES = np.concatenate(([0.0], np.geomspace(0.25, 100.0, 40), [np.inf]))
LADDER_BINS = 60
LADDER_SPAN = 0.30  # the ladder covers the mark +-30%


def read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How the position table is filtered and sorted (all thresholds optional)."""

    sort_key: str = "margin_ratio"
    descending: bool = False
    text: str = ""
    max_margin_ratio: float | None = None
    min_notional: float | None = None
    open_only: bool = True
    flagged_only: bool = False


@dataclass(frozen=True, slots=True)
class PositionTable:
    """Every position of the book: one read-only column per field, `order` the rows to show."""

    account_ids: tuple[str, ...]
    symbols: tuple[str, ...]
    currencies: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    order: np.ndarray
    spec: TableSpec
    # Per instrument, the margin convention in words (`Instrument.convention_text`).
    conventions: tuple[str, ...] = ()

    def convention_of(self, instrument: int) -> str:
        """The convention instrument `instrument` follows, "mark" when none was given."""
        if 0 <= instrument < len(self.conventions):
            return self.conventions[instrument]
        return "mark"

    def __len__(self) -> int:
        return len(self.columns["contracts"])

    def rows_of_account(self, account: int) -> np.ndarray:
        return np.flatnonzero(self.columns["account"] == account)


TABLE_KEYS = (
    "account",
    "symbol",
    "side",
    "contracts",
    "equity",
    "notional",
    "leverage",
    "margin_ratio",
    "okx_rate",
    "liquidation",
    "bankruptcy",
    "distance_pct",
    "upnl",
    "adl",
    "flags",
)


def table_order(table: PositionTable | Mapping[str, np.ndarray], spec: TableSpec) -> np.ndarray:
    """Rows passing `spec`'s filters, sorted by its key (NaN last either way), as int64."""
    columns = table.columns if isinstance(table, PositionTable) else table
    mask = np.ones(len(columns["contracts"]), dtype=bool)
    if spec.open_only:
        mask &= columns["contracts"] > 0
    if spec.flagged_only:
        mask &= columns["flags"] != 0
    if spec.max_margin_ratio is not None:
        mask &= columns["margin_ratio"] <= spec.max_margin_ratio
    if spec.min_notional is not None:
        mask &= columns["notional"] >= spec.min_notional
    if spec.text and isinstance(table, PositionTable):
        needle = spec.text.lower()
        hits = np.array([needle in a.lower() for a in table.account_ids], dtype=bool)
        sym_hits = np.array([needle in s.lower() for s in table.symbols], dtype=bool)
        mask &= hits[columns["account"]] | sym_hits[columns["symbol"]]
    rows = np.flatnonzero(mask)
    key = columns.get(spec.sort_key)
    if key is None or rows.size == 0:
        return rows
    if spec.sort_key == "account" and isinstance(table, PositionTable):
        # Sort by name, not by index: rank the names once, then sort rows by rank.
        ranks = np.empty(len(table.account_ids), dtype=np.int64)
        ranks[np.argsort(np.array(table.account_ids, dtype=object))] = np.arange(ranks.size)
        values = ranks[key[rows]].astype(np.float64)
    else:
        values = key[rows].astype(np.float64, copy=False)
    if spec.descending:
        values = -values
    # NaN sorts last in numpy; -inf/inf keep their places as the extremes they are.
    return rows[np.argsort(values, kind="stable")]


@dataclass(frozen=True, slots=True)
class CurrencyOverview:
    """One settle currency's figures; amounts are ints in minor units."""

    code: str
    decimals: int
    fund_balance: int
    fund_reserved: int
    open_interest: int  # contracts, the larger side
    open_notional: float  # major units, that side
    at_risk_accounts: int
    at_risk_equity: float
    liquidations: int
    deficit_total: int
    deficit_covered: int
    deficit_uncovered: int
    injected: int
    clawback_applied: int
    clawback_pending: int
    adl_fills: int
    projected_clawback_ratio: float | None


@dataclass(frozen=True, slots=True)
class StressRow:
    """One rung of the stress ladder (core/session/stress.py): a currency at a mark shock;
    amounts in minor units."""

    currency: str
    decimals: int
    shock: float  # -0.2: every mark 20 % lower
    liquidations: int  # positions (isolated) and cross groups liquidated at the shocked marks
    new_deficit: int
    fund_pays: int  # of the deficit waiting for settlement plus the new one
    deficit_left: int
    clawback_ratio: float


@dataclass(frozen=True, slots=True)
class Log:
    """A read-only view of the first `n` rows of an append-only columnar log; `text` rows are
    Python strings (shared lists that only grow, so the first `n` never change)."""

    columns: Mapping[str, np.ndarray]
    text: Mapping[str, Sequence[str]]
    n: int

    def __len__(self) -> int:
        return self.n


class Written(Sequence[str]):
    """A text column kept as the values it is written from and written on first read: a
    cascade tick brings thousands of events, and describing each on the engine thread cost more
    than the tick itself; the event log reads the few rows it shows."""

    def __init__(self, values: list[Any], write: Callable[[Any], str], n: int) -> None:
        self._values, self._write, self._n = values, write, n
        self._texts: dict[int, str] = {}

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, row: int) -> str: ...
    @overload
    def __getitem__(self, row: slice) -> list[str]: ...
    def __getitem__(self, row: int | slice) -> str | list[str]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(self._n))]
        if row < 0:
            row += self._n
        if not 0 <= row < self._n:
            raise IndexError(row)
        text = self._texts.get(row)
        if text is None:
            text = self._texts[row] = self._write(self._values[row])
        return text


class Columns:
    """An append-only columnar log that grows by doubling; views stay valid while it grows.
    `written` text columns hold what their text is written from (see `Written`)."""

    def __init__(
        self,
        dtypes: Mapping[str, Any],
        text: Iterable[str] = (),
        written: Mapping[str, Callable[[Any], str]] | None = None,
    ) -> None:
        self.dtypes = dict(dtypes)
        self.n = 0
        self.arrays = {k: np.zeros(256, dtype=d) for k, d in self.dtypes.items()}
        self.written = dict(written or {})
        self.text: dict[str, list[Any]] = {k: [] for k in (*text, *self.written)}

    def append(self, values: Mapping[str, Any], text: Mapping[str, str] | None = None) -> None:
        if self.n == len(next(iter(self.arrays.values()))):
            # Fresh arrays: views handed out keep the old ones, which are never written again.
            self.arrays = {k: np.concatenate((a, np.zeros_like(a))) for k, a in self.arrays.items()}
        for k, v in values.items():
            self.arrays[k][self.n] = v
        for k, v in (text or {}).items():
            self.text[k].append(v)
        self.n += 1

    def truncate(self, keep: np.ndarray) -> None:
        """Keep only rows where `keep` is true (after a seek back), in fresh storage."""
        rows = np.flatnonzero(keep[: self.n])
        self.arrays = {
            k: np.concatenate((a[rows], np.zeros(256, a.dtype))) for k, a in self.arrays.items()
        }
        self.text = {k: [v[i] for i in rows.tolist()] for k, v in self.text.items()}
        self.n = rows.size

    def view(self) -> Log:
        columns = {k: read_only(a[: self.n]) for k, a in self.arrays.items()}
        text: dict[str, Sequence[str]] = {
            k: Written(v, self.written[k], self.n) if k in self.written else v
            for k, v in self.text.items()
        }
        return Log(MappingProxyType(columns), MappingProxyType(text), self.n)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the console shows at one tick. Arrays are read-only; amounts are minor units."""

    scenario: str
    tick: int
    ticks_total: int
    tick_seconds: int
    start_epoch: float
    now: datetime
    head: int
    live: bool
    finished: bool
    playing: bool
    speed: float  # simulated seconds per real second; 0 = as fast as possible
    ticks_per_second: float
    store_path: str | None
    notice: str | None
    instruments: tuple[str, ...]
    instrument_currency: tuple[str, ...]
    quote_units: tuple[str, ...]  # what each instrument's price is quoted in (USD, USDT)
    indices: tuple[str, ...]
    marks: tuple[float, ...]
    index_now: tuple[float, ...]
    overview: tuple[CurrencyOverview, ...]
    table: PositionTable
    series: Mapping[str, np.ndarray]
    times: np.ndarray  # epoch seconds per tick, first `tick + 1` entries
    liquidations: Log
    events: Log
    ratio_histogram: np.ndarray  # open positions per HISTOGRAM_EDGES bin
    ladder: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # symbol: prices, long, short
    watched: str | None = None
    watched_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    feed: LinkStatus | None = None  # on a live feed: how its link is
    stress: tuple[StressRow, ...] = ()  # the stress ladder, recomputed about once a second

    def epoch(self, tick: int | np.ndarray) -> Any:
        return self.start_epoch + np.asarray(tick) * self.tick_seconds


def describe(event: object, decimals: Mapping[str, int]) -> tuple[str, str | None, str]:
    """(kind, account or None, one-line summary) of an engine event, amounts in major units."""
    kind = type(event).__name__
    account = getattr(event, "account", None)
    message = getattr(event, "message", None)
    if isinstance(message, str):
        return kind, account, message
    currency = getattr(event, "currency", None)
    places = decimals.get(currency, 8) if isinstance(currency, str) else 8
    parts = []
    for f in fields(event) if is_dataclass(event) else ():
        if f.name in ("time", "allocations", "started") or f.name == "account":
            continue
        value = getattr(event, f.name)
        if value is None or value == ():
            continue
        if isinstance(value, int) and not isinstance(value, bool) and f.name in _AMOUNTS:
            value = format_minor(value, places, display=True)  # exact: never through float
        elif isinstance(value, float):
            value = f"{value:,.6g}"
        parts.append(f"{f.name}={value}")
    return kind, account, " ".join(parts)


_AMOUNTS = frozenset(
    {
        "reserved",
        "surplus",
        "deficit",
        "covered_by_fund",
        "amount",
        "balance_after",
        "total_profit",
        "unrecovered",
    }
)
