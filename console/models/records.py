"""A table model over a short tuple of frozen records (alerts, audit entries, pending requests,
manipulation checks): each row is one record shown as the texts its view's columns give it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QModelIndex, Qt

from console.models.base import Column, ExportableModel, Index

T = TypeVar("T")


class RecordsModel(ExportableModel, Generic[T]):
    """`cells(record)` gives one text per column; the texts are computed once per `set_records`,
    so copy, CSV export and painting show the same strings. Long texts are also the tooltip."""

    def __init__(
        self,
        columns: tuple[Column, ...],
        cells: Callable[[T], Sequence[str]],
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self.columns = columns
        self.cells = cells
        self.records: tuple[T, ...] = ()
        self.texts: tuple[tuple[str, ...], ...] = ()

    def set_records(self, records: Sequence[T]) -> None:
        texts = tuple(tuple(self.cells(r)) for r in records)
        if any(len(t) != len(self.columns) for t in texts):
            raise ValueError(f"expected {len(self.columns)} cells per record")
        self.beginResetModel()
        self.records, self.texts = tuple(records), texts
        self.endResetModel()

    def record(self, row: int) -> T | None:
        return self.records[row] if 0 <= row < len(self.records) else None

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.records)

    def cell_text(self, row: int, column: int) -> str:
        return self.texts[row][column]

    def extra(self, index: Index, role: int) -> Any:
        if role == Qt.ItemDataRole.ToolTipRole:
            text = self.cell_text(index.row(), index.column())
            return text if len(text) > 40 else None  # a cut JSON or message reads in full
        return None
