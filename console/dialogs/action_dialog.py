"""One dialog for every operator action on an account or the fund: the fields of the chosen
action checked (the bad field named), a required reason, a force-reduce preview, a confirmation
step, and the raw command handed to `submit`; refusals are shown with their reason."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.model.errors import InputError
from core.model.limits import MAX_CONTRACTS, WHOLE, clip
from core.model.operations import ACTING_ROLES, Refusal, refusal_text
from core.model.units import Currency, check_minor, format_minor, parse_decimal, to_minor

if TYPE_CHECKING:
    pass

ACTIONS: dict[str, str] = {
    "warn": "Warn the account",
    "restrict": "Restrict to reduce-only",
    "freeze": "Freeze trading",
    "freeze_withdrawals": "Freeze withdrawals",
    "unfreeze": "Unfreeze",
    "cancel_orders": "Cancel open orders",
    "force_reduce": "Force-reduce a position",
    "inject": "Inject into the insurance fund",
}
ACCOUNT_ACTIONS = tuple(a for a in ACTIONS if a != "inject")
REQUESTS = frozenset({"force_reduce", "inject"})  # maker-checker: a supervisor approves
# The flags an action sets: refused up front when the account already has them all (the engine
# refuses too), so the operator learns it before confirming.
_SETS = {
    "warn": ("warned",),
    "restrict": ("reduce_only",),
    "freeze": ("frozen", "withdrawals_frozen"),
    "freeze_withdrawals": ("withdrawals_frozen",),
}
_UNFROZEN_BY = ("frozen", "withdrawals_frozen", "reduce_only")


@dataclass(frozen=True, slots=True)
class PositionInfo:
    symbol: str
    side: str  # long or short
    contracts: int


@dataclass(frozen=True, slots=True)
class ForceReducePreview:
    """The expected fill of a force-reduce against the book now (the engine works the rest on
    later ticks). Money in minor units of `currency`; prices and equity are display floats."""

    symbol: str
    currency: str
    decimals: int
    requested: int
    filled: int
    average_price: float
    worst_price: float
    realized: int  # PnL the account realizes on the filled part
    slippage: int  # that PnL against the same contracts valued at the mark (a cost when < 0)
    equity_before: float
    equity_after: float
    fund_free: int  # unchanged by the fill: a force-reduce settles with the account
    fund_shortfall: int  # what the fund would cover if the account ended below zero

    def _minor(self, valuation: float) -> int:
        """A valuation at the mark (a float) to the nearest minor unit, to be shown as money."""
        return round(valuation * 10**self.decimals)

    def lines(self) -> list[str]:
        money = lambda v: f"{format_minor(v, self.decimals, display=True)} {self.currency}"  # noqa: E731
        out = [
            f"Expected fill now: {self.filled:,} of {self.requested:,} {self.symbol} at "
            f"{self.average_price:,.4f} on average (worst {self.worst_price:,.4f})",
            f"Realized PnL {money(self.realized)}; slippage against the mark "
            f"{money(self.slippage)}",
            f"Account equity {money(self._minor(self.equity_before))} -> "
            f"{money(self._minor(self.equity_after))}",
            f"Insurance fund: {money(self.fund_free)} free, unchanged by the fill",
        ]
        if self.requested > self.filled:
            out.append(
                f"{self.requested - self.filled:,} contracts wait for liquidity (later ticks)"
            )
        if self.fund_shortfall:
            out.append(f"Shortfall the fund would cover: {money(self.fund_shortfall)}")
        return out


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What the dialog acts on: the operator, the account (None: fund actions only) with its
    restrictions and positions, the fund's currencies and a force-reduce preview."""

    operator: str
    role: str
    account: str | None = None
    flags: tuple[str, ...] = ()
    positions: tuple[PositionInfo, ...] = ()
    currencies: tuple[tuple[str, int], ...] = ()  # (code, decimals)
    preview: Callable[[str, int], ForceReducePreview] | None = None
    new_id: Callable[[str], str] = lambda kind: f"{kind}-{uuid.uuid4().hex[:10]}"


def build_action(context: ActionContext, kind: str, values: dict[str, str]) -> dict[str, Any]:
    """The raw command for `kind` from the typed `values` (text), checked as far as the console
    can: InputError names the bad field, Refusal says why the action is meaningless or not
    allowed. Requests get a fresh id."""
    if context.role not in ACTING_ROLES:
        raise Refusal("role", f"{context.operator} has the {context.role} role: no actions")
    if kind not in ACTIONS:
        raise InputError("action", f"expected one of {', '.join(ACTIONS)}, found {kind!r}")
    reason = values.get("reason", "").strip()
    if not reason:
        raise InputError("reason", "a reason is required")
    raw: dict[str, Any] = {"operator": context.operator, "action": kind, "reason": reason}
    if kind in ACCOUNT_ACTIONS:
        if context.account is None:
            raise InputError("account", "choose an account first")
        raw["account"] = context.account
        _check_state(context, kind)
    if kind == "warn":
        message = values.get("message", "").strip()
        if not message:
            raise InputError("message", "a warning needs a message to the account")
        raw["message"] = message
    elif kind == "force_reduce":
        symbol = values.get("symbol", "")
        held = {p.symbol: p for p in context.positions}
        if symbol not in held:
            raise InputError(
                "symbol", f"account {context.account} holds no {symbol or '?'} position"
            )
        text = _whole(values.get("contracts", ""))
        if text is None or int(text) <= 0:
            shown = clip(values.get("contracts", ""))
            raise InputError("contracts", f"expected a whole number of contracts, found {shown!r}")
        if int(text) > held[symbol].contracts:
            raise InputError(
                "contracts", f"the position holds {held[symbol].contracts:,} contracts"
            )
        raw.update(symbol=symbol, contracts=int(text))
    elif kind == "inject":
        decimals = dict(context.currencies)
        currency = values.get("currency", "")
        if currency not in decimals:
            raise InputError("currency", f"expected one of {', '.join(decimals)}")
        amount = parse_decimal(values.get("amount", "").strip(), "amount", positive=True)
        try:
            minor = to_minor(amount, decimals[currency])
        except ValueError:
            raise InputError(
                "amount", f"{currency} has {decimals[currency]} decimals; {amount} is finer"
            ) from None
        check_minor(minor, "amount", Currency(currency, decimals[currency]))
        raw.update(currency=currency, amount=format(amount.normalize(), "f"))
    if kind in REQUESTS:
        raw["id"] = context.new_id(kind)
    return raw


def _whole(typed: str) -> str | None:
    """Typed contracts as ASCII digits ("1,000" and "1_000" allowed as separators), or None."""
    text = typed.strip().replace(",", "").replace("_", "")
    if not WHOLE.fullmatch(text) or len(text) > len(str(MAX_CONTRACTS)):
        return None
    return text


def _check_state(context: ActionContext, kind: str) -> None:
    flags = set(context.flags)
    if kind in _SETS and flags >= set(_SETS[kind]):
        raise Refusal("no_effect", f"account {context.account} is already {'/'.join(_SETS[kind])}")
    if kind == "unfreeze" and not flags & set(_UNFROZEN_BY):
        raise Refusal("no_effect", f"account {context.account} is not frozen or restricted")


def describe(raw: dict[str, Any]) -> str:
    """The confirmation text of a raw command."""
    kind = raw["action"]
    target = f"account {raw['account']}" if "account" in raw else "the insurance fund"
    detail = ""
    if kind == "warn":
        detail = f' with the message "{raw["message"]}"'
    elif kind == "force_reduce":
        detail = f": {raw['contracts']:,} {raw['symbol']} through the liquidation path"
    elif kind == "inject":
        detail = f": {raw['amount']} {raw['currency']}"
    text = f"{ACTIONS[kind]} - {target}{detail}.\nReason: {raw['reason']}"
    if kind in REQUESTS:
        text += f"\nThis becomes request {raw['id']}: a different supervisor must approve it."
    return text


# Wide enough that a fill preview wraps into a few lines, not a column of words.
MIN_WIDTH = 520


class ActionDialog(QDialog):
    """Edit, then confirm; accepted once `submit(raw)` returns without a refusal."""

    def __init__(
        self,
        context: ActionContext,
        submit: Callable[[dict[str, Any]], None],
        *,
        action: str = "warn",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("action-dialog")
        self.setMinimumWidth(MIN_WIDTH)
        self.context = context
        self.submit = submit
        self.raw: dict[str, Any] | None = None
        self.setWindowTitle(f"Action on {context.account}" if context.account else "Fund action")
        self.pages = QStackedWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)
        self.error_label = QLabel()
        self.error_label.setObjectName("action-error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b91c1c;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        self._build_edit_page()
        self._build_confirm_page()
        if context.role not in ACTING_ROLES:
            self._show_error(f"{context.operator} has the {context.role} role: no actions")
            self.review_button.setEnabled(False)
        self.set_action(action if action in self._kinds() else self._kinds()[0])

    def _kinds(self) -> list[str]:
        return list(ACTIONS) if self.context.account else ["inject"]

    def _build_edit_page(self) -> None:
        page = QWidget()
        form = QFormLayout(page)
        self.action_combo = QComboBox()
        for kind in self._kinds():
            self.action_combo.addItem(ACTIONS[kind], kind)
        self.action_combo.currentIndexChanged.connect(self._on_kind)
        form.addRow("Action", self.action_combo)
        flags = ", ".join(self.context.flags) or "none"
        if self.context.account:
            form.addRow("Account", QLabel(f"{self.context.account}  (restrictions: {flags})"))
        self.message_edit = QLineEdit()
        self.symbol_combo = QComboBox()
        for p in self.context.positions:
            self.symbol_combo.addItem(f"{p.symbol}  {p.side} {p.contracts:,}", p.symbol)
        self.contracts_edit = QLineEdit()
        self.contracts_edit.setPlaceholderText("contracts to reduce")
        self.currency_combo = QComboBox()
        for code, _ in self.context.currencies:
            self.currency_combo.addItem(code, code)
        self.amount_edit = QLineEdit()
        self.amount_edit.setPlaceholderText("amount in major units, e.g. 2500")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("why (required; kept in the audit log)")
        self.preview_label = QLabel()
        self.preview_label.setObjectName("action-preview")
        self.preview_label.setWordWrap(True)
        self._rows = {
            "message": (form, "Message", self.message_edit),
            "symbol": (form, "Position", self.symbol_combo),
            "contracts": (form, "Contracts", self.contracts_edit),
            "currency": (form, "Currency", self.currency_combo),
            "amount": (form, "Amount", self.amount_edit),
        }
        for _, label, widget in self._rows.values():
            form.addRow(label, widget)
        form.addRow("Reason", self.reason_edit)
        form.addRow(self.preview_label)
        self.preview_button = QPushButton("Preview fill")
        self.preview_button.clicked.connect(self.update_preview)
        self.review_button = QPushButton("Review…")
        self.review_button.setDefault(True)
        self.review_button.clicked.connect(self.review)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.review_button)
        form.addRow(buttons)
        self.edit_page = page
        self.pages.addWidget(page)

    def _build_confirm_page(self) -> None:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.summary_label = QLabel()
        self.summary_label.setObjectName("action-summary")
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)
        layout.addStretch(1)
        back = QPushButton("Back")
        back.clicked.connect(lambda: self.pages.setCurrentWidget(self.edit_page))
        self.confirm_button = QPushButton("Confirm")
        self.confirm_button.clicked.connect(self.confirm)
        buttons = QHBoxLayout()
        buttons.addWidget(back)
        buttons.addStretch(1)
        buttons.addWidget(self.confirm_button)
        layout.addLayout(buttons)
        self.confirm_page = page
        self.pages.addWidget(page)

    # ----- behaviour ----------------------------------------------------------------------

    def set_action(self, kind: str) -> None:
        self.action_combo.setCurrentIndex(self.action_combo.findData(kind))
        self._on_kind()

    def kind(self) -> str:
        return str(self.action_combo.currentData())

    def _on_kind(self) -> None:
        kind = self.kind()
        shown = {
            "warn": {"message"},
            "force_reduce": {"symbol", "contracts"},
            "inject": {"currency", "amount"},
        }.get(kind, set())
        for name, (form, _, widget) in self._rows.items():
            form.setRowVisible(widget, name in shown)
        self.preview_button.setVisible(kind == "force_reduce")
        self.preview_label.clear()
        self.error_label.hide()

    def values(self) -> dict[str, str]:
        return {
            "message": self.message_edit.text(),
            "symbol": str(self.symbol_combo.currentData() or ""),
            "contracts": self.contracts_edit.text(),
            "currency": str(self.currency_combo.currentData() or ""),
            "amount": self.amount_edit.text(),
            "reason": self.reason_edit.text(),
        }

    def update_preview(self) -> ForceReducePreview | None:
        """The force-reduce preview for the typed contracts (shown under the fields)."""
        if self.context.preview is None or self.kind() != "force_reduce":
            return None
        values = self.values()
        text = _whole(values["contracts"])
        if text is None or int(text) <= 0 or not values["symbol"]:
            self.preview_label.setText("Type a whole number of contracts to preview the fill.")
            return None
        try:
            preview = self.context.preview(values["symbol"], int(text))
        except InputError as error:
            self._show_error(f"{error.field}: {error.message}")
            return None
        self.preview_label.setText("\n".join(preview.lines()))
        self._fit()
        return preview

    def review(self) -> bool:
        """Check the fields; on success show the confirmation page."""
        try:
            raw = build_action(self.context, self.kind(), self.values())
        except InputError as error:
            return self._show_error(f"{error.field}: {error.message}")
        except Refusal as refusal:
            return self._show_error(refusal_text(refusal.reason, refusal.code))
        self.raw = raw
        text = describe(raw)
        if raw["action"] == "force_reduce":
            preview = self.update_preview()
            if preview is not None:
                text += "\n\n" + "\n".join(preview.lines())
        self.summary_label.setText(text)
        self.error_label.hide()
        self.pages.setCurrentWidget(self.confirm_page)
        self._fit()
        return True

    def confirm(self) -> bool:
        """Hand the command to `submit`; a refusal sends the operator back to the fields."""
        if self.raw is None:
            return False
        try:
            self.submit(self.raw)
        except InputError as error:
            self.pages.setCurrentWidget(self.edit_page)
            return self._show_error(f"{error.field}: {error.message}")
        except Refusal as refusal:
            self.pages.setCurrentWidget(self.edit_page)
            return self._show_error(refusal_text(refusal.reason, refusal.code))
        self.accept()
        return True

    def _show_error(self, text: str) -> bool:
        self.error_label.setText(text)
        self.error_label.show()
        self._fit()
        return False

    def _fit(self) -> None:
        """Grow (never shrink) by what the wrapped texts just set lack: a label's height depends
        on its width, which the dialog's size hint does not ask until it is laid out again."""
        # The error line was hidden, so not laid out: it will be as wide as the pages above it.
        wanted = [(self.error_label, self.pages.width())]
        wanted += [(w, w.width()) for w in (self.preview_label, self.summary_label)]
        short = max(
            (w.heightForWidth(width) - w.height() for w, width in wanted if w.isVisibleTo(self)),
            default=0,
        )
        if short > 0:
            self.resize(self.width(), self.height() + short)
