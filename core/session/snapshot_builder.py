"""Building the console's snapshots from a running session, on the engine thread: the position
table's columns, per-currency figures, logs and the charts' series, handed over as the immutable
values of core/session/snapshot.py."""

from __future__ import annotations

import itertools
import math
import time as wallclock
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from core.engine.ledger import INSURANCE_FUND
from core.engine.views import adl_lights
from core.model.events import ClawbackComputed, FundPosting, LiquidationFilled
from core.risk.margin import risk_prices

if TYPE_CHECKING:
    from core.feed.link import LinkStatus
    from core.session.session import Session

from core.session.snapshot import (
    AT_RISK_RATIO,
    HISTOGRAM_EDGES,
    LADDER_BINS,
    LADDER_SPAN,
    LIQUIDATING,
    Columns,
    CurrencyOverview,
    PositionTable,
    Snapshot,
    StressRow,
    TableSpec,
    describe,
    read_only,
    table_order,
)
from core.session.stress import projected_clawback_ratios, stress_ladder

__all__ = ["SnapshotBuilder", "projected_clawback_ratios"]
STRESS_SECONDS = 1.0  # the stress ladder at most once a second (and a tenth of the thread)


class SnapshotBuilder:
    """Records each tick of a session (prices, fund, logs) and builds snapshots on request.

    The costly per-position columns (risk prices, ADL lights) are recomputed at most as often as
    keeps them under a tenth of the engine thread's time; between, the last ones are reused."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._heavy_at = -math.inf
        self._heavy_cost = 0.0
        self._heavy: dict[str, np.ndarray] = {}
        self._stress_at = -math.inf
        self._stress_cost = 0.0
        self._stress: tuple[StressRow, ...] = ()
        self._order_at = -math.inf
        self._order_cost = 0.0
        self._order: tuple[TableSpec, int, np.ndarray] | None = None
        self._ladder_rows: dict[str, tuple[np.ndarray, ...]] = {}
        self._watch_ratio: list[tuple[int, float]] = []
        self.watched: str | None = None
        self.reset()

    # ----- recording ----------------------------------------------------------------------

    def reset(self) -> None:
        """Start the series and logs over (a new session); fills what the store already knows."""
        engine = self.session.engine
        total = engine.ticks_total
        self.decimals = {c.code: c.decimals for c in engine.currencies}
        self.account_ids = tuple(engine.book.account_ids)
        self.start_epoch = engine.scenario.start.timestamp()
        self.times = (
            self.start_epoch + np.arange(total, dtype=np.float64) * engine.scenario.tick_seconds
        )
        names = [f"index:{n}" for n in engine.index_now]
        for inst in engine.instruments:
            names += [f"mark:{inst.symbol}", f"last:{inst.symbol}"]
        for code in engine.currency_codes:
            names += [
                f"{m}:{code}"
                for m in (
                    "fund",
                    "reserved",
                    "oi",
                    "at_risk",
                    "liqs",
                    "covered",
                    "uncovered",
                    "clawback",
                )
            ]
        self.series = {n: np.full(total, np.nan) for n in names}
        self.liqs = Columns(
            {
                "tick": np.int64,
                "account": np.int64,
                "symbol": np.int64,
                "side": np.int8,
                "contracts": np.int64,
                "fill_price": np.float64,
                "bankruptcy": np.float64,
                "surplus": np.int64,
                "deficit": np.int64,
                "covered": np.int64,
                "partial": bool,
                "currency": np.int64,
            }
        )
        decimals = self.decimals
        self.events = Columns(
            {"tick": np.int64, "account": np.int64},
            ("kind",),
            {"text": lambda event: describe(event, decimals)[2]},
        )
        self.money = {
            c: {
                "injected": 0,
                "clawback_applied": 0,
                "clawback_pending": 0,
                "adl_fills": 0,
                "liqs": 0,
            }
            for c in engine.currency_codes
        }
        self._money_at: list[tuple[int, str, str, int]] = []
        self._watch_ratio = []
        self._fill_from_store()
        self._fill_events()
        self.record_tick([])

    def _fill_events(self) -> None:
        """A session opened part-way: the logs and counters of the events its collector holds
        (the liquidations, the money figures), tick by tick as they were recorded."""
        scenario = self.session.engine.scenario
        start, seconds = scenario.start, scenario.tick_seconds
        for t, group in itertools.groupby(
            self.session.collector.events,
            key=lambda event: int((event.time - start).total_seconds() // seconds),
        ):
            self._record_events(t, list(group))

    def _fill_from_store(self) -> None:
        """A store opened (or sought to) part-way: the price and fund timelines before the tick
        from what it recorded (prices every `price_every` ticks, every fund movement), so that
        the charts show the run so far, not one point."""
        store, tick = self.session.store, self.session.engine.tick
        if store is None or tick == 0:
            return
        self._grow(tick)
        # A what-if branch holds neither its parent's prices nor its fund movements before its
        # fork: before the store's first tick the timelines stay empty, not made up.
        since = store.first_tick()
        for t, kind, name, price in store.price_points(tick):
            values = self.series.get(f"{kind}:{name}")
            if values is not None and t < values.size:
                values[t] = price
        movements: dict[str, list[tuple[int, int, int]]] = {}
        for t, code, amount, after in store.fund_movements(tick):
            movements.setdefault(code, []).append((t, amount, after))
        for code, rows in movements.items():
            values = self.series.get(f"fund:{code}")
            if values is None:
                continue
            ticks = np.array([t for t, _, _ in rows], dtype=np.int64)
            after = np.array([a for _, _, a in rows], dtype=np.float64)
            # The balance at each tick: after the last movement at or before it; before the
            # first, what that movement started from.
            at = np.searchsorted(ticks, np.arange(since, tick), side="right") - 1
            first = float(rows[0][2] - rows[0][1])
            values[since:tick] = np.where(at >= 0, after[np.maximum(at, 0)], first)

    def rewind(self) -> None:
        """After a seek back: drop what happened after the engine's tick."""
        tick = self.session.engine.tick
        for values in self.series.values():
            values[tick + 1 :] = np.nan
        self.series = {k: v.copy() for k, v in self.series.items()}
        self.liqs.truncate(self.liqs.arrays["tick"] <= tick)
        self.events.truncate(self.events.arrays["tick"] <= tick)
        self._money_at = [m for m in self._money_at if m[0] <= tick]
        for code, money in self.money.items():
            for key in money:
                money[key] = sum(v for t, c, k, v in self._money_at if c == code and k == key)
        self._watch_ratio = [(t, r) for t, r in self._watch_ratio if t <= tick]
        self.record_tick([])

    def _money(self, tick: int, code: str, key: str, amount: int) -> None:
        self.money[code][key] += amount
        self._money_at.append((tick, code, key, amount))

    def _grow(self, tick: int) -> None:
        """Room for `tick`: commands applied after the scenario's end (an approved clawback)
        take ticks past `ticks_total`."""
        size = self.times.size
        if tick < size:
            return
        extra = max(tick + 1 - size, 16)
        step = self.session.engine.scenario.tick_seconds
        more = self.times[-1] + step * np.arange(1, extra + 1, dtype=np.float64)
        self.times = np.concatenate((self.times, more))
        self.series = {
            k: np.concatenate((v, np.full(extra, np.nan))) for k, v in self.series.items()
        }

    def record_tick(self, events: list[Any]) -> None:
        engine = self.session.engine
        t = engine.tick
        self._grow(t)
        for name, price in engine.index_now.items():
            self.series[f"index:{name}"][t] = price
        for k, inst in enumerate(engine.instruments):
            self.series[f"mark:{inst.symbol}"][t] = engine.marks[k]
            last = engine.liquidity[k].last_price
            if last is not None:
                self.series[f"last:{inst.symbol}"][t] = last
        self._record_events(t, events)
        for code in engine.currency_codes:
            totals = engine.deficit_totals[code]
            self.series[f"fund:{code}"][t] = engine.ledger.balance(INSURANCE_FUND, code)
            self.series[f"reserved:{code}"][t] = engine.desk.reserved[code]
            self.series[f"covered:{code}"][t] = totals["covered_by_fund"]
            self.series[f"uncovered:{code}"][t] = totals["uncovered"]
            self.series[f"liqs:{code}"][t] = self.money[code]["liqs"]

    def _record_events(self, t: int, events: list[Any]) -> None:
        """The logs and money counters of one tick's events."""
        engine = self.session.engine
        book = engine.book
        symbols = {i.symbol: k for k, i in enumerate(engine.instruments)}
        for event in events:
            kind, account = type(event).__name__, getattr(event, "account", None)
            index = book.account_index.get(account, -1) if account else -1
            self.events.append({"tick": t, "account": index}, {"kind": kind, "text": event})
            if isinstance(event, LiquidationFilled):
                self._money(t, event.currency, "liqs", 1)
                self.liqs.append(
                    {
                        "tick": t,
                        "account": index,
                        "symbol": symbols.get(event.symbol, -1),
                        "side": 1 if event.side == "long" else -1,
                        "contracts": event.contracts,
                        "fill_price": float(event.fill_price),
                        "bankruptcy": np.nan
                        if event.bankruptcy_price is None
                        else event.bankruptcy_price,
                        "surplus": event.surplus,
                        "deficit": event.deficit,
                        "covered": event.covered_by_fund,
                        "partial": event.partial,
                        "currency": engine.currency_codes.index(event.currency),
                    }
                )
            elif isinstance(event, FundPosting) and event.kind == "injection":
                self._money(t, event.currency, "injected", event.amount)
            elif isinstance(event, ClawbackComputed):
                key = "clawback_pending" if event.status == "pending" else "clawback_applied"
                self._money(t, event.currency, key, event.deficit - event.unrecovered)
            elif kind == "AdlFill":
                code = engine.currency_of(symbols.get(getattr(event, "symbol", ""), 0))
                self._money(t, code, "adl_fills", 1)

    # ----- building -----------------------------------------------------------------------

    def _heavy_columns(self, force: bool) -> dict[str, np.ndarray]:
        engine = self.session.engine
        now = wallclock.perf_counter()
        if force or not self._heavy or now - self._heavy_at >= 9 * self._heavy_cost:
            book, valuation = engine.book, engine.valuation
            prices = risk_prices(book, valuation)
            self._heavy = {
                "liquidation": read_only(prices.liquidation),
                "bankruptcy": read_only(prices.bankruptcy),
                "adl": read_only(adl_lights(book, valuation).astype(np.int8)),
            }
            # The ladder bins the liquidation prices: it is as fresh as they are.
            self._ladder_rows = self._ladder(book.contracts, self._heavy["liquidation"])
            self._heavy_at = wallclock.perf_counter()
            self._heavy_cost = self._heavy_at - now
        return self._heavy

    def build(
        self,
        spec: TableSpec,
        *,
        playing: bool,
        speed: float,
        ticks_per_second: float,
        notice: str | None,
        fresh: bool = False,
        feed: LinkStatus | None = None,
    ) -> Snapshot:
        """A snapshot of the engine now; `fresh` recomputes every column (after a step or seek)."""
        session, engine = self.session, self.session.engine
        book, valuation = engine.book, engine.valuation
        heavy = self._heavy_columns(fresh)
        marks = valuation.marks[book.instrument]
        contracts = book.contracts.copy()
        notional = valuation.notional
        equity = valuation.equity
        with np.errstate(divide="ignore", invalid="ignore"):
            leverage = np.where(equity > 0, notional / equity, np.inf)
            distance = book.side * (marks - heavy["liquidation"]) / marks * 100.0
        flags = engine.controls.flags[book.account].astype(np.int16)
        for order in engine.desk.orders:
            flags[order.row] |= LIQUIDATING
        ratio = valuation.margin_ratio
        columns = {
            "account": book.account,
            "symbol": book.instrument,
            "side": book.side,
            "contracts": contracts,
            "equity": equity,
            "notional": notional,
            "leverage": leverage,
            "margin_ratio": ratio,
            "okx_rate": book.okx_margin_rate(valuation),
            "distance_pct": distance,
            "upnl": valuation.upnl,
            "flags": flags,
            **heavy,
        }
        columns = {k: read_only(v) for k, v in columns.items()}
        table = PositionTable(
            self.account_ids,
            tuple(i.symbol for i in engine.instruments),
            tuple(engine.currency_codes),
            MappingProxyType(columns),
            np.zeros(0, dtype=np.int64),
            spec,
            tuple(i.convention_text for i in engine.instruments),
        )
        table = replace(table, order=self._table_order(table, spec, fresh))
        overview = self._overview(columns)
        t = engine.tick
        open_rows = contracts > 0
        histogram = np.histogram(ratio[open_rows], bins=HISTOGRAM_EDGES)[0]
        watched_ratio = self._watch(columns, t)
        return Snapshot(
            scenario=engine.scenario.name,
            tick=t,
            ticks_total=max(engine.ticks_total, t + 1),
            tick_seconds=engine.scenario.tick_seconds,
            start_epoch=self.start_epoch,
            now=engine.now,
            head=session.head,
            live=session.live,
            finished=session.finished,
            playing=playing,
            speed=speed,
            ticks_per_second=ticks_per_second,
            store_path=str(session.store.path) if session.store is not None else None,
            notice=notice,
            instruments=table.symbols,
            instrument_currency=tuple(i.settle_currency for i in engine.instruments),
            quote_units=tuple(i.index.rsplit("-", 1)[-1] for i in engine.instruments),
            indices=tuple(engine.index_now),
            marks=tuple(float(m) for m in engine.marks),
            index_now=tuple(float(p) for p in engine.index_now.values()),
            overview=overview,
            table=table,
            series=MappingProxyType({k: read_only(v[: t + 1]) for k, v in self.series.items()}),
            times=read_only(self.times[: t + 1]),
            liquidations=self.liqs.view(),
            events=self.events.view(),
            ratio_histogram=read_only(histogram),
            ladder=MappingProxyType(self._ladder_rows),
            watched=self.watched,
            watched_ratio=watched_ratio,
            feed=feed,
            stress=self._stress_ladder(fresh),
        )

    def _stress_ladder(self, force: bool) -> tuple[StressRow, ...]:
        now = wallclock.perf_counter()
        due = max(STRESS_SECONDS, 9 * self._stress_cost)
        if force or not self._stress or now - self._stress_at >= due:
            self._stress = stress_ladder(self.session.engine)
            self._stress_at = wallclock.perf_counter()
            self._stress_cost = self._stress_at - now
        return self._stress

    def _overview(self, columns: Mapping[str, np.ndarray]) -> tuple[CurrencyOverview, ...]:
        engine = self.session.engine
        book, t = engine.book, engine.tick
        open_rows = columns["contracts"] > 0
        longs = open_rows & (book.side > 0)
        shorts = open_rows & (book.side < 0)
        at_risk = open_rows & (columns["margin_ratio"] <= AT_RISK_RATIO)
        ratios = projected_clawback_ratios(engine)
        out = []
        for c, code in enumerate(engine.currency_codes):
            in_currency = book.position_currency == c
            # Cross groups count their equity once; isolated positions count their own.
            risky = at_risk & in_currency
            # Marked, not np.unique'd: a sort of a million rows is most of a frame.
            cross_groups = _marked(book.group[risky & ~book.isolated], book.n_groups)
            equity = float(engine.valuation.group_equity[cross_groups].sum())
            equity += float(columns["equity"][risky & book.isolated].sum())
            accounts = int(np.count_nonzero(_marked(book.account[risky], len(book.account_ids))))
            # The engine holds the other side of what it took over: count the larger side.
            side = max(
                (longs & in_currency, shorts & in_currency),
                key=lambda rows: int(columns["contracts"][rows].sum()),
            )
            oi = int(columns["contracts"][side].sum())
            self.series[f"oi:{code}"][t] = oi
            self.series[f"at_risk:{code}"][t] = accounts
            self.series[f"clawback:{code}"][t] = ratios.get(code, 0.0)
            totals, money = engine.deficit_totals[code], self.money[code]
            out.append(
                CurrencyOverview(
                    code=code,
                    decimals=self.decimals[code],
                    fund_balance=engine.ledger.balance(INSURANCE_FUND, code),
                    fund_reserved=engine.desk.reserved[code],
                    open_interest=oi,
                    open_notional=float(columns["notional"][side].sum()),
                    at_risk_accounts=accounts,
                    at_risk_equity=equity,
                    liquidations=money["liqs"],
                    deficit_total=totals["total"],
                    deficit_covered=totals["covered_by_fund"],
                    deficit_uncovered=totals["uncovered"],
                    injected=money["injected"],
                    clawback_applied=money["clawback_applied"],
                    clawback_pending=money["clawback_pending"],
                    adl_fills=money["adl_fills"],
                    projected_clawback_ratio=ratios.get(code),
                )
            )
        return tuple(out)

    def _table_order(self, table: PositionTable, spec: TableSpec, force: bool) -> np.ndarray:
        """The table's rows in `spec`'s order. Sorting a million rows costs more than a frame, so
        while playing it is redone at most as often as keeps it under a tenth of the engine
        thread's time (about once a second at 1M rows); between, the rows keep their places and
        show their current values. A new spec, a step or a seek sorts at once."""
        now = wallclock.perf_counter()
        kept = self._order
        due = now - self._order_at >= 9 * self._order_cost
        if force or due or kept is None or kept[0] != spec or kept[1] != len(table):
            kept = self._order = (spec, len(table), read_only(table_order(table, spec)))
            self._order_at = wallclock.perf_counter()
            self._order_cost = self._order_at - now
        return kept[2]

    def _ladder(self, contracts: np.ndarray, liq: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        """Per instrument: price bin centres around the mark, and the long and short contracts
        whose liquidation price falls in each bin."""
        engine, book = self.session.engine, self.session.engine.book
        out = {}
        live = (contracts > 0) & np.isfinite(liq)
        for k, inst in enumerate(engine.instruments):
            mark = float(engine.marks[k])
            edges = np.linspace(mark * (1 - LADDER_SPAN), mark * (1 + LADDER_SPAN), LADDER_BINS + 1)
            rows = live & (book.instrument == k)
            sides = []
            for side in (1, -1):
                chosen = rows & (book.side == side)
                counts = np.histogram(liq[chosen], bins=edges, weights=contracts[chosen])[0]
                sides.append(read_only(counts))
            out[inst.symbol] = (read_only((edges[:-1] + edges[1:]) / 2), sides[0], sides[1])
        return out

    def watch(self, account: str | None) -> None:
        if account != self.watched:
            self.watched = account
            self._watch_ratio = []

    def _watch(self, columns: Mapping[str, np.ndarray], tick: int) -> np.ndarray:
        """The watched account's lowest margin ratio at each snapshot since it was chosen."""
        index = self.session.engine.book.account_index.get(self.watched or "", -1)
        if index >= 0:
            rows = np.flatnonzero((columns["account"] == index) & (columns["contracts"] > 0))
            ratio = float(columns["margin_ratio"][rows].min()) if rows.size else math.nan
            if not self._watch_ratio or self._watch_ratio[-1][0] < tick:
                self._watch_ratio.append((tick, ratio))
        return read_only(np.array(self._watch_ratio, dtype=np.float64).reshape(-1, 2))


def _marked(rows: np.ndarray, size: int) -> np.ndarray:
    """A mask of `size` with the values of `rows` set."""
    mask = np.zeros(size, dtype=bool)
    mask[rows] = True
    return mask
