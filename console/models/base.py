"""Shared pieces of the console's table models: columns with their formats, risk colours, and
plain-text export (copy, CSV) of whatever a model shows."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

from core.model import files
from core.model.text import csv_row, csv_writer

Index = QModelIndex | QPersistentModelIndex

# Margin-ratio bands (liquidation at 1): the colour of a row follows the worst band it is in.
RISK_BANDS = ((1.0, "critical"), (1.2, "high"), (1.5, "elevated"))
PALETTES = {
    "light": {
        "critical": QColor("#f4b6b6"),
        "high": QColor("#f9d2a6"),
        "elevated": QColor("#fbedb0"),
        "text_critical": QColor("#9b1c1c"),
        "text_good": QColor("#1e6b35"),
    },
    "dark": {
        "critical": QColor("#6b1f24"),
        "high": QColor("#6a4316"),
        "elevated": QColor("#4d4619"),
        "text_critical": QColor("#ff9c9c"),
        "text_good": QColor("#8fe0a6"),
    },
}


def risk_band(ratio: float) -> str | None:
    for limit, name in RISK_BANDS:
        if ratio <= limit:
            return name
    return None


def fmt_float(value: float, places: int = 4) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.{places}f}"


def fmt_money(value: float) -> str:
    """Major units: four places for coin amounts, two once they are large."""
    return fmt_float(value, 2 if abs(value) >= 100_000 else 4)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    tip: str
    numeric: bool = True


class ExportableModel(QAbstractTableModel):
    """A table model whose shown rows can be written out as text exactly as displayed."""

    columns: tuple[Column, ...] = ()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.palette = PALETTES["light"]

    def set_theme(self, theme: str) -> None:
        self.palette = PALETTES.get(theme, PALETTES["light"])
        if self.rowCount():
            self.dataChanged.emit(
                self.index(0, 0), self.index(self.rowCount() - 1, len(self.columns) - 1)
            )

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.columns[section].tip
        return None

    def cell_text(self, row: int, column: int) -> str:
        raise NotImplementedError

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The shown text and its alignment; any other role is the model's own (`extra`)."""
        if not index.isValid() or not 0 <= index.row() < self.rowCount():
            return None
        if not 0 <= index.column() < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cell_text(index.row(), index.column())
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.align(index.column())
        return self.extra(index, role)

    def multiData(self, index: Index, roleDataSpan: QModelRoleDataSpan) -> None:
        """Every role a delegate asks of a cell, in one call: painting a page of cells enters
        Python once a cell, not seven times, and each entry waits for the interpreter lock
        while the engine thread runs."""
        for role_data in roleDataSpan:
            role_data.setData(self.data(index, role_data.role()))

    def extra(self, index: Index, role: int) -> Any:
        return None

    def rows_text(self, rows: Iterable[int] | None = None) -> Iterable[list[str]]:
        for row in range(self.rowCount()) if rows is None else rows:
            yield [self.cell_text(row, c) for c in range(len(self.columns))]

    def export_csv(self, path: str | Path, progress: Callable[[int], None] | None = None) -> int:
        """Every shown row (in the shown order) with a header; returns the number of rows."""
        count = 0
        with files.replacing(path) as out:
            writer = csv_writer(out)
            writer.writerow(csv_row(c.title for c in self.columns))
            for values in self.rows_text():
                writer.writerow(csv_row(values))
                count += 1
                if progress is not None and count % 50_000 == 0:
                    progress(count)
        return count

    def align(self, column: int) -> int:
        if self.columns[column].numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
