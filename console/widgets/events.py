"""The events log: every engine event, newest first, filtered by kind and text."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from console.models.logs import EventsModel
from console.widgets.table import DataTable
from core.session.snapshot import Snapshot

ALL_KINDS = "all events"


class EventsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("events")
        self.model = EventsModel(self)
        self.table = DataTable(self.model, "events")
        self.kind = QComboBox()
        self.kind.addItem(ALL_KINDS)
        self.search = QLineEdit()
        self.search.setPlaceholderText("detail contains…")
        self.search.setClearButtonEnabled(True)
        self.count = QLabel()
        self.kind.currentTextChanged.connect(lambda _: self.apply_filter())
        self.search.textChanged.connect(lambda _: self.apply_filter())
        bar = QHBoxLayout()
        bar.addWidget(self.kind)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        self._kinds: set[str] = set()
        self._kind_scanned = 0
        self._sized = False

    def apply_filter(self) -> None:
        kind = self.kind.currentText()
        self.model.set_filter(kind="" if kind == ALL_KINDS else kind, text=self.search.text())
        self._count()

    def update_snapshot(self, snap: Snapshot) -> None:
        self.model.set_log(
            snap.events,
            account_ids=snap.table.account_ids,
            start_epoch=snap.start_epoch,
            tick_seconds=snap.tick_seconds,
        )
        n = len(snap.events)
        start = self._kind_scanned if self._kind_scanned <= n else 0
        seen = set(snap.events.text["kind"][start:n]) - self._kinds
        self._kind_scanned = n
        if seen:
            self._kinds |= seen
            self.kind.blockSignals(True)
            current = self.kind.currentText()
            self.kind.clear()
            self.kind.addItems([ALL_KINDS, *sorted(self._kinds)])
            self.kind.setCurrentText(current)
            self.kind.blockSignals(False)
        if not self._sized and self.model.rowCount():
            self.table.size_columns({3: 600})
            self._sized = True
        self._count()

    def _count(self) -> None:
        total = len(self.model.log) if self.model.log is not None else 0
        self.count.setText(f"{self.model.rowCount():,} of {total:,}")
