"""The incident report's charts drawn with QPainter into images at the printer's resolution:
prices with liquidation markers, the insurance fund's balance, margin ratios and the deficit
waterfall."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPolygonF

from console.report.style import BODY_W, DPI, FONT, GRID, INK, MUTED, PALETTE
from core.model.units import format_minor
from core.report.report import IncidentReport
from core.report.series import Series

PRICE_SIZE, FUND_SIZE, MARGIN_SIZE, WATERFALL_SIZE = (
    (BODY_W, 250.0),
    (BODY_W, 150.0),
    (BODY_W, 170.0),
    (BODY_W, 165.0),
)
PLOT = QRectF(58, 40, 0, 0)  # left and top insets of the plot area, in points


def charts(report: IncidentReport, dpi: int = DPI) -> dict[str, QImage]:
    """Every chart of the report as an image at `dpi`, keyed by its resource name."""
    scope, c = report.scope, report.charts
    out = {"prices": _price_chart(report, dpi, c.prices, (scope.start, scope.end), "Prices")}
    if c.zoom and c.zoom_start and c.zoom_end:
        window = (c.zoom_start, c.zoom_end)
        out["zoom"] = _price_chart(report, dpi, c.zoom, window, "Prices, close-up")
    for f in report.charts.fund:
        out[f"fund-{f.currency}"] = _fund_chart(report, f.currency, dpi)
    if report.charts.margin:
        out["margin"] = _margin_chart(report, dpi)
    for w in report.waterfalls:
        out[f"waterfall-{w.currency}"] = _waterfall_chart(report, w.currency, dpi)
    return out


def _canvas(size: tuple[float, float], dpi: int) -> tuple[QImage, QPainter]:
    """A white image of `size` points at `dpi`, with a painter drawing in points."""
    scale = dpi / 72.0
    image = QImage(round(size[0] * scale), round(size[1] * scale), QImage.Format.Format_ARGB32)
    image.setDotsPerMeterX(round(72 / 0.0254))
    image.setDotsPerMeterY(round(72 / 0.0254))
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    painter.scale(scale, scale)
    return image, painter


def _font(painter: QPainter, size: float, bold: bool = False) -> None:
    font = QFont(FONT)
    font.setPointSizeF(size)
    font.setBold(bold)
    painter.setFont(font)


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    return [first + k * step for k in range(math.ceil((hi - first) / step) + 1)]


TIME_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _time_label(t: float, step: int) -> str:
    when = datetime.fromtimestamp(t, UTC)
    return when.strftime("%m-%d" if step >= 86400 else "%m-%d %H:%M")


class _Axes:
    """A plot area in points with linear x and y scales, axes, grid and labels."""

    def __init__(
        self,
        painter: QPainter,
        size: tuple[float, float],
        x: tuple[float, float],
        y: tuple[float, float],
    ) -> None:
        self.p = painter
        self.area = QRectF(
            PLOT.left(), PLOT.top(), size[0] - PLOT.left() - 14, size[1] - PLOT.top() - 34
        )
        self.x0, self.x1 = x if x[1] > x[0] else (x[0], x[0] + 1)
        self.y0, self.y1 = y if y[1] > y[0] else (y[0] - 1, y[0] + 1)

    def px(self, x: float) -> float:
        return self.area.left() + (x - self.x0) / (self.x1 - self.x0) * self.area.width()

    def py(self, y: float) -> float:
        return self.area.bottom() - (y - self.y0) / (self.y1 - self.y0) * self.area.height()

    def frame(
        self, title: str, y_label: str, y_ticks: list[float], y_fmt: Callable[[float], str]
    ) -> None:
        p, a = self.p, self.area
        _font(p, 7.5, bold=True)
        p.setPen(INK)
        p.drawText(QRectF(a.left(), 2, a.width(), 14), Qt.AlignmentFlag.AlignLeft, title)
        _font(p, 6.5)
        for t in y_ticks:
            if self.y0 <= t <= self.y1:
                y = self.py(t)
                p.setPen(QPen(GRID, 0.4))
                p.drawLine(QPointF(a.left(), y), QPointF(a.right(), y))
                p.setPen(MUTED)
                p.drawText(
                    QRectF(0, y - 5, a.left() - 4, 10),
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                    y_fmt(t),
                )
        p.save()
        p.translate(9, a.center().y())
        p.rotate(-90)
        p.drawText(
            QRectF(-a.height() / 2, -6, a.height(), 10), Qt.AlignmentFlag.AlignCenter, y_label
        )
        p.restore()
        p.setPen(QPen(INK, 0.7))
        p.drawLine(a.bottomLeft(), a.bottomRight())
        p.drawLine(a.bottomLeft(), a.topLeft())

    def time_axis(self) -> None:
        p, a = self.p, self.area
        span = self.x1 - self.x0
        step = next((s for s in TIME_STEPS if span / s <= 8), TIME_STEPS[-1])
        t = math.ceil(self.x0 / step) * step
        _font(p, 6.5)
        while t <= self.x1:
            x = self.px(t)
            p.setPen(QPen(GRID, 0.4))
            p.drawLine(QPointF(x, a.top()), QPointF(x, a.bottom()))
            p.setPen(MUTED)
            p.drawText(
                QRectF(x - 30, a.bottom() + 3, 60, 10),
                Qt.AlignmentFlag.AlignHCenter,
                _time_label(t, step),
            )
            t += step
        p.drawText(
            QRectF(a.left(), a.bottom() + 14, a.width(), 10),
            Qt.AlignmentFlag.AlignHCenter,
            "time (UTC)",
        )

    def legend(self, items: Sequence[tuple[str, QColor]]) -> None:
        """Under the title, left to right; a second row takes what the first cannot."""
        p, a = self.p, self.area
        _font(p, 6.5)
        x, y = a.left(), 19.0
        for label, colour in items:
            width = p.fontMetrics().horizontalAdvance(label) + 22
            if x + width > a.right() and x > a.left():
                x, y = a.left(), y + 9
            p.setPen(QPen(colour, 1.6))
            p.drawLine(QPointF(x, y), QPointF(x + 10, y))
            p.setPen(INK)
            p.drawText(QRectF(x + 13, y - 5, width, 10), Qt.AlignmentFlag.AlignLeft, label)
            x += width


def _price_chart(
    report: IncidentReport,
    dpi: int,
    series: Sequence[Series],
    window: tuple[str, str],
    title: str,
) -> QImage:
    image, p = _canvas(PRICE_SIZE, dpi)
    x0, x1 = _epoch(window[0]), _epoch(window[1])
    markers = [m for m in report.charts.markers if x0 <= _epoch(m.time) <= x1]
    ys = [v for s in series for v in s.values] + [m.price for m in markers]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or 1.0
    ticks = nice_ticks(lo - pad, hi + pad)
    axes = _Axes(p, PRICE_SIZE, (x0, x1), (ticks[0], ticks[-1]) if ticks else (0, 1))
    axes.frame(title, "price", ticks, lambda v: f"{v:,.0f}" if abs(hi) >= 100 else f"{v:.4g}")
    axes.time_axis()
    p.setClipRect(axes.area)
    legend = []
    for n, s in enumerate(series):
        colour = QColor("#7f8c8d") if s.kind == "index" else QColor(PALETTE[n % len(PALETTE)])
        pen = QPen(colour, 1.0 if s.kind == "mark" else 0.6)
        if s.kind == "index":
            pen.setStyle(Qt.PenStyle.DashLine)
        path = QPainterPath()
        for k, (t, v) in enumerate(zip(s.times, s.values, strict=True)):
            point = QPointF(axes.px(_epoch(t)), axes.py(v))
            path.moveTo(point) if k == 0 else path.lineTo(point)
        p.setPen(pen)
        p.drawPath(path)
        legend.append((f"{s.kind} {s.name}", colour))
    biggest = max((m.contracts for m in markers), default=1)
    p.setPen(QPen(QColor("#8b0000"), 0.5))
    p.setBrush(QColor(210, 60, 60, 170))
    for m in markers:
        r = 2.0 + 5.0 * math.sqrt(m.contracts / biggest)
        x, y = axes.px(_epoch(m.time)), axes.py(m.price)
        down = m.side == "long"
        p.drawPolygon(
            QPolygonF(
                [
                    QPointF(x - r, y - r if down else y + r),
                    QPointF(x + r, y - r if down else y + r),
                    QPointF(x, y + r if down else y - r),
                ]
            )
        )
        if m.contracts == biggest:
            _font(p, 6.5, bold=True)
            p.setPen(QColor("#8b0000"))
            p.drawText(
                QPointF(x + r + 3, y + 3), f"{m.account}: {m.contracts:,} {m.side} liquidated"
            )
            p.setPen(QPen(QColor("#8b0000"), 0.5))
    p.setClipping(False)
    axes.legend([*legend, ("liquidation (size by contracts)", QColor(210, 60, 60))])
    p.end()
    return image


def _fund_chart(report: IncidentReport, currency: str, dpi: int) -> QImage:
    image, p = _canvas(FUND_SIZE, dpi)
    fund = next(f for f in report.charts.fund if f.currency == currency)
    scale = 10 ** report.currencies.get(currency, 0)
    w = next((w for w in report.waterfalls if w.currency == currency), None)
    start_balance = w.fund_start if w else 0
    times = [_epoch(report.scope.start), *(_epoch(t) for t in fund.times), _epoch(report.scope.end)]
    values = [start_balance / scale, *(b / scale for b in fund.balances)]
    values.append(values[-1])
    ticks = nice_ticks(0.0, max(values) * 1.08 or 1.0)
    axes = _Axes(p, FUND_SIZE, (times[0], times[-1]), (ticks[0], ticks[-1]))
    axes.frame(f"Insurance fund balance ({currency})", currency, ticks, lambda v: f"{v:,.6g}")
    axes.time_axis()
    path = QPainterPath(QPointF(axes.px(times[0]), axes.py(values[0])))
    for k in range(1, len(times)):
        path.lineTo(QPointF(axes.px(times[k]), axes.py(values[k - 1])))
        path.lineTo(QPointF(axes.px(times[k]), axes.py(values[k])))
    p.setPen(QPen(QColor("#6a3fc1"), 1.0))
    p.drawPath(path)
    p.end()
    return image


def _margin_chart(report: IncidentReport, dpi: int) -> QImage:
    image, p = _canvas(MARGIN_SIZE, dpi)
    dists = report.charts.margin
    bins = dists[0].bins
    top = max((c for d in dists for c in d.counts), default=1) or 1
    ticks = nice_ticks(0.0, top * 1.1)
    axes = _Axes(p, MARGIN_SIZE, (0.0, float(len(bins))), (0.0, ticks[-1]))
    axes.frame(
        "Open positions by margin ratio (equity / maintenance)",
        "positions",
        ticks,
        lambda v: f"{v:,.0f}",
    )
    colours = (QColor("#1f6fd1"), QColor("#e08a00"))
    width = 0.8 / len(dists)
    _font(p, 6.0)
    for b, label in enumerate(bins):
        for k, d in enumerate(dists):
            x0 = axes.px(b + 0.1 + k * width)
            x1 = axes.px(b + 0.1 + (k + 1) * width)
            y = axes.py(d.counts[b])
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colours[k % 2])
            p.drawRect(QRectF(x0, y, x1 - x0 - 0.6, axes.area.bottom() - y))
            p.setPen(INK)
            p.drawText(
                QRectF(x0 - 8, y - 9, x1 - x0 + 16, 8),
                Qt.AlignmentFlag.AlignHCenter,
                f"{d.counts[b]:,}",
            )
        p.setPen(MUTED)
        p.drawText(
            QRectF(axes.px(b), axes.area.bottom() + 3, axes.px(b + 1) - axes.px(b), 10),
            Qt.AlignmentFlag.AlignHCenter,
            label,
        )
    p.drawText(
        QRectF(axes.area.left(), axes.area.bottom() + 14, axes.area.width(), 10),
        Qt.AlignmentFlag.AlignHCenter,
        "margin ratio (liquidation at 1 or below)",
    )
    axes.legend([(f"{d.label}: {d.time}", colours[k % 2]) for k, d in enumerate(dists)])
    p.end()
    return image


def _waterfall_chart(report: IncidentReport, currency: str, dpi: int) -> QImage:
    image, p = _canvas(WATERFALL_SIZE, dpi)
    w = next(w for w in report.waterfalls if w.currency == currency)
    scale = 10 ** report.currencies.get(currency, 0)
    steps = [("deficit", w.deficit), *((label, -amount) for label, amount in w.steps())]
    levels, running = [], 0
    for k, (_label, amount) in enumerate(steps):
        before = running
        running = amount if k == 0 else running + amount
        levels.append((0 if k == 0 else before, running))
    top = max(max(a, b) for a, b in levels) / scale or 1.0
    ticks = nice_ticks(min(0.0, min(min(a, b) for a, b in levels) / scale), top * 1.12)
    axes = _Axes(p, WATERFALL_SIZE, (0.0, float(len(steps))), (ticks[0], ticks[-1]))
    axes.frame(f"Where the deficit went ({currency})", currency, ticks, lambda v: f"{v:,.6g}")
    _font(p, 6.0)
    for k, ((label, amount), (a, b)) in enumerate(zip(steps, levels, strict=True)):
        x0, x1 = axes.px(k + 0.15), axes.px(k + 0.85)
        y0, y1 = axes.py(max(a, b) / scale), axes.py(min(a, b) / scale)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#c0392b") if k == 0 else QColor(PALETTE[(k - 1) % len(PALETTE)]))
        p.drawRect(QRectF(x0, y0, x1 - x0, max(0.6, y1 - y0)))
        p.setPen(INK)
        text = format_minor(abs(amount), report.currencies.get(currency, 0))
        p.drawText(QRectF(x0 - 20, y0 - 10, x1 - x0 + 40, 9), Qt.AlignmentFlag.AlignHCenter, text)
        p.setPen(MUTED)
        p.drawText(
            QRectF(axes.px(k), axes.area.bottom() + 3, axes.px(k + 1) - axes.px(k), 20),
            Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap,
            label,
        )
    p.end()
    return image
