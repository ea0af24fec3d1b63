"""The charts: index, mark and last price with liquidation markers; the insurance fund over time;
the distribution of margin ratios; the liquidation ladder around the mark. Items are made once
and fed with setData. Right-click on the price or fund timeline offers "Branch here at <time>"
(`branch_requested` with the tick under the cursor: a what-if from there)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from console.widgets.plots import Plot, colours, finite_xy
from core.session.snapshot import HISTOGRAM_EDGES, Snapshot

MAX_MARKERS = 1000  # liquidation markers drawn at most (the largest by contracts)


def branch_tick(snap: Snapshot, epoch: float) -> int | None:
    """The tick nearest `epoch` that a branch may leave from: one the store holds and not the
    run's last (nothing would be left to run). None when the run keeps no store."""
    last = min(snap.head, snap.ticks_total - 2)
    if snap.store_path is None or last < 0:
        return None
    return max(0, min(last, round((epoch - snap.start_epoch) / snap.tick_seconds)))


class ChartsPanel(QWidget):
    branch_requested = Signal(int)  # a tick: "Branch here" on a timeline

    def __init__(self, theme: str = "light", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("charts")
        self.theme = theme
        self.symbol: str | None = None
        self.instrument = QComboBox()
        self.instrument.setObjectName("chart-instrument")
        self.instrument.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.instrument.currentTextChanged.connect(self._choose)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Instrument"))
        bar.addWidget(self.instrument)
        bar.addStretch(1)

        self.prices = Plot(
            "Index, mark and last price", "Price (USD)", "Time (UTC)", time_axis=True
        )
        self.prices.addLegend(offset=(10, 10))
        self.index_curve = self.prices.curve("index", theme, "index")
        self.mark_curve = self.prices.curve("mark", theme, "mark")
        self.last_curve = self.prices.curve("last", theme, "last", style=Qt.PenStyle.DotLine)
        self._markers_key: tuple[int, int] | None = None
        self._labels_key: tuple[str, str, str] | None = None
        self.long_marks = pg.ScatterPlotItem(symbol="t", size=8, name="long liquidated")
        self.short_marks = pg.ScatterPlotItem(symbol="t1", size=8, name="short liquidated")
        for item in (self.long_marks, self.short_marks):
            self.prices.addItem(item)

        self.fund = Plot("Insurance fund", "Balance (BTC)", "Time (UTC)", time_axis=True)
        self.fund.addLegend(offset=(10, 10))
        self.fund_curve = self.fund.curve("fund", theme, "balance")
        self.reserved_curve = self.fund.curve(
            "reserved", theme, "reserved", style=Qt.PenStyle.DashLine
        )

        self.histogram = Plot(
            "Margin ratio distribution",
            "Open positions",
            "Margin ratio (equity / maintenance, log scale)",
        )
        left_edges = np.log10(np.maximum(HISTOGRAM_EDGES[:-1], 0.1))
        right_edges = np.log10(np.minimum(HISTOGRAM_EDGES[1:], 1000.0))
        self.histogram_bars = pg.BarGraphItem(
            x0=left_edges, x1=right_edges, height=np.zeros(left_edges.size)
        )
        self.histogram.addItem(self.histogram_bars)
        self.histogram_line = pg.InfiniteLine(
            pos=0.0, angle=90, label="liquidation (1)", labelOpts={"position": 0.92}
        )
        self.histogram.addItem(self.histogram_line)
        ticks = [(np.log10(v), f"{v:g}") for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 1000)]
        self.histogram.getPlotItem().getAxis("bottom").setTicks([ticks])

        self.ladder = Plot("Liquidation ladder", "Contracts liquidated", "Liquidation price (USD)")
        self.ladder.addLegend(offset=(10, 10))
        self.ladder_long = pg.BarGraphItem(x=[0], height=[0], width=1, name="longs (below mark)")
        self.ladder_short = pg.BarGraphItem(x=[0], height=[0], width=1, name="shorts (above mark)")
        self.ladder.addItem(self.ladder_long)
        self.ladder.addItem(self.ladder_short)
        self.ladder_mark = pg.InfiniteLine(
            pos=0.0, angle=90, label="mark", labelOpts={"position": 0.92}
        )
        self.ladder.addItem(self.ladder_mark)

        grid = QGridLayout()
        grid.addWidget(self.prices, 0, 0)
        grid.addWidget(self.fund, 0, 1)
        grid.addWidget(self.histogram, 1, 0)
        grid.addWidget(self.ladder, 1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addLayout(grid, 1)
        self.snapshot: Snapshot | None = None
        for timeline in (self.prices, self.fund):
            timeline.menu_extensions.append(self._branch_menu)
        self.apply_theme(theme)

    @property
    def plots(self) -> tuple[Plot, ...]:
        return (self.prices, self.fund, self.histogram, self.ladder)

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        c = colours(theme)
        for plot in self.plots:
            plot.apply_theme(theme)
        self.long_marks.setBrush(pg.mkBrush(c["long"]))
        self.long_marks.setPen(pg.mkPen(None))
        self.short_marks.setBrush(pg.mkBrush(c["short"]))
        self.short_marks.setPen(pg.mkPen(None))
        self.histogram_bars.setOpts(brush=pg.mkBrush(c["bar"]), pen=pg.mkPen(c["background"]))
        self.ladder_long.setOpts(brush=pg.mkBrush(c["long"]), pen=pg.mkPen(None))
        self.ladder_short.setOpts(brush=pg.mkBrush(c["short"]), pen=pg.mkPen(None))
        for line in (self.histogram_line, self.ladder_mark):
            line.setPen(pg.mkPen(c["foreground"], style=Qt.PenStyle.DashLine))
            line.label.setColor(c["foreground"])
        # A theme sets the plots' titles again: the ladder's must name its symbol once more.
        self._labels_key = None
        if self.snapshot is not None:
            self.update_snapshot(self.snapshot)

    def _branch_menu(self, menu: QMenu, epoch: float) -> None:
        snap = self.snapshot
        tick = branch_tick(snap, epoch) if snap is not None else None
        menu.addSeparator()
        if snap is None or tick is None:
            why = "no run is open" if snap is None else "the run keeps no store"
            branch = menu.addAction(f"Branch here ({why})")
            branch.setEnabled(False)
        else:
            when = datetime.fromtimestamp(float(snap.epoch(tick)), UTC)
            branch = menu.addAction(
                f"Branch here at {when:%Y-%m-%d %H:%M:%S} UTC (tick {tick:,})…",
                lambda: self.branch_requested.emit(tick),
            )
        branch.setObjectName("branch-here")

    def _choose(self, symbol: str) -> None:
        if symbol:
            self.symbol = symbol
            if self.snapshot is not None:
                self.update_snapshot(self.snapshot)

    def _default_symbol(self, snap: Snapshot) -> str:
        """The instrument with the most open interest."""
        cols = snap.table.columns
        weights = np.bincount(
            cols["symbol"], weights=cols["contracts"], minlength=len(snap.instruments)
        )
        return snap.instruments[int(np.argmax(weights))] if weights.size else snap.instruments[0]

    def update_snapshot(self, snap: Snapshot) -> None:
        self.update_prices(snap)
        self.update_fund(snap)
        self.update_distributions(snap)

    def update_prices(self, snap: Snapshot) -> None:
        """The price chart (and the instrument's units on every axis). A big book shows it in an
        event-loop turn of its own: the price chart and the fund chart painted in one turn were
        the longest wait of the desk at 1M positions."""
        self.snapshot = snap
        if self.instrument.count() != len(snap.instruments) or self.symbol not in snap.instruments:
            self.instrument.blockSignals(True)
            self.instrument.clear()
            self.instrument.addItems(list(snap.instruments))
            self.symbol = self._default_symbol(snap)
            self.instrument.setCurrentText(self.symbol)
            self.instrument.blockSignals(False)
        symbol = self.symbol or snap.instruments[0]
        k = snap.instruments.index(symbol)
        self._label_axes(symbol, snap.quote_units[k], snap.instrument_currency[k])
        times = snap.times
        quote = snap.quote_units[k]
        index_name = next((n for n in snap.indices if n.endswith(quote)), snap.indices[0])
        self.index_curve.setData(*finite_xy(times, snap.series[f"index:{index_name}"]))
        self.mark_curve.setData(*finite_xy(times, snap.series[f"mark:{symbol}"]))
        self.last_curve.setData(*finite_xy(times, snap.series[f"last:{symbol}"]))
        self._markers(snap, k)

    def update_fund(self, snap: Snapshot) -> None:
        """The insurance fund chart of the shown instrument's currency, after update_prices."""
        symbol = self.symbol or snap.instruments[0]
        currency = snap.instrument_currency[snap.instruments.index(symbol)]
        scale = 10.0 ** next(o.decimals for o in snap.overview if o.code == currency)
        self.fund_curve.setData(*finite_xy(snap.times, snap.series[f"fund:{currency}"] / scale))
        self.reserved_curve.setData(
            *finite_xy(snap.times, snap.series[f"reserved:{currency}"] / scale)
        )

    def _label_axes(self, symbol: str, quote: str, currency: str) -> None:
        """Axis labels and the ladder's title, set only when they change: setting one lays its
        plot out again and repaints it (the ladder was repainted with every price update)."""
        key = (symbol, quote, currency)
        if self._labels_key == key:
            return
        self._labels_key = key
        self.prices.getPlotItem().setLabel("left", f"Price ({quote})")
        self.ladder.getPlotItem().setLabel("bottom", f"Liquidation price ({quote})")
        self.ladder.getPlotItem().setTitle(f"Liquidation ladder — {symbol}")
        self.fund.getPlotItem().setLabel("left", f"Balance ({currency})")

    def update_distributions(self, snap: Snapshot) -> None:
        """The margin-ratio histogram and the liquidation ladder, after update_fund."""
        symbol = self.symbol or snap.instruments[0]
        k = snap.instruments.index(symbol)
        self.histogram_bars.setOpts(height=snap.ratio_histogram.astype(np.float64))
        prices, longs, shorts = snap.ladder[symbol]
        width = float(prices[1] - prices[0]) * 0.9 if prices.size > 1 else 1.0
        self.ladder_long.setOpts(x=prices, height=longs.astype(np.float64), width=width)
        self.ladder_short.setOpts(x=prices, height=shorts.astype(np.float64), width=width)
        self.ladder_mark.setValue(snap.marks[k])

    def _markers(self, snap: Snapshot, k: int) -> None:
        key = (len(snap.liquidations), k)
        if self._markers_key == key:
            return  # no new liquidation: the markers stand
        self._markers_key = key
        cols = snap.liquidations.columns
        rows = np.flatnonzero(cols["symbol"] == k)
        if rows.size > MAX_MARKERS:
            biggest = np.argpartition(cols["contracts"][rows], -MAX_MARKERS)[-MAX_MARKERS:]
            rows = np.sort(rows[biggest])
        x = snap.epoch(cols["tick"][rows])
        y = cols["fill_price"][rows]
        longs = cols["side"][rows] > 0
        self.long_marks.setData(x=x[longs], y=y[longs])
        self.short_marks.setData(x=x[~longs], y=y[~longs])
