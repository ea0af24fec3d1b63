"""The accounts view: every position in the numpy-backed table, with a text filter and margin
ratio / notional thresholds; double-click opens the account detail."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from console.models.positions import PositionsModel
from console.widgets.table import DataTable
from core.session.snapshot import Snapshot, TableSpec


class AccountsPanel(QWidget):
    account_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("accounts")
        self.model = PositionsModel(self)
        self.table = DataTable(self.model, "accounts")
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(7, Qt.SortOrder.AscendingOrder)
        self.table.doubleClicked.connect(self._chosen)
        self.search = QLineEdit()
        self.search.setObjectName("accounts-search")
        self.search.setPlaceholderText("account or instrument contains…")
        self.search.setClearButtonEnabled(True)
        self.max_ratio = _threshold("max margin ratio", 0.0, 1000.0, 2)
        self.min_notional = _threshold("min notional", 0.0, 1e12, 2)
        self.open_only = QCheckBox("open only")
        self.open_only.setChecked(True)
        self.flagged_only = QCheckBox("flagged only")
        self.count = QLabel()
        self.count.setObjectName("accounts-count")
        bar = QHBoxLayout()
        bar.addWidget(self.search, 2)
        bar.addWidget(QLabel("Margin ratio ≤"))
        bar.addWidget(self.max_ratio)
        bar.addWidget(QLabel("Notional ≥"))
        bar.addWidget(self.min_notional)
        bar.addWidget(self.open_only)
        bar.addWidget(self.flagged_only)
        bar.addStretch(1)
        bar.addWidget(self.count)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        # Typing waits a moment so a filter over a million rows runs once per pause, not per key.
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.apply_filter)
        self.search.textChanged.connect(self._debounce.start)
        for box in (self.max_ratio, self.min_notional):
            box.valueChanged.connect(self._debounce.start)
        for check in (self.open_only, self.flagged_only):
            check.toggled.connect(self.apply_filter)
        self._sized = False

    def apply_filter(self) -> None:
        spec = replace(
            self.model.spec,
            text=self.search.text().strip(),
            max_margin_ratio=self.max_ratio.value() or None,
            min_notional=self.min_notional.value() or None,
            open_only=self.open_only.isChecked(),
            flagged_only=self.flagged_only.isChecked(),
        )
        self.model.set_spec(spec)
        self._count()

    def spec(self) -> TableSpec:
        return self.model.spec

    def update_snapshot(self, snap: Snapshot) -> None:
        self.model.set_table(snap.table)
        if not self._sized and self.model.rowCount():
            self.table.size_columns()
            self._sized = True
        self._count()

    def _count(self) -> None:
        table = self.model.table
        total = len(table) if table is not None else 0
        self.count.setText(f"{self.model.rowCount():,} of {total:,} positions")

    def _chosen(self, index: object) -> None:
        name = self.model.account_name(index.row())  # type: ignore[attr-defined]
        if name is not None:
            self.account_chosen.emit(name)


def _threshold(tip: str, low: float, high: float, places: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(places)
    box.setSpecialValueText("any")
    box.setToolTip(f"{tip} (0 = any)")
    box.setMinimumWidth(90)
    return box
