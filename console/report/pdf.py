"""The incident report as a PDF for people: A4 pages laid out by QTextDocument (tables repeat
their header rows on each page), the charts of report_charts at the printer's resolution, and a
footer with the page number and the audit chain's head on every page."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
)

from console.report.charts import FUND_SIZE, MARGIN_SIZE, PRICE_SIZE, WATERFALL_SIZE, charts
from console.report.style import (
    BODY_W,
    DPI,
    FONT,
    FOOTER,
    GRID,
    HEADER_BG,
    INK,
    MARGIN,
    MUTED,
    PAGE_H,
    TITLE,
    ZEBRA,
)
from console.report.whatif_pdf import whatif_images, whatif_section
from core.model import files
from core.model.units import format_minor
from core.report.report import IncidentReport


def write_pdf(
    report: IncidentReport,
    path: str | Path,
    *,
    dpi: int = DPI,
    whatif: dict[str, Any] | None = None,
) -> int:
    """Write the report to `path` (needs a QGuiApplication); returns the number of pages. The
    PDF is drawn in memory, where Qt cannot lose a write error, then written whole (core/files).
    `whatif`: the comparison of the store's branches (risk-whatif/1), a section of its own."""
    images = charts(report, dpi)
    if whatif is not None:
        images.update(whatif_images(whatif, dpi))

    def compose(flow: _Flow) -> None:
        _compose(flow, report, images)
        if whatif is not None:
            whatif_section(flow, whatif, images, number=10)

    scratch = QBuffer()
    counting = _Flow(None, QPdfWriter(scratch), report, dpi, 0)
    compose(counting)
    pages = counting.finish()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
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
        compose(flow)
        written = flow.finish()
    finally:
        painter.end()
    files.write_bytes(path, bytes(buffer.data()))
    return written


class _Flow:
    """Top-to-bottom layout on A4 pages in device pixels: nothing is cut at a page's end (a
    paragraph, image or table row that does not fit goes to the next page whole) and a table
    repeats its header row on each page. Without a painter it only counts the pages."""

    def __init__(
        self,
        painter: QPainter | None,
        device: QPdfWriter,
        report: IncidentReport | None,
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
            self.footer()
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

    def footer(self) -> None:
        """The page's footer (the incident report's; a comparison's PDF draws its own)."""
        assert self.p is not None and self.report is not None
        _footer(self.p, self.report, self.page, self.pages, self.u)

    def finish(self) -> int:
        if self.p is not None:
            self.footer()
        return self.page


def _footer(painter: QPainter, report: IncidentReport, page: int, pages: int, scale: float) -> None:
    scope = report.scope
    text = (
        f"{report.summary.title} · {scope.start} to {scope.end} · generated {report.generated_at}"
    )
    head = f"audit chain head at export {report.integrity.audit_head_hash}"
    draw_footer(painter, (text, head), page, pages, scale)


def draw_footer(
    painter: QPainter, lines: tuple[str, ...], page: int, pages: int, scale: float
) -> None:
    """A page's footer: a rule, its lines on the left, the page number on the right. Drawn in
    device pixels: fonts in points already scale with the writer's resolution."""
    painter.save()
    top = (PAGE_H - MARGIN - FOOTER + 8) * scale
    left, width = MARGIN * scale, BODY_W * scale
    painter.setPen(QPen(GRID, 0.6 * scale))
    painter.drawLine(QPointF(left, top), QPointF(left + width, top))
    font = QFont(FONT)
    font.setPointSizeF(6.5)
    painter.setFont(font)
    painter.setPen(MUTED)
    for n, line in enumerate(lines):
        box = QRectF(left, top + (3 + 9 * n) * scale, width, 10 * scale)
        painter.drawText(box, Qt.AlignmentFlag.AlignLeft, line)
        if n == 0:
            painter.drawText(box, Qt.AlignmentFlag.AlignRight, f"Page {page} of {pages}")
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
