"""The operations docks through the main window with a real engine thread on two-traders: login,
an account action from the Accounts context menu, maker-checker approval by a second supervisor
(and a self-approval refused), a journaled threshold change that replays to the same state, and
the pending clawback approved from the Settlement review dock after the end of the run; and the
docks reading the store through the engine thread, never on the UI thread, showing what it holds."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from conftest import two_traders_doc, wait_snapshot
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction

from console.widgets.alerts_view import NOBODY
from console.worker.operations import OperationsState, Outcome
from core.desk import alerts, audit
from core.desk.operators import list_operators
from core.session.session import Session
from core.store.schema import connect
from core.store.store import Store

SYMBOL = "DEMO-USD-180731"
FORCE_REDUCE = {"operator": "carol", "action": "force_reduce", "account": "B", "symbol": SYMBOL,
                "contracts": 4, "reason": "cut the exposure before settlement", "id": "fr-1"}  # fmt: skip


class UiThreadSql:
    """Every SQL statement run on the UI (main) thread through a connection opened while it is
    installed: the engine's own and any other the console opens."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.watching = True

    def trace(self, sql: str) -> None:
        if self.watching and threading.current_thread() is threading.main_thread():
            self.statements.append(sql)


@pytest.fixture
def ui_sql(monkeypatch: pytest.MonkeyPatch) -> UiThreadSql:
    """Ask for it before `window`, so that it sees every connection the run opens."""
    recorder = UiThreadSql()
    opened = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = opened(*args, **kwargs)
        conn.set_trace_callback(recorder.trace)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    return recorder


@pytest.fixture
def window(qtbot: Any, settings: Any, tmp_path: Path) -> Iterator[Any]:
    from console.window.main_window import MainWindow

    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    w.open_source(two_traders_doc(clawback_approval="required"), tmp_path / "run.sqlite")
    wait_snapshot(qtbot, w.bridge)
    yield w
    w.close()
    assert not w.bridge.running


@pytest.fixture
def db(window: Any, tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    """The test's own connection to the run's store, to check what the engine thread wrote."""
    store = connect(tmp_path / "run.sqlite")
    yield store
    store.conn.close()


def log_in(qtbot: Any, window: Any, name: str) -> OperationsState:
    """Log in and wait for the first operations state published for the operator."""
    with qtbot.waitSignal(window.bridge.operations_ready, timeout=10_000) as blocker:
        window.desk.log_in(name, f"{name}-demo")
    return blocker.args[0]


def wait_outcome(qtbot: Any, window: Any, test: Any, timeout: int = 10_000) -> Outcome:
    seen: list[Outcome] = []

    def check(outcome: Outcome) -> bool:
        seen.append(outcome)
        return bool(test(outcome))

    with qtbot.waitSignal(window.bridge.outcome, timeout=timeout, check_params_cb=check):
        pass
    return seen[-1]


def wait_state(qtbot: Any, window: Any, test: Any, timeout: int = 10_000) -> OperationsState:
    """The operations state shown (the latest published) once it passes `test`."""
    qtbot.waitUntil(
        lambda: window.desk.state is not None and bool(test(window.desk.state)), timeout=timeout
    )
    return window.desk.state


def journal_commands(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    rows = db.conn.execute("SELECT payload FROM journal WHERE kind = 'command'")
    return [json.loads(row[0]) for row in rows]


def test_login_dialog_and_a_viewer_who_can_only_look(
    qtbot: Any, window: Any, db: sqlite_utils.Database
) -> None:
    desk = window.desk
    assert window.status_operator.text() == "not logged in"
    assert not desk.act_action.isEnabled() and not desk.inject_action.isEnabled()
    desk.show_login()
    qtbot.waitUntil(lambda: desk.login_dialog is not None and desk.login_dialog.isVisible())
    dialog = desk.login_dialog
    assert "carol" in dialog.hint_label.text()  # the demo identities were added to the store
    dialog.name_edit.setText("vera")
    dialog.password_edit.setText("wrong-password")
    assert dialog.try_login()
    qtbot.waitUntil(lambda: dialog.error_label.text() == "unknown operator or wrong password")
    dialog.password_edit.setText("vera-demo")
    with qtbot.waitSignal(window.bridge.operations_ready, timeout=10_000):
        assert dialog.try_login()
    assert window.status_operator.text() == "vera (viewer) — view only"
    assert not desk.act_action.isEnabled() and not desk.inject_action.isEnabled()
    table = window.accounts.table
    menu = desk.table_menu(table, table.visualRect(window.accounts.model.index(0, 0)).center(),
                           window._account_at)  # fmt: skip
    act = next(a for a in menu.actions() if a.objectName() == "act-on-account")
    assert act.text() == "Act on account A…" and not act.isEnabled()
    assert desk.alerts is not None and desk.alerts.read_only
    assert not desk.alerts.thresholds_button.isEnabled()
    assert desk.settlement is not None and not desk.settlement.propose_button.isEnabled()
    rows = audit.rows(db, kind="login", newest_first=False)
    assert [(r.operator, r.after_value()["result"]) for r in rows] == [
        ("vera", "refused"),
        ("vera", "ok"),
    ]


def test_an_action_from_the_accounts_context_menu_lands(
    qtbot: Any, window: Any, db: sqlite_utils.Database
) -> None:
    log_in(qtbot, window, "alice")
    window.bridge.step(1)  # A is liquidated on the gap; B's short stays open
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 1)
    qtbot.waitUntil(lambda: window.accounts.model.rowCount() == 1)
    table = window.accounts.table
    pos = table.visualRect(window.accounts.model.index(0, 0)).center()
    menu = window.desk.table_menu(table, pos, window._account_at)
    act = next(a for a in menu.actions() if a.objectName() == "act-on-account")
    assert act.text() == "Act on account B…" and act.isEnabled()
    with qtbot.waitSignal(window.bridge.context_ready, timeout=10_000):
        act.trigger()
    dialog = window.desk.action_dialog
    qtbot.waitUntil(lambda: dialog.isVisible())
    assert dialog.context.account == "B" and dialog.context.operator == "alice"
    dialog.set_action("freeze")
    dialog.reason_edit.setText("builds the short into the settlement window")
    assert dialog.review()
    with qtbot.waitSignal(window.bridge.outcome, timeout=10_000) as sent:
        assert dialog.confirm()
    assert sent.args[0].ok and "applies at the next tick" in window.status_outcome.text()
    [command] = journal_commands(db)
    assert (command["action"], command["account"], command["operator"]) == ("freeze", "B", "alice")
    action_row = audit.rows(db, kind="action")[0]
    assert (action_row.operator, action_row.subject) == ("alice", "account B")
    window.bridge.step(1)
    applied = wait_outcome(qtbot, window, lambda o: o.action == "freeze")
    assert applied.ok and applied.operator == "alice"
    qtbot.waitUntil(lambda: window.snapshot.tick == 2)
    snap = window.snapshot
    b = snap.table.account_ids.index("B")
    assert snap.table.columns["flags"][snap.table.columns["account"] == b].all()
    assert window.status_outcome.text().startswith("freeze applied")


def test_second_supervisor_approves_and_self_approval_is_refused(
    qtbot: Any, window: Any, db: sqlite_utils.Database
) -> None:
    desk = window.desk
    log_in(qtbot, window, "carol")
    window.bridge.step(1)
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 1)
    raw = {"operator": "carol", "action": "force_reduce", "account": "B", "symbol": SYMBOL,
           "contracts": 4, "reason": "cut the exposure before settlement", "id": "fr-1"}  # fmt: skip
    desk.submit(raw)
    window.bridge.step(1)
    state = wait_state(qtbot, window, lambda s: any(r.id == "fr-1" for r in s.requests))
    view = desk.approvals
    qtbot.waitUntil(lambda: view.selected() is not None and view.selected().id == "fr-1")
    assert not view.approve_button.isEnabled()
    assert "your own request" in view.status_label.text()
    assert any("Expected fill" in line for line in state.requests[0].preview)
    # Past the disabled button, the engine refuses it too, and the operator is told.
    view.comment_edit.setText("looks right to me")
    assert view.decide(True)
    window.bridge.step(1)
    refused = wait_outcome(qtbot, window, lambda o: o.action == "approve" and not o.ok)
    assert "self-approval" in refused.text
    qtbot.waitUntil(lambda: "self-approval" in view.status_label.text())
    assert "self-approval" in window.status_outcome.text()

    log_in(qtbot, window, "dave")
    view = desk.approvals
    qtbot.waitUntil(lambda: view.selected() is not None and view.selected().id == "fr-1")
    assert view.approve_button.isEnabled()
    view.comment_edit.setText("agreed: the position is too large for the window")
    qtbot.mouseClick(view.approve_button, Qt.MouseButton.LeftButton)
    window.bridge.step(1)
    approved = wait_outcome(qtbot, window, lambda o: o.action == "approve")
    assert approved.ok and approved.operator == "dave"
    wait_state(qtbot, window, lambda s: not s.requests)
    status = db.conn.execute("SELECT status, decided_by FROM requests WHERE id = 'fr-1'")
    assert status.fetchone() == ("approved", "dave")
    approval = audit.rows(db, kind="approval")[0]
    assert (approval.operator, approval.subject) == ("dave", "request fr-1")


def test_threshold_change_is_journaled_and_replays(
    qtbot: Any, window: Any, db: sqlite_utils.Database, tmp_path: Path
) -> None:
    desk = window.desk
    log_in(qtbot, window, "carol")
    view = desk.alerts
    assert view.threshold_edits["concentration"].text() == "0.1"
    view.threshold_edits["concentration"].setText("0.2")
    assert view.apply_thresholds() is False  # no reason: named, nothing sent
    assert view.thresholds_status.text() == "reason: a reason is required"
    view.thresholds_reason.setText("two-account book: 10% is every position")
    assert view.apply_thresholds()
    done = wait_outcome(qtbot, window, lambda o: "thresholds" in o.text)
    assert done.ok and done.text == "thresholds changed: concentration = 0.2"
    wait_state(qtbot, window, lambda s: s.thresholds.concentration == 0.2)
    qtbot.waitUntil(lambda: view.threshold_edits["concentration"].text() == "0.2")
    [command] = journal_commands(db)
    assert command["x-thresholds"] == {"concentration": 0.2}
    setting = audit.rows(db, kind="settings")[0]
    assert (setting.operator, setting.before_value(), setting.after_value()) == (
        "carol",
        {"concentration": 0.1},
        {"concentration": 0.2},
    )
    window.bridge.step(5)
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 5)
    window.close()
    path = tmp_path / "run.sqlite"
    store = Store.open(path)
    recorded = store.recorded_hashes()
    store.close()
    replayed = Session.open(path)  # replays the journal, checking each tick's state hash
    try:
        assert replayed.tick == 5
        assert replayed.engine.state_hash() == recorded[5]
        assert replayed.engine.surveillance.thresholds.concentration == 0.2
    finally:
        replayed.close()


def test_settlement_dock_approves_the_clawback_after_the_end(
    qtbot: Any, window: Any, db: sqlite_utils.Database
) -> None:
    desk = window.desk
    log_in(qtbot, window, "carol")
    window.bridge.set_speed(0.0)
    window.bridge.play()
    state = wait_state(qtbot, window, lambda s: s.pending_clawbacks and not s.playing, 60_000)
    assert state.finished
    dock = desk.docks["Settlement review"]
    qtbot.waitUntil(lambda: not dock.visibleRegion().isEmpty())  # raised for the reviewer
    view = desk.settlement
    qtbot.waitUntil(lambda: view.approve_button.isEnabled())
    assert view.model.rowCount() == 1  # B, the only profitable account, pays
    view.reason_edit.setText("the settlement price is sound; share the deficit")
    qtbot.mouseClick(view.approve_button, Qt.MouseButton.LeftButton)
    applied = wait_outcome(qtbot, window, lambda o: o.action == "approve_clawback" and o.token == 0)
    assert applied.ok and applied.operator == "carol"
    qtbot.waitUntil(lambda: "applied" in (window.snapshot.notice or ""))
    snap = window.snapshot
    assert snap.tick == snap.ticks_total - 1 == 3602
    assert snap.overview[0].clawback_applied == 800_000_000
    wait_state(qtbot, window, lambda s: not s.pending_clawbacks)
    qtbot.waitUntil(lambda: "applied" in view.status_label.text())
    row = db.conn.execute("SELECT status, decided_by FROM requests").fetchone()
    assert row == ("approved", "carol")


def test_operations_views_do_not_read_sqlite_on_the_ui_thread(
    qtbot: Any, ui_sql: UiThreadSql, window: Any, tmp_path: Path
) -> None:
    desk = window.desk
    desk.show_login()
    qtbot.waitUntil(lambda: desk.login_dialog is not None and desk.login_dialog.isVisible())
    dialog = desk.login_dialog
    assert "carol" in dialog.hint_label.text()
    dialog.name_edit.setText("carol")
    dialog.password_edit.setText("wrong-password")
    dialog.try_login()
    qtbot.waitUntil(lambda: dialog.error_label.text() == "unknown operator or wrong password")
    dialog.password_edit.setText("carol-demo")
    with qtbot.waitSignal(window.bridge.operations_ready, timeout=10_000):
        assert dialog.try_login()
    window.bridge.step(2)
    desk.show_dock("Alerts")
    view = desk.alerts
    qtbot.waitUntil(lambda: any(a.rule == "concentration" for a in view.shown), timeout=10_000)
    view.select(next(a.id for a in view.shown if a.rule == "concentration"))
    assert view.move("acknowledged")
    qtbot.waitUntil(lambda: "is acknowledged" in view.status_label.text())
    desk.submit(dict(FORCE_REDUCE))
    window.bridge.step(1)
    wait_state(qtbot, window, lambda s: any(r.id == "fr-1" for r in s.requests))
    desk.log_in("dave", "dave-demo")
    qtbot.waitUntil(lambda: desk.operator is not None and desk.operator.name == "dave")
    approvals = desk.approvals
    qtbot.waitUntil(lambda: approvals.selected() is not None and approvals.selected().id == "fr-1")
    approvals.comment_edit.setText("agreed: the position is too large for the window")
    qtbot.mouseClick(approvals.approve_button, Qt.MouseButton.LeftButton)
    window.bridge.step(1)
    wait_state(qtbot, window, lambda s: not s.requests)
    desk.show_dock("Audit log")
    log = desk.audit
    qtbot.waitUntil(lambda: any(e.kind == "approval" for e in log.entries), timeout=10_000)
    log.kind_combo.setCurrentText("login")
    log.apply_filters()
    qtbot.waitUntil(lambda: {e.kind for e in log.entries} == {"login"})
    log.verify()
    qtbot.waitUntil(lambda: log.verify_label.text().startswith("audit log sound"))
    desk.show_dock("Settlement review")
    assert desk.settlement is not None and desk.state is not None and desk.state.settlement
    ui_sql.watching = False
    assert ui_sql.statements == []


def test_the_report_dialog_does_not_read_sqlite_on_the_ui_thread(
    qtbot: Any, ui_sql: UiThreadSql, window: Any, tmp_path: Path
) -> None:
    from console.dialogs.report_dialog import ReportDialog

    window.bridge.step(3)
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.tick == 3)
    export = next(
        a for a in window.findChildren(QAction) if a.text().startswith("Export incident report")
    )
    export.trigger()
    dialog = window.findChild(ReportDialog)
    assert dialog is not None and dialog.isVisible()
    span = ("2018-07-31T00:00:00Z", "2018-07-31T00:00:03Z")
    qtbot.waitUntil(lambda: (dialog.start.text(), dialog.end.text()) == span)
    dialog.format.setCurrentIndex(1)  # JSON
    out = tmp_path / "report.json"
    dialog.out.setText(str(out))
    with qtbot.waitSignal(dialog.done, timeout=60_000):
        dialog.export_now()
    assert json.loads(out.read_text())["scope"]["end"] == "2018-07-31T00:00:03Z"
    ui_sql.watching = False
    assert ui_sql.statements == []


def test_the_views_show_the_store_after_login_a_request_and_an_approval(
    qtbot: Any, window: Any, db: sqlite_utils.Database
) -> None:
    desk = window.desk
    log_in(qtbot, window, "carol")
    desk.show_dock("Audit log")
    qtbot.waitUntil(lambda: desk.audit.entries == audit.rows(db, limit=500))
    assert desk.audit.total == audit.count(db) and desk.audit.entries[0].kind == "login"
    window.bridge.step(2)
    wait_state(qtbot, window, lambda s: s.tick == 2)
    desk.show_dock("Alerts")
    view = desk.alerts
    qtbot.waitUntil(lambda: bool(view.shown) and view.shown == alerts.list_alerts(db, state="open"))
    counts = alerts.counts(db)
    assert view.counts_label.text() == "   ".join(f"{s}: {n:,}" for s, n in counts.items())
    owners = [view.owner_combo.itemText(i) for i in range(view.owner_combo.count())]
    workers = [o.name for o in list_operators(db, include_disabled=False) if o.has_role("operator")]
    assert owners == [NOBODY, *workers] and "vera" not in owners

    desk.submit(dict(FORCE_REDUCE))
    window.bridge.step(1)
    wait_state(qtbot, window, lambda s: any(r.id == "fr-1" for r in s.requests))
    pending = [r[0] for r in db.conn.execute("SELECT id FROM requests WHERE status = 'pending'")]
    qtbot.waitUntil(lambda: [r.id for r in desk.approvals.requests] == pending == ["fr-1"])
    desk.show_dock("Audit log")
    desk.refresh_audit(force=True)
    qtbot.waitUntil(lambda: desk.audit.entries == audit.rows(db, limit=500))
    top = {(e.kind, e.operator, e.subject) for e in desk.audit.entries[:3]}
    assert ("request", "carol", "account B") in top and ("outcome", "carol", "fr-1") in top

    log_in(qtbot, window, "dave")
    approvals = desk.approvals
    qtbot.waitUntil(lambda: approvals.selected() is not None and approvals.selected().id == "fr-1")
    approvals.comment_edit.setText("agreed: the position is too large for the window")
    qtbot.mouseClick(approvals.approve_button, Qt.MouseButton.LeftButton)
    window.bridge.step(1)
    wait_state(qtbot, window, lambda s: not s.requests)
    qtbot.waitUntil(lambda: desk.approvals.requests == ())
    row = db.conn.execute("SELECT status, decided_by FROM requests WHERE id = 'fr-1'").fetchone()
    assert row == ("approved", "dave")
    desk.show_dock("Audit log")
    desk.refresh_audit(force=True)
    qtbot.waitUntil(lambda: desk.audit.entries == audit.rows(db, limit=500))
    top = {(e.kind, e.operator, e.subject) for e in desk.audit.entries[:3]}
    assert ("approval", "dave", "request fr-1") in top
