"""The incident report as a PDF for people: A4 pages laid out by QTextDocument (tables repeat
their header rows on each page), charts drawn with QPainter at the printer's resolution, and a
footer with the page number and the audit chain's head on every page."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import QMarginsF, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPainterPath,
    QPdfWriter,
    QPen,
    QPolygonF,
)

from core.report import IncidentReport
from core.report_io import Series
from core.units import format_minor

DPI = 300
PAGE_W, PAGE_H = 595.28, 841.89  # A4 in points
MARGIN, FOOTER = 40.0, 26.0
BODY_W = PAGE_W - 2 * MARGIN
FONT = "DejaVu Sans"
PALETTE = ("#1f6fd1", "#e08a00", "#1f9d55", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d")
ZEBRA, HEADER_BG, TITLE = QColor("#f1f4f7"), QColor("#d9e2ea"), QColor("#14324f")
INK, GRID, MUTED = QColor("#202830"), QColor("#d5dae0"), QColor("#5b6570")


def write_pdf(report: IncidentReport, path: str | Path, *, dpi: int = DPI) -> int:
    """Write the report to `path` (needs a QGuiApplication); returns the number of pages."""
    images = charts(report, dpi)
    counting = _Flow(None, QPdfWriter(str(path)), report, dpi, 0)
    _compose(counting, report, images)
    pages = counting.finish()
    writer = QPdfWriter(str(path))
    writer.setResolution(dpi)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait, QMarginsF()
        )
    )
    writer.setTitle(report.summary.title)
    writer.setCreator(f"risk-console {report.integrity.software_version}")
    painter = QPainter(writer)
    try:
        flow = _Flow(painter, writer, report, dpi, pages)
        _compose(flow, report, images)
        return flow.finish()
    finally:
        painter.end()


class _Flow:
    """Top-to-bottom layout on A4 pages in device pixels: nothing is cut at a page's end (a
    paragraph, image or table row that does not fit goes to the next page whole) and a table
    repeats its header row on each page. Without a painter it only counts the pages."""

    def __init__(
        self,
        painter: QPainter | None,
        device: QPdfWriter,
        report: IncidentReport,
        dpi: int,
        pages: int,
    ) -> None:
        device.setResolution(dpi)
        self.p, self.device, self.report, self.pages = painter, device, report, pages
        self.u = dpi / 72.0
        self.left, self.width = MARGIN * self.u, BODY_W * self.u
        self.top, self.bottom = MARGIN * self.u, (PAGE_H - MARGIN - FOOTER) * self.u
        self.y, self.page = self.top, 1

    def font(self, size: float, bold: bool = False, mono: bool = False) -> QFont:
        font = QFont("DejaVu Sans Mono" if mono else FONT)
        font.setPointSizeF(size)
        font.setBold(bold)
        return font

    def wrap(self, font: QFont, width: float, text: str) -> tuple[int, float]:
        """The wrap flags for `text` in `width` and its height: at word breaks, or anywhere when
        a word is wider than the column (account ids, hashes)."""
        metrics = QFontMetricsF(font, self.device)
        for flag in (Qt.TextFlag.TextWordWrap, Qt.TextFlag.TextWrapAnywhere):
            box = metrics.boundingRect(QRectF(0, 0, width, 1e7), int(flag), text)
            if box.width() <= width + 0.5:
                break
        return int(flag), box.height()

    def height(self, font: QFont, width: float, text: str) -> float:
        return self.wrap(font, width, text)[1]

    def new_page(self) -> None:
        if self.p is not None:
            _footer(self.p, self.report, self.page, self.pages, self.u)
            self.device.newPage()
        self.page += 1
        self.y = self.top

    def room(self, needed: float) -> None:
        if self.y + needed > self.bottom and self.y > self.top:
            self.new_page()

    def text(
        self,
        text: str,
        size: float = 8.5,
        *,
        bold: bool = False,
        colour: QColor = INK,
        before: float = 0.0,
        after: float = 3.0,
        keep: float = 0.0,
    ) -> None:
        """A paragraph; `keep` points of what follows must fit on the same page (headings)."""
        font = self.font(size, bold)
        h = self.height(font, self.width, text)
        self.room(h + (before + keep) * self.u)
        if self.y > self.top:
            self.y += before * self.u
        if self.p is not None:
            self.p.setFont(font)
            self.p.setPen(colour)
            box = QRectF(self.left, self.y, self.width, h)
            self.p.drawText(box, int(Qt.TextFlag.TextWordWrap), text)
        self.y += h + after * self.u

    def heading(self, text: str, level: int = 2) -> None:
        size = {1: 17.0, 2: 12.0, 3: 9.5}[level]
        self.text(text, size, bold=True, colour=TITLE, before=9 - 2 * level, after=3, keep=60)

    def muted(self, text: str) -> None:
        self.text(text, 7.5, colour=MUTED, after=4)

    def image(self, image: QImage, size: tuple[float, float]) -> None:
        w, h = size[0] * self.u, size[1] * self.u
        self.room(h)
        if self.p is not None:
            self.p.drawImage(QRectF(self.left + (self.width - w) / 2, self.y, w, h), image)
        self.y += h + 4 * self.u

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[object]],
        widths: Sequence[float],
        right: Collection[int] = (),
    ) -> None:
        """Columns take `widths` (relative) of the text width; cells wrap at word breaks."""
        total = sum(widths)
        cols = [self.width * w / total for w in widths]
        pad = 2.2 * self.u
        head_font, cell_font = self.font(7.2, bold=True), self.font(7.2)
        texts = [["" if v is None else str(v) for v in row] for row in rows]

        def row_height(font: QFont, cells: Sequence[str]) -> float:
            return 2 * pad + max(
                self.height(font, c - 2 * pad, t or " ") for c, t in zip(cols, cells, strict=True)
            )

        head_h = row_height(head_font, headers)
        first = row_height(cell_font, texts[0]) if texts else 0.0
        self.room(head_h + first)
        self._row(headers, cols, head_h, head_font, right, HEADER_BG)
        for n, cells in enumerate(texts):
            h = row_height(cell_font, cells)
            if self.y + h > self.bottom:
                self.new_page()
                self._row(headers, cols, head_h, head_font, right, HEADER_BG)
            self._row(cells, cols, h, cell_font, right, ZEBRA if n % 2 else None)
        self.y += 5 * self.u

    def _row(
        self,
        cells: Sequence[str],
        cols: Sequence[float],
        h: float,
        font: QFont,
        right: Collection[int],
        fill: QColor | None,
    ) -> None:
        p = self.p
        if p is not None:
            if fill is not None:
                p.fillRect(QRectF(self.left, self.y, self.width, h), fill)
            p.setFont(font)
            p.setPen(INK)
            pad = 2.2 * self.u
            x = self.left
            for k, (width, text) in enumerate(zip(cols, cells, strict=True)):
                align = Qt.AlignmentFlag.AlignRight if k in right else Qt.AlignmentFlag.AlignLeft
                flag, _ = self.wrap(font, width - 2 * pad, text)
                box = QRectF(x + pad, self.y + pad, width - 2 * pad, h - 2 * pad)
                p.drawText(box, int(align) | flag, text)
                x += width
        self.y += h

    def finish(self) -> int:
        if self.p is not None:
            _footer(self.p, self.report, self.page, self.pages, self.u)
        return self.page


def _footer(painter: QPainter, report: IncidentReport, page: int, pages: int, scale: float) -> None:
    """Drawn in device pixels: fonts in points already scale with the writer's resolution."""
    painter.save()
    top = (PAGE_H - MARGIN - FOOTER + 8) * scale
    left, width = MARGIN * scale, BODY_W * scale
    painter.setPen(QPen(GRID, 0.6 * scale))
    painter.drawLine(QPointF(left, top), QPointF(left + width, top))
    font = QFont(FONT)
    font.setPointSizeF(6.5)
    painter.setFont(font)
    painter.setPen(MUTED)
    scope = report.scope
    text = (
        f"{report.summary.title} · {scope.start} to {scope.end} · generated {report.generated_at}"
    )
    head = f"audit chain head at export {report.integrity.audit_head_hash}"
    box = QRectF(left, top + 3 * scale, width, 10 * scale)
    painter.drawText(box, Qt.AlignmentFlag.AlignLeft, text)
    painter.drawText(box, Qt.AlignmentFlag.AlignRight, f"Page {page} of {pages}")
    line2 = QRectF(left, top + 12 * scale, width, 10 * scale)
    painter.drawText(line2, Qt.AlignmentFlag.AlignLeft, head)
    painter.restore()


# ----- the sections ---------------------------------------------------------------------------


def _t(time: str) -> str:
    return time.replace("T", " ").removesuffix("Z")


def _compose(f: _Flow, report: IncidentReport, images: dict[str, QImage]) -> None:
    s, scope, fmt = report.summary, report.scope, report.fmt
    f.text(s.title, 17, bold=True, colour=TITLE, after=2)
    filters = []
    if scope.accounts:
        filters.append("accounts " + ", ".join(scope.accounts))
    if scope.instruments:
        filters.append("instruments " + ", ".join(scope.instruments))
    f.muted(
        f"Range {_t(scope.start)} to {_t(scope.end)} UTC (ticks {scope.start_tick} to "
        f"{scope.end_tick}) of a run from {_t(scope.run_start)} to {_t(scope.run_end)}"
        f"{'; ' + '; '.join(filters) if filters else ''}. Generated {_t(report.generated_at)} UTC. "
        "Amounts are exact to the currency's minor unit."
    )
    if s.description:
        f.muted(s.description)
    f.heading("1. Summary")
    for line in s.narrative:
        f.text(line, after=4)
    figures = [
        (
            "Liquidations",
            f"{s.liquidations:,} ({s.contracts_liquidated:,} contracts, "
            f"{s.liquidated_accounts:,} accounts)",
        ),
        ("Alerts raised", f"{s.alerts:,}"),
        ("Operator actions and approvals", f"{s.actions:,} ({s.refusals:,} refused)"),
        ("Settlements", f"{s.settlements:,}"),
    ]
    for w in report.waterfalls:
        figures.append((f"Deficit ({w.currency})", fmt(w.currency, w.deficit)))
        figures.append(
            (
                f"Insurance fund ({w.currency})",
                f"{fmt(w.currency, w.fund_start)} at the start, {fmt(w.currency, w.fund_end)} at "
                "the end",
            )
        )
    for c in report.clawbacks:
        figures.append(
            (
                f"Clawback {c.family} ({c.currency})",
                f"ratio {c.ratio}: {fmt(c.currency, c.charged)} from {c.accounts_charged:,} "
                f"accounts ({c.status})",
            )
        )
    f.table(("Figure", "Value"), figures, (1, 2.2))
    f.heading("2. Deficit waterfall")
    for w in report.waterfalls:
        f.image(images[f"waterfall-{w.currency}"], WATERFALL_SIZE)
        rows = [("deficit", fmt(w.currency, w.deficit))]
        rows += [(label, fmt(w.currency, -amount)) for label, amount in w.steps()]
        f.table(("Step", f"Amount ({w.currency})"), rows, (2, 1), right={1})
        note = (
            f"The fund pays from its own money (its balance at the start of the range, "
            f"{fmt(w.currency, w.fund_start)}, and {fmt(w.currency, w.surplus_in)} of liquidation "
            f"surpluses) before an injection ({fmt(w.currency, w.injected)} injected in the range)."
        )
        if w.adl_fills:
            note += (
                f" Auto-deleveraging closed {w.adl_contracts:,} contracts in {w.adl_fills:,} fills."
            )
        f.muted(note)
    f.new_page()
    f.heading("3. Charts")
    f.heading("Index, mark and last prices, with the liquidations listed in section 5", 3)
    f.image(images["prices"], PRICE_SIZE)
    if "zoom" in images:
        f.heading(
            f"Close-up: {_t(report.charts.zoom_start or '')} to {_t(report.charts.zoom_end or '')}"
            " UTC, around the largest liquidation",
            3,
        )
        f.image(images["zoom"], PRICE_SIZE)
    for fund in report.charts.fund:
        f.heading(f"Insurance fund ({fund.currency})", 3)
        f.image(images[f"fund-{fund.currency}"], FUND_SIZE)
    if report.charts.margin:
        f.heading("Margin ratio of open positions, before and after", 3)
        f.image(images["margin"], MARGIN_SIZE)
        f.muted(
            "Margin ratio = equity / maintenance margin; a position is liquidated at 1 or below. "
            + "; ".join(
                f"{d.label}: {d.positions:,} positions at {_t(d.time)}"
                for d in report.charts.margin
            )
            + "."
        )
    f.heading("4. Timeline")
    f.table(
        ("Time (UTC)", "What", "Who", "Subject", "Detail", "Reason", "Amount"),
        [
            (
                _t(e.time),
                e.kind.replace("_", " "),
                e.actor,
                e.subject,
                e.text,
                e.reason,
                "" if e.amount is None else fmt(e.currency, e.amount),
            )
            for e in report.timeline
        ],
        (1.05, 0.95, 1.0, 1.1, 3.15, 1.4, 1.7),
        right={6},
    )
    f.heading("5. Large liquidations")
    f.table(
        ("Started", "Finished", "Account", "Instrument", "Side", "Contracts", "Bankr.", "Avg fill",
         "Surplus", "Deficit", "Fund paid"),
        [
            (_t(r.started[5:]), _t(r.time[5:]), r.account, r.symbol, r.side, f"{r.contracts:,}",
             _price(r.bankruptcy_price), _price(r.fill_price), _m(report, r.currency, r.surplus),
             _m(report, r.currency, r.deficit), _m(report, r.currency, r.covered_by_fund))
            for r in report.liquidations
        ],
        (0.8, 0.8, 0.95, 1.25, 0.45, 0.95, 0.75, 0.75, 1.2, 1.3, 1.2),
        right={5, 6, 7, 8, 9, 10},
    )  # fmt: skip
    f.muted(
        f"{len(report.liquidations)} listed one by one (the largest by contracts, and any with a "
        "hundredth of the range's deficit or more); the others are added up in the timeline. "
        "Every liquidation of the range is in the CSV export. Amounts in the settle currency."
    )
    f.heading("6. Clawback")
    if not report.clawbacks:
        f.text("No clawback in the range.")
    for c in report.clawbacks:
        f.text(
            f"{c.family} {c.currency} at {_t(c.time)}: deficit to share "
            f"{fmt(c.currency, c.deficit)}; total profit {fmt(c.currency, c.total_profit)} of "
            f"{c.profitable_accounts:,} profitable accounts; ratio {c.ratio}; charged "
            f"{fmt(c.currency, c.charged)} to {c.accounts_charged:,} accounts; unrecovered "
            f"{fmt(c.currency, c.unrecovered)}; status {c.status}."
        )
        f.table(
            ("#", "Account", f"Profit ({c.currency})", f"Clawback ({c.currency})", "Share"),
            [
                (n + 1, a.account, _m(report, c.currency, a.profit),
                 _m(report, c.currency, a.amount),
                 f"{100 * a.amount / c.charged:.2f}%" if c.charged else "-")
                for n, a in enumerate(c.top)
            ],
            (0.4, 1.5, 1.5, 1.5, 0.8),
            right={0, 2, 3, 4},
        )  # fmt: skip
        f.muted(f"The {len(c.top)} most affected accounts; every allocation is in the CSV export.")
    f.heading("7. Requests and approvals")
    if report.approvals:
        f.table(
            ("Request", "Action", "Requested", "Reason", "Status", "Decided", "Decision reason",
             "Outcome"),
            [
                (a.request, a.action, f"{a.requested_by} {_t(a.requested_at)}", a.reason, a.status,
                 f"{a.decided_by} {_t(a.decided_at)}".strip(), a.decision_reason, a.outcome)
                for a in report.approvals
            ],
            (1.3, 1.05, 1.1, 1.45, 0.85, 1.1, 1.2, 1.5),
        )  # fmt: skip
    else:
        f.text("No request needed a second person in the range.")
    f.heading("8. Accounts involved")
    f.table(
        ("Account", "Liquidations", "Contracts", "ADL", "Alerts", "Actions", "Surplus", "Deficit",
         "Clawback", "Cur."),
        [
            (a.account, a.liquidations, f"{a.contracts_liquidated:,}", f"{a.adl_contracts:,}",
             a.alerts, a.actions, _m(report, a.currency, a.surplus),
             _m(report, a.currency, a.deficit), _m(report, a.currency, a.clawback), a.currency)
            for a in report.accounts
        ],
        (1.2, 1.05, 1.0, 0.55, 0.55, 0.6, 1.1, 1.2, 1.2, 0.45),
        right={1, 2, 3, 4, 5, 6, 7, 8},
    )  # fmt: skip
    f.muted(
        f"{len(report.accounts)} of {report.accounts_total:,} accounts, the most money at stake "
        "(deficit caused plus clawback paid) first."
    )
    i = report.integrity
    f.heading("9. Integrity")
    f.table(
        ("Item", "Value"),
        [
            ("Audit chain head at export", i.audit_head_hash),
            ("Audit chain", f"{i.audit_rows:,} rows, "
             + ("sound" if i.audit_sound else f"BROKEN: {i.audit_problem}")),
            ("Store", i.store_path),
            ("Store SHA-256", i.store_sha256 or "not computed (file too large)"),
            ("Store size", f"{i.store_bytes:,} bytes (+ {i.wal_bytes:,} bytes of write-ahead log)"),
            ("Engine state hash", f"{i.state_hash or '-'} at tick {i.state_tick}"),
            ("Versions", f"store written by risk-console {i.store_software_version} (schema "
             f"{i.schema_version}); report by risk-console {i.software_version}"),
            ("Generated at", f"{_t(report.generated_at)} UTC"),
        ],
        (1, 3),
    )  # fmt: skip


def _price(text: str | None) -> str:
    """A price for people: two decimals (the JSON and CSV keep every digit)."""
    return "-" if text is None else f"{float(text):,.2f}"


def _m(report: IncidentReport, currency: str, minor: int) -> str:
    return format_minor(minor, report.currencies.get(currency, 0)) if currency else "-"


# ----- charts ---------------------------------------------------------------------------------

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
