"""A table view for the numpy-backed models: fixed row heights (cheap at a million rows), copy of
the selection as tab-separated text, CSV export of every shown row."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHeaderView,
    QMenu,
    QMessageBox,
    QTableView,
    QWidget,
)

from console.models.base import ExportableModel

MAX_COPY_CELLS = 200_000


class DataTable(QTableView):
    def __init__(self, model: ExportableModel, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.export_name = name
        self.setModel(model)
        self.setWordWrap(False)
        self.setAlternatingRowColors(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        vertical = self.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(self.fontMetrics().height() + 6)
        vertical.hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def table_model(self) -> ExportableModel:
        model = self.model()
        assert isinstance(model, ExportableModel)
        return model

    def size_columns(self, widths: dict[int, int] | None = None, sample_rows: int = 1) -> None:
        """Column widths from the header text and the first `sample_rows` values, never from
        all rows (a small table of figures passes all of its few rows)."""
        metrics = self.fontMetrics()
        model = self.table_model()
        rows = range(min(sample_rows, model.rowCount()))
        for c, column in enumerate(model.columns):
            texts = [column.title, *(model.cell_text(r, c) for r in rows)]
            width = max(metrics.horizontalAdvance(t) for t in texts)
            self.setColumnWidth(c, (widths or {}).get(c, width + 24))

    def keyPressEvent(self, event: object) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):  # type: ignore[attr-defined]
            self.copy_selection()
            return
        super().keyPressEvent(event)  # type: ignore[arg-type]

    def selection_text(self) -> str:
        indexes = self.selectionModel().selectedIndexes() if self.selectionModel() else []
        if not indexes:
            return ""
        indexes = sorted(indexes, key=lambda i: (i.row(), i.column()))[:MAX_COPY_CELLS]
        model = self.table_model()
        header = "\t".join(model.columns[c].title for c in sorted({i.column() for i in indexes}))
        lines: dict[int, list[str]] = {}
        for index in indexes:
            lines.setdefault(index.row(), []).append(model.cell_text(index.row(), index.column()))
        return "\n".join([header, *("\t".join(v) for v in lines.values())])

    def copy_selection(self) -> str:
        text = self.selection_text()
        if text:
            QGuiApplication.clipboard().setText(text)
        return text

    def export_csv(self, path: str | Path) -> int:
        return self.table_model().export_csv(path)

    def context_menu(self) -> QMenu:
        """Copy and Export CSV: what every table's context menu starts with."""
        menu = QMenu(self)
        menu.addAction("Copy", self.copy_selection)
        menu.addAction("Export CSV…", self.export_dialog)
        return menu

    def _menu(self, pos: QPoint) -> None:
        self.context_menu().exec(self.viewport().mapToGlobal(pos))

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export table", f"{self.export_name}.csv", "CSV (*.csv)"
        )
        if path:
            try:
                self.export_csv(path)
            except OSError as error:  # a full disk or a read-only folder: the old file is kept
                QMessageBox.warning(self, "Export table", str(error))
