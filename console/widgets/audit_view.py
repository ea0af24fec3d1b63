"""The audit view: the store's hash-chained audit log, newest first, filtered by operator, kind
and time, paged; and a button that verifies the chain and names the first broken row. Pages and
the verdict are store queries (core.desk.queries) whose answers arrive later."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console.models.base import Column
from console.models.records import RecordsModel
from console.widgets.table import DataTable
from core.desk.audit import AuditEntry, VerifyResult
from core.desk.queries import AuditPage, AuditQuery, AuditVerify
from core.model.errors import InputError
from core.model.operations import Refusal, refusal_text

PAGE = 500
KINDS = ("", "login", "operator", "action", "request", "approval", "alert", "settings")
COLUMNS = (
    Column("seq", "#", "the row's place in the chain"),
    Column("at", "Time (UTC)", "when it was written", numeric=False),
    Column("operator", "Operator", "who acted (system: the engine)", numeric=False),
    Column("kind", "Kind", "what kind of entry", numeric=False),
    Column("subject", "Subject", "what it concerns", numeric=False),
    Column("reason", "Reason", "the reason given", numeric=False),
    Column("before", "Before", "the value before (JSON)", numeric=False),
    Column("after", "After", "the value after (JSON)", numeric=False),
)


def entry_cells(e: AuditEntry) -> tuple[str, ...]:
    return (
        str(e.seq),
        e.at,
        e.operator,
        e.kind,
        e.subject,
        e.reason,
        e.before or "",
        e.after or "",
    )


class AuditView(QWidget):
    def __init__(
        self, ask: Callable[[object, Callable[[Any], None]], None], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("audit-view")
        self.ask = ask
        self.offset = 0
        self.total = 0
        self.entries: list[AuditEntry] = []
        self._sized = False
        self.operator_edit = QLineEdit()
        self.operator_edit.setPlaceholderText("operator")
        self.kind_combo = QComboBox()
        self.kind_combo.setEditable(True)
        self.kind_combo.addItems(KINDS)
        self.since_edit = QLineEdit()
        self.since_edit.setPlaceholderText("since, e.g. 2018-07-31T10:00:00Z")
        self.until_edit = QLineEdit()
        self.until_edit.setPlaceholderText("until (exclusive)")
        apply = QPushButton("Filter")
        apply.clicked.connect(self.apply_filters)
        for edit in (self.operator_edit, self.since_edit, self.until_edit):
            edit.returnPressed.connect(self.apply_filters)
        filters = QHBoxLayout()
        for widget in (self.operator_edit, self.kind_combo, self.since_edit, self.until_edit):
            filters.addWidget(widget)
        filters.addWidget(apply)
        self.model: RecordsModel[AuditEntry] = RecordsModel(COLUMNS, entry_cells, self)
        self.table = DataTable(self.model, "audit-table")
        self.newer_button = QPushButton("Newer")
        self.older_button = QPushButton("Older")
        self.newer_button.clicked.connect(lambda: self.page(-1))
        self.older_button.clicked.connect(lambda: self.page(1))
        self.page_label = QLabel()
        self.verify_button = QPushButton("Verify chain")
        self.verify_button.clicked.connect(self.verify)
        self.verify_label = QLabel()
        self.verify_label.setObjectName("audit-verify")
        self.verify_label.setWordWrap(True)
        self.status_label = QLabel()
        self.status_label.setObjectName("audit-status")
        paging = QHBoxLayout()
        paging.addWidget(self.newer_button)
        paging.addWidget(self.older_button)
        paging.addWidget(self.page_label, 1)
        paging.addWidget(self.verify_button)
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 1)
        layout.addLayout(paging)
        layout.addWidget(self.verify_label)
        self.refresh()

    def filters(self) -> dict[str, Any]:
        values = {
            "operator": self.operator_edit.text().strip(),
            "kind": self.kind_combo.currentText().strip(),
            "since": self.since_edit.text().strip(),
            "until": self.until_edit.text().strip(),
        }
        return {k: v for k, v in values.items() if v}

    def apply_filters(self) -> None:
        self.offset = 0
        self.refresh()

    def page(self, direction: int) -> None:
        self.offset = max(0, min(self.offset + direction * PAGE, max(0, self.total - 1)))
        self.refresh()

    def refresh(self) -> None:
        """Ask for the current page; a bad filter is named and leaves the rows shown."""
        self.ask(AuditQuery(tuple(self.filters().items()), PAGE, self.offset), self.show_page)

    def show_page(self, page: object) -> None:
        if isinstance(page, InputError):
            self.status_label.setText(f"{page.field}: {page.message}")
            return
        if isinstance(page, Refusal):
            self.status_label.setText(refusal_text(page.reason, page.code))
            return
        if not isinstance(page, AuditPage):
            return
        self.status_label.setText("")
        total, entries = page.total, list(page.entries)
        self.offset, self.total, self.entries = page.offset, total, entries
        self.model.set_records(entries)
        if entries and not self._sized:
            # Once, from the first rows: the short columns fit their text; Before and After
            # (JSON) keep a fixed width and the last one stretches.
            for column in range(6):
                self.table.resizeColumnToContents(column)
            self.table.setColumnWidth(6, 260)
            self._sized = True
        first = self.offset + 1 if entries else 0
        self.page_label.setText(f"rows {first:,}-{self.offset + len(entries):,} of {total:,}")
        self.newer_button.setEnabled(self.offset > 0)
        self.older_button.setEnabled(self.offset + len(entries) < total)

    def verify(self) -> None:
        """Ask for the chain to be verified; the verdict is shown when it comes."""
        self.ask(AuditVerify(), self.show_verdict)

    def show_verdict(self, result: object) -> None:
        if isinstance(result, InputError):
            self.verify_label.setText(f"{result.field}: {result.message}")
            return
        if not isinstance(result, VerifyResult):
            return
        self.verify_label.setText(result.message())
        self.verify_label.setStyleSheet(
            "color: #166534;" if result.ok else "color: #b91c1c; font-weight: bold;"
        )
