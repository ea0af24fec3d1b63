"""`risk-console whatif ... --out COMPARE.pdf`: the what-if comparison alone as a PDF, laid out by
the incident report's page flow (console/report/pdf.py) with a footer of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QIODevice, QMarginsF
from PySide6.QtGui import QPageLayout, QPageSize, QPainter, QPdfWriter

from console.report.pdf import _Flow, draw_footer
from console.report.style import DPI, TITLE
from console.report.whatif_pdf import whatif_images, whatif_section
from core.model import files


class _CompareFlow(_Flow):
    title = "What-if comparison"

    def footer(self) -> None:
        assert self.p is not None
        draw_footer(self.p, (self.title,), self.page, self.pages, self.u)


def write_comparison_pdf(doc: dict[str, Any], path: str | Path, *, dpi: int = DPI) -> int:
    """The comparison (risk-whatif/1) to `path` whole; returns the number of pages (needs a
    QGuiApplication: console/report/export.py `ensure_gui_app`)."""
    images = whatif_images(doc, dpi)
    store = doc["runs"][0]["store"] if doc["runs"] else ""
    title = f"What-if comparison of {Path(store).name}"

    def compose(flow: _CompareFlow) -> None:
        flow.title = title
        flow.text(title, 17, bold=True, colour=TITLE, after=2)
        flow.muted(f"Original store {store}; branches beside it in {Path(store).name}.whatif/.")
        whatif_section(flow, doc, images)

    counting = _CompareFlow(None, QPdfWriter(QBuffer()), None, dpi, 0)
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
    writer.setTitle(title)
    painter = QPainter(writer)
    try:
        flow = _CompareFlow(painter, writer, None, dpi, pages)
        compose(flow)
        written = flow.finish()
    finally:
        painter.end()
    files.write_bytes(path, bytes(buffer.data()))
    return written
