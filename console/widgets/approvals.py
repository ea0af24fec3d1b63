"""The approvals view: requests waiting for a second person (force-reduce, injections, settlement
price adjustments, clawbacks) with their preview; a supervisor approves or rejects with a comment,
never their own request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console.models.base import Column
from console.models.records import RecordsModel
from console.widgets.table import DataTable
from core.model.errors import InputError
from core.model.operations import APPROVER_ROLE, Refusal, refusal_text

TITLES = {
    "force_reduce": "Force-reduce",
    "inject": "Fund injection",
    "adjust_settlement_price": "Settlement price",
    "approve_clawback": "Clawback",
}
COLUMNS = (
    Column("id", "Request", "the request's id", numeric=False),
    Column("kind", "Kind", "what approving does", numeric=False),
    Column("operator", "By", "who asked (system: the settlement)", numeric=False),
    Column("created", "Created", "when it was asked (UTC)", numeric=False),
    Column("summary", "What", "the request in one line", numeric=False),
    Column("reason", "Reason", "the reason given", numeric=False),
)


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """One request awaiting a decision. `action` is what approving does: `approve` for an
    operator's request, `approve_clawback` for a clawback the settlement froze (made by the
    system, so any supervisor may approve or reject it)."""

    id: str
    kind: str
    operator: str
    reason: str
    created: str
    summary: str
    preview: tuple[str, ...]
    action: str = "approve"
    params: tuple[tuple[str, str], ...] = ()

    @property
    def rejectable(self) -> bool:
        return self.action in ("approve", "approve_clawback")


def decision(request: PendingRequest, operator: str, approve: bool, comment: str) -> dict[str, Any]:
    """The raw command that approves or rejects `request`."""
    if not comment.strip():
        raise InputError("reason", "a comment is required")
    raw: dict[str, Any] = {"operator": operator, "reason": comment.strip()}
    if request.action == "approve_clawback":
        raw["action"] = "approve_clawback" if approve else "reject_clawback"
        raw.update(dict(request.params))
    else:
        raw.update(action="approve" if approve else "reject", request=request.id)
    return raw


def request_cells(r: PendingRequest) -> tuple[str, ...]:
    return (r.id, TITLES.get(r.kind, r.kind), r.operator, r.created, r.summary, r.reason)


class ApprovalsView(QWidget):
    """Pending requests (call `set_requests` with each fresh list) and the decision buttons."""

    def __init__(
        self,
        operator: str,
        role: str,
        submit: Callable[[dict[str, Any]], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("approvals-view")
        self.operator = operator
        self.role = role
        self.submit = submit
        self.requests: tuple[PendingRequest, ...] = ()
        self.model: RecordsModel[PendingRequest] = RecordsModel(COLUMNS, request_cells, self)
        self.table = DataTable(self.model, "approvals-table")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._quiet = False  # the list is being rebuilt: its selection changes are not the user's
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: None if self._quiet else self._on_selection()
        )
        self.preview = QPlainTextEdit()
        self.preview.setObjectName("approvals-preview")
        self.preview.setReadOnly(True)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("comment (required; kept in the audit log)")
        self.approve_button = QPushButton("Approve")
        self.reject_button = QPushButton("Reject")
        self.approve_button.clicked.connect(lambda: self.decide(True))
        self.reject_button.clicked.connect(lambda: self.decide(False))
        self.status_label = QLabel()
        self.status_label.setObjectName("approvals-status")
        self.status_label.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.comment_edit, 1)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.approve_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.preview, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        self._on_selection()

    def set_requests(self, requests: tuple[PendingRequest, ...]) -> None:
        """Show a fresh list, keeping the selected request selected while it is still pending."""
        chosen = self.selected()
        self.requests = tuple(requests)
        # Rebuilt silently: the status line keeps the last outcome while the same request stays
        # selected.
        self._quiet = True
        self.model.set_records(self.requests)
        ids = [r.id for r in self.requests]
        if chosen is not None and chosen.id in ids:
            self.table.selectRow(ids.index(chosen.id))
        elif self.requests:
            self.table.selectRow(0)
        self._quiet = False
        now = self.selected()
        self._on_selection(
            keep_status=chosen is not None and now is not None and chosen.id == now.id
        )

    def selected(self) -> PendingRequest | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.requests):
            return None
        return self.requests[rows[0].row()]

    def why_not(self, request: PendingRequest | None) -> str | None:
        """Why this operator cannot decide `request` (None: they can)."""
        if request is None:
            return "Select a request."
        if request.operator == self.operator:
            return "This is your own request: a different supervisor must decide it."
        if self.role != APPROVER_ROLE:
            return f"Deciding requests needs the {APPROVER_ROLE} role; you are {self.role}."
        return None

    def _on_selection(self, keep_status: bool = False) -> None:
        request = self.selected()
        self.preview.setPlainText("\n".join(request.preview) if request else "")
        blocked = self.why_not(request)
        self.approve_button.setEnabled(blocked is None)
        self.reject_button.setEnabled(
            blocked is None and request is not None and request.rejectable
        )
        self.approve_button.setToolTip(blocked or "")
        if not keep_status:
            self.status_label.setText(blocked if request is not None and blocked else "")

    def decide(self, approve: bool) -> bool:
        """Approve or reject the selected request with the typed comment."""
        request = self.selected()
        try:
            raw = (
                decision(request, self.operator, approve, self.comment_edit.text())
                if request
                else None
            )
            if raw is None:
                return False
            self.submit(raw)
        except InputError as error:
            self.status_label.setText(f"{error.field}: {error.message}")
            return False
        except Refusal as refusal:
            self.status_label.setText(refusal_text(refusal.reason, refusal.code))
            return False
        verb = "approved" if approve else "rejected"
        self.status_label.setText(f"{request.id} {verb}; it takes effect at the next tick.")
        self.comment_edit.clear()
        return True
