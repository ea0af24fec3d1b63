"""The overview: per settle currency the insurance fund, open interest, accounts at risk,
liquidations, deficit covered and uncovered, and the projected clawback ratio, each with a trend."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QGridLayout, QGroupBox, QHBoxLayout, QLabel, QWidget

from console.models.base import fmt_money
from console.widgets.plots import colours, finite_xy
from console.widgets.stress_ladder import StressLadder
from core.model.units import format_minor
from core.session.snapshot import AT_RISK_RATIO, CurrencyOverview, Snapshot

METRICS = (
    ("fund", "Insurance fund", "balance; reserved for liquidations being worked"),
    ("oi", "Open interest", "long contracts open; their notional"),
    ("at_risk", "Accounts at risk", f"accounts with a position at margin ratio <= {AT_RISK_RATIO}"),
    ("liqs", "Liquidations", "liquidations finished so far"),
    ("covered", "Deficit covered", "deficit paid by the insurance fund"),
    ("uncovered", "Deficit uncovered", "deficit the fund could not cover (clawback at settlement)"),
    ("clawback", "Projected clawback", "ratio a settlement now would claw back from profits"),
)


class Sparkline(QWidget):
    """A small trend line painted directly (a plot widget per figure would cost more to paint
    than all the numbers): at most one point per pixel column, scaled to its own range."""

    def __init__(self, theme: str) -> None:
        super().__init__()
        self.setFixedSize(140, 28)
        self.points = np.zeros((0, 2))
        self.colour = QColor(str(colours(theme)["spark"]))

    def apply_theme(self, theme: str) -> None:
        self.colour = QColor(str(colours(theme)["spark"]))
        self.update()

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        if x.size > self.width():
            pick = np.linspace(0, x.size - 1, self.width()).astype(np.int64)
            x, y = x[pick], y[pick]
        self.points = np.column_stack((x, y)) if x.size else np.zeros((0, 2))
        self.update()

    def paintEvent(self, event: object) -> None:
        if len(self.points) < 2:
            return
        x, y = self.points[:, 0], self.points[:, 1]
        w, h = self.width() - 2, self.height() - 4
        x_span = float(x[-1] - x[0]) or 1.0
        low, high = float(y.min()), float(y.max())
        y_span = (high - low) or 1.0
        px = 1 + (x - x[0]) / x_span * w
        py = 2 + h - (y - low) / y_span * h if high > low else np.full(y.size, 2 + h / 2)
        painter = QPainter(self)
        painter.setPen(QPen(self.colour, 1.2))
        painter.drawPolyline(
            QPolygonF([QPointF(a, b) for a, b in zip(px.tolist(), py.tolist(), strict=True)])
        )
        painter.end()


class CurrencyCard(QGroupBox):
    def __init__(self, code: str, theme: str) -> None:
        super().__init__(f"{code}")
        self.setObjectName(f"overview-{code}")
        grid = QGridLayout(self)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        self.values: dict[str, QLabel] = {}
        self.sparks: dict[str, Sparkline] = {}
        for row, (key, title, tip) in enumerate(METRICS):
            name = QLabel(title)
            name.setToolTip(tip)
            value = QLabel("—")
            value.setObjectName(f"value-{key}")
            value.setProperty("metric", True)
            spark = Sparkline(theme)
            grid.addWidget(name, row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(spark, row, 2)
            self.values[key] = value
            self.sparks[key] = spark
        grid.setColumnStretch(3, 1)

    def update_values(self, o: CurrencyOverview, snap: Snapshot) -> None:
        code, d = o.code, o.decimals
        money = lambda v: f"{format_minor(v, d, display=True)} {code}"  # noqa: E731
        self.values["fund"].setText(
            f"{money(o.fund_balance)}   reserved {format_minor(o.fund_reserved, d, display=True)}"
        )
        self.values["oi"].setText(
            f"{o.open_interest:,} contracts   {fmt_money(o.open_notional)} {code}"
        )
        self.values["at_risk"].setText(
            f"{o.at_risk_accounts:,}   equity {fmt_money(o.at_risk_equity)} {code}"
        )
        self.values["liqs"].setText(f"{o.liquidations:,}   ADL fills {o.adl_fills:,}")
        self.values["covered"].setText(money(o.deficit_covered))
        self.values["uncovered"].setText(
            f"{money(o.deficit_uncovered)}   of {format_minor(o.deficit_total, d, display=True)}"
        )
        ratio = o.projected_clawback_ratio
        pending = f"   pending {money(o.clawback_pending)}" if o.clawback_pending else ""
        self.values["clawback"].setText(("—" if ratio is None else f"{ratio:.2%}") + pending)
        ticks = np.arange(len(snap.times), dtype=np.float64)
        for key, spark in self.sparks.items():
            spark.set_data(*finite_xy(ticks, snap.series[f"{key}:{code}"]))


class OverviewPanel(QWidget):
    def __init__(self, theme: str = "light", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("overview")
        self.theme = theme
        self.cards: dict[str, CurrencyCard] = {}
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(4, 4, 4, 4)
        self.ladder = StressLadder()
        self.row.addWidget(self.ladder, 1)

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        for card in self.cards.values():
            for spark in card.sparks.values():
                spark.apply_theme(theme)

    def update_snapshot(self, snap: Snapshot) -> None:
        codes = [o.code for o in snap.overview]
        if list(self.cards) != codes:
            for card in self.cards.values():
                card.deleteLater()
            self.cards = {code: CurrencyCard(code, self.theme) for code in codes}
            for n, card in enumerate(self.cards.values()):
                self.row.insertWidget(n, card)
        for o in snap.overview:
            self.cards[o.code].update_values(o, snap)
        self.ladder.update_snapshot(snap)
