"""The alerts view: the alert queue filtered by state, with acknowledge, resolve, dismiss and
reopen, an owner and notes per alert, and "Branch here…" on a row (a what-if at the alert's tick,
asked of whoever listens to `branch_requested`); and the surveillance thresholds editor. It works
through an `AlertsBackend` whose answers arrive later (console.worker.operations.DeskAlerts: the
engine thread reads the store and audits every change)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol

from PySide6.QtCore import QPoint, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.models.base import Column
from console.models.records import RecordsModel
from console.widgets.table import DataTable
from core.desk.alerts import STATES, Alert
from core.desk.queries import AlertPage
from core.model.errors import InputError
from core.model.operations import Refusal, refusal_text
from core.model.thresholds import Thresholds

MOVES = {
    "acknowledged": "Acknowledge",
    "resolved": "Resolve",
    "dismissed": "Dismiss",
    "open": "Reopen",
}
NOBODY = "(nobody)"
COLUMNS = (
    Column("id", "#", "the alert's number"),
    Column("time", "Time", "when it was raised (UTC)", numeric=False),
    Column("rule", "Rule", "the surveillance rule", numeric=False),
    Column("severity", "Severity", "warning or critical", numeric=False),
    Column("account", "Account", "the account concerned, if any", numeric=False),
    Column("symbol", "Symbol", "the instrument or currency concerned", numeric=False),
    Column("message", "Message", "what the rule saw", numeric=False),
    Column("state", "State", "where the alert is in the queue", numeric=False),
    Column("owner", "Owner", "who works it", numeric=False),
)


def alert_cells(a: Alert) -> tuple[str, ...]:
    return (
        str(a.id),
        a.time,
        a.rule,
        a.severity,
        a.account or "",
        a.symbol or "",
        a.message,
        a.state if a.standing else f"{a.state} (cleared)",
        a.owner or "",
    )


class AlertsBackend(Protocol):
    """`page` and `change` answer through `reply`: an AlertPage or Alert, or the InputError or
    Refusal met. `thresholds` is None until the engine has published them."""

    def page(self, state: str | None, reply: Callable[[Any], None]) -> None: ...
    def change(
        self,
        alert_id: int,
        reply: Callable[[Any], None],
        *,
        state: str | None = None,
        assign: bool = False,
        owner: str | None = None,
        note: str = "",
    ) -> None: ...
    def thresholds(self) -> Thresholds | None: ...
    def set_thresholds(self, changes: dict[str, object], reason: str) -> dict[str, Any]: ...


class AlertsView(QWidget):
    """Call `refresh()` when new alerts may have been recorded (after each snapshot, say).
    `read_only` (a viewer) shows everything and disables every change; a branch writes only a
    store of its own, so "Branch here…" stays open to a viewer."""

    branch_requested = Signal(object)  # an Alert: a what-if from its tick, freezing its account

    def __init__(
        self, backend: AlertsBackend, parent: QWidget | None = None, *, read_only: bool = False
    ) -> None:
        super().__init__(parent)
        self.setObjectName("alerts-view")
        self.backend = backend
        self.read_only = read_only
        self.shown: list[Alert] = []
        self.tabs = QTabWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.tabs.addTab(self._queue_tab(), "Alerts")
        self.tabs.addTab(self._thresholds_tab(), "Thresholds")
        self.refresh()

    # ----- the queue ----------------------------------------------------------------------

    def _queue_tab(self) -> QWidget:
        page = QWidget()
        self.state_combo = QComboBox()
        self.state_combo.setObjectName("alerts-state")
        self.state_combo.addItem("All states", None)
        for state in STATES:
            self.state_combo.addItem(state, state)
        self.state_combo.setCurrentIndex(self.state_combo.findData("open"))
        self.state_combo.currentIndexChanged.connect(self.refresh)
        self.model: RecordsModel[Alert] = RecordsModel(COLUMNS, alert_cells, self)
        self.table = DataTable(self.model, "alerts-table")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.table.customContextMenuRequested.disconnect()
        self.table.customContextMenuRequested.connect(
            lambda pos: self.alert_menu(pos).exec(self.table.viewport().mapToGlobal(pos))
        )
        self.notes_view = QPlainTextEdit()
        self.notes_view.setObjectName("alerts-notes")
        self.notes_view.setReadOnly(True)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (required to resolve or dismiss)")
        self.owner_combo = QComboBox()
        self.assign_button = QPushButton("Assign")
        self.assign_button.clicked.connect(self.assign)
        self.move_buttons: dict[str, QPushButton] = {}
        moves = QHBoxLayout()
        for state, label in MOVES.items():
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, s=state: self.move(s))
            self.move_buttons[state] = button
            moves.addWidget(button)
        moves.addStretch(1)
        moves.addWidget(QLabel("Owner"))
        moves.addWidget(self.owner_combo)
        moves.addWidget(self.assign_button)
        self.status_label = QLabel()
        self.status_label.setObjectName("alerts-status")
        self.status_label.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.state_combo)
        self.counts_label = QLabel()
        top.addWidget(self.counts_label, 1)
        layout = QVBoxLayout(page)
        layout.addLayout(top)
        layout.addWidget(self.table, 3)
        layout.addWidget(self.notes_view, 1)
        layout.addWidget(self.note_edit)
        layout.addLayout(moves)
        layout.addWidget(self.status_label)
        return page

    def refresh(self) -> None:
        """Ask for the queue in the chosen state; it is shown when the answer comes."""
        self.backend.page(self.state_combo.currentData(), self.show_page)

    def show_page(self, page: object) -> None:
        if not isinstance(page, AlertPage):
            self._status(page)
            return
        if page.state != self.state_combo.currentData():
            return  # answers an earlier choice of state: the newer one is on its way
        chosen = self.selected()
        self.shown = list(page.alerts)
        counts = dict(page.counts)
        self.counts_label.setText("   ".join(f"{s}: {counts[s]:,}" for s in STATES))
        owners = [NOBODY, *page.owners]
        if [self.owner_combo.itemText(i) for i in range(self.owner_combo.count())] != owners:
            self.owner_combo.clear()
            self.owner_combo.addItems(owners)
        self.model.set_records(self.shown)
        ids = [a.id for a in self.shown]
        if chosen is not None and chosen.id in ids:
            self.table.selectRow(ids.index(chosen.id))
        self._on_selection()

    def select(self, alert_id: int) -> None:
        self.table.selectRow([a.id for a in self.shown].index(alert_id))

    def selected(self) -> Alert | None:
        if not hasattr(self, "table"):
            return None
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.shown):
            return None
        return self.shown[rows[0].row()]

    def alert_menu(self, pos: QPoint) -> QMenu:
        """The table's menu with "Branch here…" for the alert of the row under `pos`."""
        menu = self.table.context_menu()
        menu.addSeparator()
        index = self.table.indexAt(pos)
        alert = self.shown[index.row()] if index.isValid() else None
        if alert is None or alert.tick is None:
            branch = menu.addAction("Branch here…")
            branch.setEnabled(False)
        else:
            freeze = f", freeze {alert.account}" if alert.account else ""
            branch = menu.addAction(
                f"Branch here (tick {alert.tick:,}{freeze})…", lambda: self._branch(alert)
            )
        branch.setObjectName("alert-branch-here")
        return menu

    def _branch(self, alert: Alert) -> None:
        # The row becomes the selection, so the dock's "From selected alert" agrees with it
        # (unless a refresh took it off the page while the menu was open).
        if alert.id in (a.id for a in self.shown):
            self.select(alert.id)
        self.branch_requested.emit(alert)

    def _on_selection(self) -> None:
        alert = self.selected()
        allowed = alert.allowed() if alert and not self.read_only else ()
        for state, button in self.move_buttons.items():
            button.setEnabled(state in allowed)
        self.assign_button.setEnabled(alert is not None and not self.read_only)
        if alert is None:
            self.notes_view.clear()
            return
        lines = [f"{alert.message} (value {alert.value}, threshold {alert.threshold})"]
        if alert.cleared_at:
            lines.append(f"Rule cleared at {alert.cleared_at}")
        lines += [f"{n.at}  {n.operator}: {n.text}" for n in alert.notes]
        self.notes_view.setPlainText("\n".join(lines))
        self.owner_combo.setCurrentText(alert.owner or NOBODY)

    def move(self, state: str) -> bool:
        """Send the move of the selected alert; False when none is selected."""
        alert = self.selected()
        if alert is None:
            return False
        self.backend.change(alert.id, self._changed, state=state, note=self.note_edit.text())
        return True

    def assign(self) -> bool:
        alert = self.selected()
        if alert is None:
            return False
        owner = self.owner_combo.currentText()
        self.backend.change(
            alert.id,
            self._changed,
            assign=True,
            owner=None if owner == NOBODY else owner,
            note=self.note_edit.text(),
        )
        return True

    def _changed(self, updated: object) -> None:
        if not isinstance(updated, Alert):
            self._status(updated)
            return
        self.status_label.setText(
            f"Alert {updated.id} is {updated.state}, owner {updated.owner or 'none'}"
        )
        self.note_edit.clear()
        self.refresh()

    def _status(self, error: object) -> None:
        if isinstance(error, InputError):
            self.status_label.setText(f"{error.field}: {error.message}")
        elif isinstance(error, Refusal):
            self.status_label.setText(refusal_text(error.reason, error.code))

    # ----- thresholds ---------------------------------------------------------------------

    def _thresholds_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.threshold_edits: dict[str, QLineEdit] = {}
        for f in fields(Thresholds):
            edit = QLineEdit()
            edit.setObjectName(f"threshold-{f.name}")
            self.threshold_edits[f.name] = edit
            form.addRow(f.name.replace("_", " "), edit)
        self.thresholds_reason = QLineEdit()
        self.thresholds_reason.setPlaceholderText("why (required; kept in the audit log)")
        form.addRow("Reason", self.thresholds_reason)
        self.thresholds_button = QPushButton("Apply thresholds")
        self.thresholds_button.clicked.connect(self.apply_thresholds)
        form.addRow(self.thresholds_button)
        self.thresholds_button.setEnabled(not self.read_only)
        self.thresholds_status = QLabel()
        self.thresholds_status.setObjectName("thresholds-status")
        self.thresholds_status.setWordWrap(True)
        form.addRow(self.thresholds_status)
        self.load_thresholds()
        return page

    def load_thresholds(self) -> None:
        current = self.backend.thresholds()
        if current is None:
            return  # the engine's first published state fills them in
        for name, edit in self.threshold_edits.items():
            edit.setText(str(getattr(current, name)))

    def apply_thresholds(self) -> bool:
        """Send the thresholds that differ from the current ones, with the reason."""
        current = self.backend.thresholds()
        if current is None:
            self.thresholds_status.setText("The engine's thresholds have not arrived yet.")
            return False
        changes = {
            name: edit.text().strip()
            for name, edit in self.threshold_edits.items()
            if edit.text().strip() != str(getattr(current, name))
        }
        if not changes:
            self.thresholds_status.setText("No threshold changed.")
            return False
        try:
            changed = self.backend.set_thresholds(changes, self.thresholds_reason.text())
        except InputError as error:
            self.thresholds_status.setText(f"{error.field}: {error.message}")
            return False
        except Refusal as refusal:
            self.thresholds_status.setText(refusal_text(refusal.reason, refusal.code))
            return False
        self.thresholds_status.setText(
            "Changed: " + ", ".join(f"{k} = {v}" for k, v in changed.items())
        )
        self.thresholds_reason.clear()
        self.load_thresholds()
        return True
