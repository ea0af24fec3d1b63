"""The settlement view of one contract family: the computed settlement price, the index over the
window with the manipulation indicators, the pending deficit and the fund per currency, a live
clawback preview at the computed or a typed price (sortable allocation table), a proposal of an
adjusted price, and a supervisor's approval or rejection of the pending clawback."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console.models.base import Column, ExportableModel, Index
from console.models.records import RecordsModel
from console.widgets.plots import Plot
from console.widgets.table import DataTable
from core.model.errors import InputError
from core.model.events import Indicator
from core.model.operations import ACTING_ROLES, APPROVER_ROLE, Refusal, refusal_text
from core.model.settlement import ClawbackPreview, SettlementReview
from core.model.units import format_minor

INDICATOR_COLUMNS = (
    Column("name", "Check", "the manipulation check", numeric=False),
    Column("value", "Value", "what it measured over the window"),
    Column("threshold", "Threshold", "where it trips"),
    Column("tripped", "Tripped", "yes: the check suspects manipulation", numeric=False),
    Column("detail", "Detail", "what it saw", numeric=False),
)


def indicator_cells(i: Indicator) -> tuple[str, ...]:
    return (
        i.name,
        f"{i.value:.4g}",
        f"{i.threshold:.4g}",
        "yes" if i.tripped else "",
        i.detail,
    )


@dataclass(frozen=True, slots=True)
class SettlementState:
    """What the view shows: the engine's review of the family, how to name accounts and format
    money, and when the run started (the review's times are seconds since then)."""

    review: SettlementReview
    start_epoch: float
    account_ids: tuple[str, ...]
    decimals: dict[str, int]
    quote: str  # what the family's prices are quoted in


class AllocationModel(ExportableModel):
    """Every profitable account's share of a clawback: numpy columns, sorted with argsort."""

    columns = (
        Column("account", "Account", "the profitable account", numeric=False),
        Column("profit", "Profit", "its profit in the period at the settlement price"),
        Column("amount", "Clawback", "what it pays (exact, minor units shown in full)"),
        Column("share", "Share %", "clawback as a share of its profit"),
    )

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.names: np.ndarray = np.zeros(0, dtype=object)
        self.profits = np.zeros(0, dtype=np.int64)
        self.amounts = np.zeros(0, dtype=np.int64)
        self.order = np.zeros(0, dtype=np.int64)
        self.decimals = 8

    def set_preview(
        self, preview: ClawbackPreview | None, ids: tuple[str, ...], decimals: int
    ) -> None:
        self.beginResetModel()
        if preview is None:
            self.names = np.zeros(0, dtype=object)
            self.profits = self.amounts = np.zeros(0, dtype=np.int64)
        else:
            self.names = np.array(ids, dtype=object)[preview.accounts]
            self.profits, self.amounts = preview.profits, preview.amounts
        self.decimals = decimals
        # Largest clawback first, as a desk reads it.
        self.order = np.argsort(-self.amounts, kind="stable")
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else int(self.order.size)

    def _key(self, column: int) -> np.ndarray:
        if column == 0:
            return self.names
        if column == 1:
            return self.profits
        if column == 2:
            return self.amounts
        return self.amounts / np.maximum(self.profits, 1)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        keys = self._key(column)
        ranks = np.argsort(keys, kind="stable")
        self.order = ranks[::-1] if order == Qt.SortOrder.DescendingOrder else ranks
        self.layoutChanged.emit()

    def cell_text(self, row: int, column: int) -> str:
        r = int(self.order[row])
        if column == 0:
            return str(self.names[r])
        if column == 1:
            return format_minor(int(self.profits[r]), self.decimals, display=True)
        if column == 2:
            return format_minor(int(self.amounts[r]), self.decimals, display=True)
        profit = int(self.profits[r])
        return f"{100 * int(self.amounts[r]) / profit:.4f}" if profit else "—"

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cell_text(index.row(), index.column())
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.align(index.column())
        return None


class SettlementView(QWidget):
    """`set_state` with each fresh SettlementState; `preview(family, currency, price)` is the
    engine's Settlements.preview; `submit(raw)` sends proposals and approvals."""

    def __init__(
        self,
        operator: str,
        role: str,
        submit: Callable[[dict[str, Any]], None],
        preview: Callable[[str, str, Decimal], ClawbackPreview],
        *,
        theme: str = "light",
        new_id: Callable[[], str] = lambda: f"adj-{uuid.uuid4().hex[:10]}",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settlement-view")
        self.operator, self.role, self.submit, self.preview_fn = operator, role, submit, preview
        self.new_id = new_id
        self.state: SettlementState | None = None
        self.shown_preview: ClawbackPreview | None = None
        self._in_model: ClawbackPreview | None = None
        self.summary_label = QLabel()
        self.summary_label.setObjectName("settlement-summary")
        self.summary_label.setWordWrap(True)
        self.plot = Plot("Index over the settlement window", "Price", "Time (UTC)", time_axis=True)
        self.plot.setMinimumHeight(170)  # below that the time axis and its label are cut
        self.plot.apply_theme(theme)
        self.index_curve = self.plot.curve("index", theme, "index")
        self.computed_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#1f6fd1"))
        self.typed_line = pg.InfiniteLine(
            angle=0, movable=False, pen=pg.mkPen("#e08a00", style=Qt.PenStyle.DashLine)
        )
        self.plot.addItem(self.computed_line)
        self.plot.addItem(self.typed_line)
        self.indicator_model: RecordsModel[Indicator] = RecordsModel(
            INDICATOR_COLUMNS, indicator_cells, self
        )
        self.indicators = DataTable(self.indicator_model, "settlement-indicators")
        self.indicators.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.currency_combo = QComboBox()
        self.currency_combo.currentIndexChanged.connect(self.update_preview)
        self.price_edit = QLineEdit()
        self.price_edit.setObjectName("settlement-price")
        self.price_edit.setPlaceholderText("computed price")
        self.price_edit.textChanged.connect(self.update_preview)
        self.preview_label = QLabel()
        self.preview_label.setObjectName("settlement-preview")
        self.preview_label.setWordWrap(True)
        self.model = AllocationModel(self)
        self.table = DataTable(self.model, "clawback-allocations")
        self.table.setSortingEnabled(True)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (required; kept in the audit log)")
        self.propose_button = QPushButton("Propose this price")
        self.propose_button.clicked.connect(self.propose)
        self.approve_button = QPushButton("Approve pending clawback")
        self.approve_button.clicked.connect(self.approve_clawback)
        self.reject_button = QPushButton("Reject pending clawback")
        self.reject_button.setObjectName("settlement-reject")
        self.reject_button.clicked.connect(self.reject_clawback)
        self.status_label = QLabel()
        self.status_label.setObjectName("settlement-status")
        self.status_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Currency", self.currency_combo)
        form.addRow("Price", self.price_edit)
        actions = QHBoxLayout()
        actions.addWidget(self.reason_edit, 1)
        actions.addWidget(self.propose_button)
        actions.addWidget(self.approve_button)
        actions.addWidget(self.reject_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.plot, 2)
        layout.addWidget(self.indicators, 1)
        layout.addLayout(form)
        layout.addWidget(self.preview_label)
        layout.addWidget(self.table, 2)
        layout.addLayout(actions)
        layout.addWidget(self.status_label)
        self._update_buttons()

    # ----- state --------------------------------------------------------------------------

    def set_state(self, state: SettlementState) -> None:
        self.state = state
        r = state.review
        money = lambda c, v: f"{format_minor(v, state.decimals[c], display=True)} {c}"  # noqa: E731
        lines = [
            f"<b>{r.family}</b> at {r.time:%Y-%m-%d %H:%M:%S} UTC; next settlement "
            + (f"{r.scheduled:%Y-%m-%d %H:%M:%S}" if r.scheduled else "none")
            + (f" (delayed from {r.delayed_from:%H:%M:%S})" if r.delayed_from else ""),
            f"Computed price (index mean over the window): <b>{r.computed_price or '—'}</b> "
            f"{state.quote}"
            + (f"; approved adjustment <b>{r.adjustment}</b>" if r.adjustment is not None else ""),
        ]
        lines += [f"Proposed by {who}: {price} (request {rid})" for rid, who, price in r.proposals]
        for c in sorted(r.pending_deficit):
            lines.append(
                f"{c}: pending deficit {money(c, r.pending_deficit[c])}, "
                f"fund free {money(c, r.fund_free[c])}"
            )
        for c, p in sorted(r.pending_clawbacks.items()):
            lines.append(
                f"{c}: clawback request <b>{p.request}</b> waits for a supervisor "
                f"(ratio {p.preview.ratio_text}, digest {p.digest[:12]})"
            )
        if r.assessment.suspected:
            names = ", ".join(i.name for i in r.assessment.tripped)
            lines.append(f"<span style='color:#b91c1c'>Manipulation suspected: {names}</span>")
        self.summary_label.setText("<br>".join(lines))
        x = state.start_epoch + r.index_times.astype(np.float64)
        self.index_curve.setData(x, r.index_prices)
        self.plot.getPlotItem().setLabel("left", f"Index ({state.quote})")
        if r.computed_price is not None:
            self.computed_line.setValue(float(r.computed_price))
        self.computed_line.setVisible(r.computed_price is not None)
        self.indicator_model.set_records(r.assessment.indicators)
        currencies = sorted(set(r.pending_deficit) | set(r.pending_clawbacks))
        current = self.currency_combo.currentText()
        if [
            self.currency_combo.itemText(i) for i in range(self.currency_combo.count())
        ] != currencies:
            self.currency_combo.blockSignals(True)
            self.currency_combo.clear()
            self.currency_combo.addItems(currencies)
            if current in currencies:
                self.currency_combo.setCurrentText(current)
            self.currency_combo.blockSignals(False)
        self.update_preview()

    def typed_price(self) -> Decimal | None:
        """The typed price, None when the field is empty (the computed price is meant)."""
        text = self.price_edit.text().strip()
        if not text:
            return None
        try:
            price = Decimal(text)
        except InvalidOperation:
            raise InputError("price", f"not a decimal number: {text!r}") from None
        if not price.is_finite() or price <= 0:
            raise InputError("price", f"expected a positive price, found {text!r}")
        return price

    def update_preview(self) -> ClawbackPreview | None:
        """Recompute the preview for the chosen currency at the typed (or computed) price. With
        the field empty and a clawback request pending, show the request's frozen preview."""
        state, currency = self.state, self.currency_combo.currentText()
        self.shown_preview = None
        if state is None or not currency:
            self.model.set_preview(None, (), 8)
            self._in_model = None
            self._update_buttons()
            return None
        r = state.review
        try:
            typed = self.typed_price()
            pending = r.pending_clawbacks.get(currency)
            if typed is None and pending is not None:
                preview, source = pending.preview, f"pending request {pending.request}"
            else:
                price = typed if typed is not None else r.computed_price
                if price is None:
                    raise InputError("price", "no index in the window yet: type a price")
                preview = self.preview_fn(r.family, currency, price)
                source = "typed price" if typed is not None else "computed price"
        except InputError as error:
            self.preview_label.setText(f"{error.field}: {error.message}")
            self.model.set_preview(None, (), state.decimals.get(currency, 8))
            self._in_model = None
            self.typed_line.setVisible(False)
            self._update_buttons()
            return None
        decimals = state.decimals[currency]
        money = lambda v: f"{format_minor(v, decimals, display=True)} {currency}"  # noqa: E731
        self.preview_label.setText(
            f"At {preview.price} ({source}): clawback {money(preview.deficit)} after the fund pays "
            f"{money(preview.fund_pays)}; total profit {money(preview.total_profit)}; ratio "
            f"{preview.ratio_text}; unrecovered {money(preview.unrecovered)}; "
            f"{preview.accounts.size:,} accounts; digest {preview.digest[:12]}"
        )
        self.typed_line.setValue(float(preview.price))
        self.typed_line.setVisible(typed is not None)
        if preview is not self._in_model:
            # A new preview (not the same one published again): reload, keeping no stale sort.
            self.model.set_preview(preview, state.account_ids, decimals)
            self._size_columns()
            self._in_model = preview
        self.shown_preview = preview
        self._update_buttons()
        return preview

    def _size_columns(self) -> None:
        """Widths from the longest name and the largest amounts, so no figure is cut."""
        model, metrics = self.model, self.table.fontMetrics()
        if not model.rowCount():
            return
        widest = (
            max(model.names, key=len),
            format_minor(int(model.profits.max()), model.decimals, display=True),
            format_minor(int(model.amounts.max()), model.decimals, display=True),
        )
        for c, text in enumerate(widest):
            title = model.columns[c].title
            width = max(metrics.horizontalAdvance(text), metrics.horizontalAdvance(title))
            self.table.setColumnWidth(c, width + 28)

    def _update_buttons(self) -> None:
        r = self.state.review if self.state else None
        pending = r is not None and self.currency_combo.currentText() in r.pending_clawbacks
        self.propose_button.setEnabled(r is not None and self.role in ACTING_ROLES)
        for button in (self.approve_button, self.reject_button):
            button.setEnabled(pending and self.role == APPROVER_ROLE)
            button.setToolTip(
                "" if self.role == APPROVER_ROLE else f"needs the {APPROVER_ROLE} role"
            )

    # ----- commands -----------------------------------------------------------------------

    def _reason(self) -> str:
        reason = self.reason_edit.text().strip()
        if not reason:
            raise InputError("reason", "a reason is required")
        return reason

    def propose(self) -> bool:
        """Propose the typed price for the family's next settlement (a request)."""
        if self.state is None:
            return False
        try:
            price = self.typed_price()
            if price is None:
                raise InputError("price", "type the adjusted price to propose")
            raw = {
                "operator": self.operator,
                "action": "adjust_settlement_price",
                "family": self.state.review.family,
                "price": format(price, "f"),
                "reason": self._reason(),
                "id": self.new_id(),
            }
        except InputError as error:
            return self._status(f"{error.field}: {error.message}")
        return self._send(raw, f"price {raw['price']} proposed as request {raw['id']}")

    def approve_clawback(self) -> bool:
        """Approve the pending clawback of the chosen currency, naming the digest shown."""
        return self._decide_clawback("approve_clawback", "approved")

    def reject_clawback(self) -> bool:
        """Reject the pending clawback of the chosen currency, naming the digest shown: nobody is
        charged and its deficit stays open until the next settlement."""
        return self._decide_clawback("reject_clawback", "rejected")

    def _decide_clawback(self, action: str, done: str) -> bool:
        state, currency = self.state, self.currency_combo.currentText()
        pending = state.review.pending_clawbacks.get(currency) if state else None
        if state is None or pending is None:
            return self._status("No clawback of this currency awaits a decision.")
        try:
            raw = {
                "operator": self.operator,
                "action": action,
                "family": state.review.family,
                "currency": currency,
                "digest": pending.digest,
                "reason": self._reason(),
            }
        except InputError as error:
            return self._status(f"{error.field}: {error.message}")
        return self._send(raw, f"clawback {pending.request} {done}")

    def _send(self, raw: dict[str, Any], done: str) -> bool:
        try:
            self.submit(raw)
        except InputError as error:
            return self._status(f"{error.field}: {error.message}")
        except Refusal as refusal:
            return self._status(refusal_text(refusal.reason, refusal.code))
        self.reason_edit.clear()
        self._status(f"{done}; it takes effect at the next tick.")
        return True

    def _status(self, text: str) -> bool:
        self.status_label.setText(text)
        return False
