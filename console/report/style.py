"""The incident report's look, shared by its PDF pages and its charts: A4 geometry in points,
the resolution, the font and the colours."""

from __future__ import annotations

from PySide6.QtGui import QColor

DPI = 300
PAGE_W, PAGE_H = 595.28, 841.89  # A4 in points
MARGIN, FOOTER = 40.0, 26.0
BODY_W = PAGE_W - 2 * MARGIN
FONT = "DejaVu Sans"
PALETTE = ("#1f6fd1", "#e08a00", "#1f9d55", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d")
ZEBRA, HEADER_BG, TITLE = QColor("#f1f4f7"), QColor("#d9e2ea"), QColor("#14324f")
INK, GRID, MUTED = QColor("#202830"), QColor("#d5dae0"), QColor("#5b6570")
