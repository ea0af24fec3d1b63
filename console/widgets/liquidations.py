"""Liquidations: the live list with filters, and the deficit waterfall (deficit, fund, injection,
clawback, what remains) per currency."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from console.models.logs import LiquidationsModel
from console.widgets.plots import Plot, colours
from console.widgets.table import DataTable
from core.model.units import format_minor
from core.session.snapshot import CurrencyOverview, Snapshot

WATERFALL = ("Deficit", "Fund paid", "of which injected", "Clawback", "Remaining")


def waterfall(o: CurrencyOverview) -> list[tuple[str, int, int]]:
    """(label, bottom, top) in minor units: the deficit, what the fund paid of it (its injections
    shown beside), what the clawback takes, and what is left (ADL leaves none: it closes
    positions instead of leaving a deficit)."""
    total, fund = o.deficit_total, o.deficit_covered
    clawback = o.clawback_applied + o.clawback_pending
    remaining = max(0, total - fund - clawback)
    return [
        ("Deficit", 0, total),
        ("Fund paid", total - fund, total),
        ("of which injected", total - fund, total - fund + min(o.injected, fund)),
        ("Clawback", remaining, remaining + clawback),
        ("Remaining", 0, remaining),
    ]


class LiquidationsPanel(QWidget):
    def __init__(self, theme: str = "light", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("liquidations")
        self.theme = theme
        self.model = LiquidationsModel(self)
        self.table = DataTable(self.model, "liquidations")
        self.search = QLineEdit()
        self.search.setPlaceholderText("account or instrument contains…")
        self.search.setClearButtonEnabled(True)
        self.side = QComboBox()
        self.side.addItems(["both sides", "long", "short"])
        self.min_contracts = QSpinBox()
        self.min_contracts.setRange(0, 2_000_000_000)
        self.min_contracts.setSpecialValueText("any size")
        self.deficit_only = QCheckBox("with deficit")
        self.count = QLabel()
        for signal in (
            self.search.textChanged,
            self.side.currentIndexChanged,
            self.min_contracts.valueChanged,
            self.deficit_only.toggled,
        ):
            signal.connect(self.apply_filter)
        bar = QHBoxLayout()
        bar.addWidget(self.search, 2)
        bar.addWidget(self.side)
        bar.addWidget(QLabel("Contracts ≥"))
        bar.addWidget(self.min_contracts)
        bar.addWidget(self.deficit_only)
        bar.addStretch(1)
        bar.addWidget(self.count)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(bar)
        column.addWidget(self.table, 1)

        self.currency = QComboBox()
        self.currency.currentTextChanged.connect(lambda _: self._draw())
        self.waterfall = Plot("Deficit waterfall", "Amount (BTC)", "")
        self.waterfall.getPlotItem().setMouseEnabled(False, False)
        self.bars = pg.BarGraphItem(x0=[], x1=[], y0=[], y1=[])
        self.waterfall.addItem(self.bars)
        ticks = [(i + 0.5, name) for i, name in enumerate(WATERFALL)]
        self.waterfall.getPlotItem().getAxis("bottom").setTicks([ticks])
        self.labels = [pg.TextItem(anchor=(0.5, 1.0)) for _ in WATERFALL]
        for label in self.labels:
            self.waterfall.addItem(label)
        right = QWidget()
        side = QVBoxLayout(right)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.currency)
        side.addWidget(self.waterfall, 1)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([700, 360])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self.snapshot: Snapshot | None = None
        self._sized = False
        self.apply_theme(theme)

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        self.model.set_theme(theme)
        self.waterfall.apply_theme(theme)
        self._draw()

    def apply_filter(self) -> None:
        self.model.set_filter(
            text=self.search.text(),
            side=(0, 1, -1)[self.side.currentIndex()],
            min_contracts=self.min_contracts.value(),
            deficit_only=self.deficit_only.isChecked(),
        )
        self._count()

    def update_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.model.set_log(
            snap.liquidations,
            account_ids=snap.table.account_ids,
            symbols=snap.instruments,
            currencies=snap.table.currencies,
            decimals={o.code: o.decimals for o in snap.overview},
            start_epoch=snap.start_epoch,
            tick_seconds=snap.tick_seconds,
        )
        if not self._sized and self.model.rowCount():
            self.table.size_columns()
            self._sized = True
        codes = [o.code for o in snap.overview]
        if [self.currency.itemText(i) for i in range(self.currency.count())] != codes:
            self.currency.blockSignals(True)
            self.currency.clear()
            self.currency.addItems(codes)
            self.currency.blockSignals(False)
        self._count()
        self._draw()

    def _count(self) -> None:
        total = len(self.model.log) if self.model.log is not None else 0
        self.count.setText(f"{self.model.rowCount():,} of {total:,}")

    def _draw(self) -> None:
        snap = self.snapshot
        if snap is None or not snap.overview:
            return
        o = next(
            (x for x in snap.overview if x.code == self.currency.currentText()), snap.overview[0]
        )
        scale = 10.0**o.decimals
        parts = waterfall(o)
        c = colours(self.theme)
        brushes = [c["line"], c["fund"], c["reserved"], c["last"], c["index"]]
        x0 = np.arange(len(parts), dtype=np.float64) + 0.1
        self.bars.setOpts(
            x0=x0,
            x1=x0 + 0.8,
            y0=np.array([p[1] for p in parts]) / scale,
            y1=np.array([p[2] for p in parts]) / scale,
            brushes=[pg.mkBrush(b) for b in brushes],
            pen=pg.mkPen(None),
        )
        self.waterfall.getPlotItem().setLabel("left", f"Amount ({o.code})")
        for i, (label, (_, bottom, top)) in enumerate(zip(self.labels, parts, strict=True)):
            label.setText(
                format_minor(top - bottom, o.decimals, display=True), color=c["foreground"]
            )
            label.setPos(i + 0.5, top / scale)
        top = max((p[2] for p in parts), default=0) / scale
        self.waterfall.getPlotItem().setYRange(0, max(top * 1.15, 1e-8))
        self.waterfall.getPlotItem().setXRange(0, len(parts))
