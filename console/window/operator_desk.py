"""The operator's side of the main window: login (with the demo identities on a built-in
scenario), the operations docks (alerts, approvals, settlement review, audit log) fed from the
engine thread, account and fund actions, and the outcome of each command where it was made. The
store is read and written on the engine thread only: the UI thread runs no SQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFrame, QLabel, QMenu, QScrollArea, QWidget

from console.dialogs.action_dialog import ActionContext, ActionDialog
from console.dialogs.login import LoginDialog
from console.widgets.alerts_view import AlertsView
from console.widgets.approvals import ApprovalsView
from console.widgets.audit_view import AuditView
from console.widgets.settlement_view import SettlementView
from console.widgets.table import DataTable
from console.worker.operations import DeskAlerts, OperationsState, Outcome, PreviewCache
from core.desk.operators import Operator
from core.desk.queries import Login, LoginInfo, LoginInfoQuery
from core.model.errors import InputError
from core.model.operations import ACTING_ROLES, Refusal
from core.session.snapshot import Snapshot

if TYPE_CHECKING:
    from console.widgets.account_detail import AccountDetailPanel
    from console.worker.bridge import Bridge

# Title, dock object name, shortcut that shows and raises it.
DOCKS = (
    ("Alerts", "alerts", "F5"),
    ("Approvals", "approvals", "F6"),
    ("Settlement review", "settlement", "F7"),
    ("Audit log", "audit", "F8"),
)
SETTLEMENT_HEIGHT = 720  # pixels the settlement review needs to show everything uncut
FOLLOW = {  # engine outcomes of later ticks go to the view that sent the command
    "approve": "Approvals",
    "reject": "Approvals",
    "approve_clawback": "Settlement review",
    "reject_clawback": "Settlement review",
    "adjust_settlement_price": "Settlement review",
}
COLOURS = {
    "light": {True: "#166534", False: "#b91c1c"},
    "dark": {True: "#4ade80", False: "#f87171"},
}


class DeskHost(Protocol):
    """What the desk needs of the window that holds it (a QMainWindow: console/window/
    main_window.py), so that the desk does not import the window back."""

    bridge: Bridge
    theme: str
    detail: AccountDetailPanel
    docks: dict[str, QDockWidget]
    status_operator: QLabel

    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None: ...

    def show_outcome(self, outcome: Outcome) -> None: ...

    def addAction(self, action: QAction) -> None: ...


def _placeholder(name: str, text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    return label


class OperatorDesk(QObject):
    """Owns the logged-in operator and the views that act for them; their store queries are
    answered by the engine thread (Bridge.ask), and an answer that arrives after a logout or a
    change of store is dropped."""

    # An Alert: "Branch here…" on the Alerts dock (the alerts view is made again at each login;
    # this signal stays, for the What-if dock to listen to once).
    branch_requested = Signal(object)

    def __init__(self, window: DeskHost) -> None:
        super().__init__(window)
        self.window = window
        self.bridge = window.bridge
        self.theme = window.theme
        self.generation = 0  # moves on at each logout: answers asked for before it are dropped
        self.store_path: str | None = None
        self.scenario = ""
        self.operator: Operator | None = None
        self.ask_login = False  # show the login dialog when a store opens
        self.credentials: tuple[str, str] | None = None  # log in without the dialog
        self.login_dialog: LoginDialog | None = None
        self.action_dialog: ActionDialog | None = None
        self.approvals: ApprovalsView | None = None
        self.settlement: SettlementView | None = None
        self.alerts: AlertsView | None = None
        self.audit: AuditView | None = None
        self.state: OperationsState | None = None
        self.sinks: dict[int, Callable[[Outcome], None]] = {}
        self.awaiting: Counter[str] = Counter()  # commands sent, by action, awaiting a verdict
        self.raised_for: tuple[str, ...] = ()
        self._audit_head = -1
        self.previews = PreviewCache(self.bridge.request_preview)
        self.previews.arrived = self._preview_arrived
        area = Qt.DockWidgetArea.BottomDockWidgetArea
        for title, name, _ in DOCKS:
            window.add_dock(title, _placeholder(name, "Log in to see this view."), area)
        self.docks: dict[str, QDockWidget] = {t: window.docks[t] for t, _, _ in DOCKS}
        # A dock brought to the front shows the store as it is now, not as it was last read.
        self.docks["Audit log"].visibilityChanged.connect(
            lambda shown: shown and self.refresh_audit(force=True)
        )
        self.docks["Alerts"].visibilityChanged.connect(
            lambda shown: shown and self.alerts is not None and self.alerts.refresh()
        )
        self.bridge.operations_ready.connect(self.on_operations)
        self.bridge.outcome.connect(self.on_outcome)
        self.bridge.context_ready.connect(self._open_action_dialog)
        self.bridge.preview_ready.connect(self.previews.answer)

    # ----- actions and menus --------------------------------------------------------------

    def build_actions(self) -> list[QAction]:
        """The Operations menu: each dock, then account and fund actions, then the login."""
        actions = []
        for title, _, shortcut in DOCKS:
            action = QAction(title, self.window)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(lambda _=False, t=title: self.show_dock(t))
            actions.append(action)
        self.act_action = QAction("Act on account…", self.window)
        self.act_action.setShortcut(QKeySequence("Ctrl+Shift+A"))
        self.act_action.setToolTip("warn, restrict, freeze or force-reduce the account in detail")
        self.act_action.triggered.connect(lambda: self.act_on_account(self.window.detail.account))
        self.inject_action = QAction("Fund injection…", self.window)
        self.inject_action.setShortcut(QKeySequence("Ctrl+Shift+I"))
        self.inject_action.triggered.connect(lambda: self.act_on_account(None, "inject"))
        self.login_action = QAction("Log in as another operator…", self.window)
        self.login_action.setShortcut(QKeySequence("Ctrl+L"))
        self.login_action.triggered.connect(self.show_login)
        for action in (*actions, self.act_action, self.inject_action, self.login_action):
            self.window.addAction(action)
        self._update_actions()
        return [*actions, self.act_action, self.inject_action, self.login_action]

    def show_dock(self, title: str) -> None:
        dock = self.docks[title]
        dock.show()
        dock.raise_()

    def can_act(self) -> bool:
        return self.operator is not None and self.operator.role in ACTING_ROLES

    def _update_actions(self) -> None:
        if hasattr(self, "act_action"):
            self.act_action.setEnabled(self.can_act())
            self.inject_action.setEnabled(self.can_act())

    def install_menu(self, table: DataTable, account_at: Callable[[QPoint], str | None]) -> None:
        """Replace the table's context menu with one that also acts on the account."""
        table.customContextMenuRequested.disconnect()
        table.customContextMenuRequested.connect(
            lambda pos: self.table_menu(table, pos, account_at).exec(
                table.viewport().mapToGlobal(pos)
            )
        )

    def table_menu(
        self, table: DataTable, pos: QPoint, account_at: Callable[[QPoint], str | None]
    ) -> QMenu:
        menu = table.context_menu()
        menu.addSeparator()
        account = account_at(pos)
        act = menu.addAction(
            f"Act on account {account}…" if account else "Act on account…",
            lambda: self.act_on_account(account),
        )
        act.setObjectName("act-on-account")
        act.setEnabled(account is not None and self.can_act())
        return menu

    # ----- login --------------------------------------------------------------------------

    def on_snapshot(self, snap: Snapshot) -> None:
        if snap.store_path != self.store_path:
            self.store_changed(snap.store_path, snap.scenario)

    def store_changed(self, path: str | None, scenario: str) -> None:
        """A new run or store: log out and log in again (dialog or preset)."""
        self.log_out()
        self.store_path, self.scenario = path, scenario
        if path is None:
            return
        if self.credentials is not None:
            self.log_in(*self.credentials)
        elif self.ask_login:
            QTimer.singleShot(0, self.show_login)

    def ask(self, query: object, reply: Callable[[Any], None]) -> None:
        """Send a store query to the engine thread; `reply` gets the answer unless the operator
        logged out (or the store changed) in between."""
        generation = self.generation
        self.bridge.ask(query, lambda answer: generation == self.generation and reply(answer))

    def _demo(self) -> bool:
        """A built-in scenario's store gets the demo identities while it has no operators."""
        from core.scenario.builtin import builtin_scenarios

        return self.scenario in builtin_scenarios()

    def log_in(self, name: str, password: str) -> None:
        """Check the name and password on the engine thread (audited); the operator is set when
        the answer comes, and a refusal is shown in the status bar (and, for the preset
        credentials, the dialog opens with the name filled in)."""
        if self.store_path is None:
            self.window.show_outcome(Outcome(False, "login refused: no run is open"))
            return
        self.ask(Login(name, password, demo=self._demo()), self._logged_in)

    def _logged_in(self, answer: object) -> None:
        if isinstance(answer, Operator):
            self.set_operator(answer)
            return
        text = answer.reason if isinstance(answer, Refusal) else str(answer)
        self.window.show_outcome(Outcome(False, f"login refused: {text}"))
        if self.ask_login or self.credentials is not None:
            QTimer.singleShot(0, self.show_login)

    def show_login(self) -> None:
        """Open the login dialog once the engine thread says who may log in."""
        if self.store_path is not None:
            self.ask(LoginInfoQuery(demo=self._demo()), self._open_login)

    def _open_login(self, info: object) -> None:
        if not isinstance(info, LoginInfo):
            text = info.message if isinstance(info, InputError) else str(info)
            self.window.show_outcome(Outcome(False, f"login: {text}"))
            return
        if not info.operators:
            text = "this store has no operators: add one with `risk-console operators add`"
            self.window.show_outcome(Outcome(False, text))
            return
        if self.login_dialog is not None:
            self.login_dialog.deleteLater()
        dialog = LoginDialog(self.ask, info, self.window)
        if self.credentials is not None:
            dialog.name_edit.setText(self.credentials[0])
        dialog.accepted.connect(lambda: self.set_operator(dialog.operator))
        self.login_dialog = dialog
        dialog.open()

    def log_out(self) -> None:
        self.generation += 1
        self.operator = None
        self.awaiting.clear()
        self.state = None
        self.bridge.set_operations(False)
        for title, name, _ in DOCKS:
            self._replace(title, _placeholder(name, "Log in to see this view."))
        self.approvals = self.settlement = self.alerts = self.audit = None
        self.window.status_operator.setText("not logged in")
        self._update_actions()

    def set_operator(self, operator: Operator | None) -> None:
        if operator is None or self.store_path is None:
            return
        self.log_out()
        self.operator = operator
        name, role = operator.name, operator.role
        self.approvals = ApprovalsView(name, role, self._submitter("Approvals"))
        self.settlement = SettlementView(
            name, role, self._submitter("Settlement review"), self.previews.get, theme=self.theme
        )
        self.alerts = AlertsView(
            DeskAlerts(self.ask, operator, self._send_thresholds, self._thresholds),
            read_only=role not in ACTING_ROLES,
        )
        self.alerts.branch_requested.connect(self.branch_requested)
        self.audit = AuditView(self.ask)
        self._audit_head = -1
        # The review is tall (summary, chart, checks, allocations): in a short dock it scrolls
        # rather than squeezing its chart and tables until text is cut.
        self.settlement.setMinimumHeight(SETTLEMENT_HEIGHT)
        review = QScrollArea()
        review.setObjectName("settlement-scroll")
        review.setWidgetResizable(True)
        review.setFrameShape(QFrame.Shape.NoFrame)
        review.setWidget(self.settlement)
        views = (self.alerts, self.approvals, review, self.audit)
        for (title, _, _), view in zip(DOCKS, views, strict=True):
            self._replace(title, view)
        looks = "" if role in ACTING_ROLES else " — view only"
        self.window.status_operator.setText(f"{name} ({role}){looks}")
        self._update_actions()
        self.bridge.set_operations(True)

    def _replace(self, title: str, widget: QWidget) -> None:
        dock = self.docks[title]
        old = dock.widget()
        dock.setWidget(widget)
        if old is not None and old is not widget:
            old.deleteLater()

    # ----- commands and their outcome -----------------------------------------------------

    def _submitter(self, view: str) -> Callable[[dict[str, Any]], None]:
        return lambda raw: self.submit(raw, self._sink(view))

    def _sink(self, view: str) -> Callable[[Outcome], None]:
        def show(outcome: Outcome) -> None:
            target = {
                "Approvals": self.approvals,
                "Settlement review": self.settlement,
            }.get(view)
            if target is not None:
                target.status_label.setText(outcome.text)

        return show

    def submit(self, raw: dict[str, Any], sink: Callable[[Outcome], None] | None = None) -> int:
        """Send a command for the logged-in operator with their role; its outcome is shown in
        the status bar and by `sink`."""
        if self.operator is None:
            raise Refusal("login", "log in first")
        token = self.bridge.submit(raw, self.operator.role)
        if sink is not None:
            self.sinks[token] = sink
        return token

    def _send_thresholds(self, changes: dict[str, object], reason: str) -> None:
        if self.operator is None:
            raise Refusal("login", "log in first")
        token = self.bridge.set_thresholds(changes, self.operator.name, reason)
        self.sinks[token] = self._thresholds_outcome

    def _thresholds_outcome(self, outcome: Outcome) -> None:
        if self.alerts is not None:
            self.alerts.thresholds_status.setText(outcome.text)

    def _thresholds(self) -> Any:
        return self.state.thresholds if self.state is not None else None

    def on_outcome(self, outcome: Outcome) -> None:
        me = self.operator.name if self.operator is not None else None
        if me is None or outcome.operator not in (None, me):
            return
        if outcome.token:
            sink = self.sinks.pop(outcome.token, None)
            if outcome.ok and outcome.action:
                self.awaiting[outcome.action] += 1
        elif outcome.action is None:
            sink = None  # a read for this operator failed (an unknown account, say)
        elif self.awaiting[outcome.action] > 0:
            # The engine's verdict on a command sent from here (not on the scenario's own).
            self.awaiting[outcome.action] -= 1
            sink = self._sink(FOLLOW[outcome.action]) if outcome.action in FOLLOW else None
        else:
            return
        if sink is not None:
            sink(outcome)
        self.window.show_outcome(outcome)

    def act_on_account(self, account: str | None, action: str = "warn") -> None:
        """Open the action dialog on `account` (None: the fund) once the engine thread has
        read what it needs."""
        if self.operator is None or (account is None and action != "inject"):
            return
        self.bridge.request_context(self.operator.name, self.operator.role, account, action)

    def _open_action_dialog(self, context: ActionContext, action: str) -> None:
        if self.operator is None or context.operator != self.operator.name:
            return
        if self.action_dialog is not None:
            self.action_dialog.deleteLater()

        def submit(raw: dict[str, Any]) -> None:
            self.submit(raw, lambda o: self._dialog_outcome(dialog, o))

        dialog = ActionDialog(context, submit, action=action, parent=self.window)
        self.action_dialog = dialog
        dialog.open()

    def _dialog_outcome(self, dialog: ActionDialog, outcome: Outcome) -> None:
        """A command the engine thread refused goes back to its dialog, fields as typed."""
        if outcome.ok:
            return
        dialog.pages.setCurrentWidget(dialog.edit_page)
        dialog.error_label.setText(outcome.text)
        dialog.error_label.show()
        dialog.open()

    # ----- the published state ------------------------------------------------------------

    def on_operations(self, state: OperationsState) -> None:
        if self.operator is None:
            return
        previous, self.state = self.state, state
        if previous is None or previous.tick != state.tick:
            self.previews.clear()
        if self.approvals is not None:
            self.approvals.set_requests(state.requests)
        if self.settlement is not None and state.settlement is not None:
            self.settlement.set_state(state.settlement)
        if self.alerts is not None:
            if previous is None or previous.thresholds != state.thresholds:
                self.alerts.load_thresholds()
            if not self.docks["Alerts"].visibleRegion().isEmpty():
                self.alerts.refresh()
        self.refresh_audit()
        pending = state.pending_clawbacks
        if pending and pending != self.raised_for and not state.playing:
            self.raised_for = pending
            self.show_dock("Settlement review")

    def refresh_audit(self, *, force: bool = False) -> None:
        """Reload the audit page when the log grew (and someone can see it)."""
        if self.audit is None or self.state is None:
            return
        head = self.state.audit_head
        seen = force or not self.docks["Audit log"].visibleRegion().isEmpty()
        if head != self._audit_head and seen:
            self._audit_head = head
            self.audit.refresh()

    def _preview_arrived(self) -> None:
        if self.settlement is not None:
            self.settlement.update_preview()

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        if self.settlement is not None:
            self.settlement.plot.apply_theme(theme)

    def close(self) -> None:
        """The window closes: answers still on their way are dropped."""
        self.generation += 1
