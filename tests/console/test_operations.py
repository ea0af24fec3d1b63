"""The operations docks through the main window with a real engine thread on two-traders: login,
an account action from the Accounts context menu, maker-checker approval by a second supervisor
(and a self-approval refused), a journaled threshold change that replays to the same state, and
the pending clawback approved from the Settlement review dock after the end of the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import two_traders_doc, wait_snapshot
from PySide6.QtCore import Qt

from console.operations import OperationsState, Outcome
from core import audit
from core.session import Session
from core.store import Store

SYMBOL = "DEMO-USD-180731"


@pytest.fixture
def window(qtbot: Any, settings: Any, tmp_path: Path) -> Iterator[Any]:
    from console.main_window import MainWindow

    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    w.open_source(two_traders_doc(clawback_approval="required"), tmp_path / "run.sqlite")
    wait_snapshot(qtbot, w.bridge)
    yield w
    w.close()
    assert not w.bridge.running


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


def journal_commands(window: Any) -> list[dict[str, Any]]:
    rows = window.desk.db.conn.execute("SELECT payload FROM journal WHERE kind = 'command'")
    return [json.loads(row[0]) for row in rows]


def test_login_dialog_and_a_viewer_who_can_only_look(qtbot: Any, window: Any) -> None:
    desk = window.desk
    assert window.status_operator.text() == "not logged in"
    assert not desk.act_action.isEnabled() and not desk.inject_action.isEnabled()
    dialog = desk.show_login()
    assert dialog is not None and dialog.isVisible()
    assert "carol" in dialog.hint_label.text()  # the demo identities were added to the store
    dialog.name_edit.setText("vera")
    dialog.password_edit.setText("wrong-password")
    assert not dialog.try_login()
    assert dialog.error_label.text() == "unknown operator or wrong password"
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
    rows = audit.rows(desk.db, kind="login", newest_first=False)
    assert [(r.operator, r.after_value()["result"]) for r in rows] == [
        ("vera", "refused"),
        ("vera", "ok"),
    ]


def test_an_action_from_the_accounts_context_menu_lands(qtbot: Any, window: Any) -> None:
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
    [command] = journal_commands(window)
    assert (command["action"], command["account"], command["operator"]) == ("freeze", "B", "alice")
    action_row = audit.rows(window.desk.db, kind="action")[0]
    assert (action_row.operator, action_row.subject) == ("alice", "account B")
    window.bridge.step(1)
    applied = wait_outcome(qtbot, window, lambda o: o.action == "freeze")
    assert applied.ok and applied.operator == "alice"
    qtbot.waitUntil(lambda: window.snapshot.tick == 2)
    snap = window.snapshot
    b = snap.table.account_ids.index("B")
    assert snap.table.columns["flags"][snap.table.columns["account"] == b].all()
    assert window.status_outcome.text().startswith("freeze applied")


def test_second_supervisor_approves_and_self_approval_is_refused(qtbot: Any, window: Any) -> None:
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
    status = desk.db.conn.execute("SELECT status, decided_by FROM requests WHERE id = 'fr-1'")
    assert status.fetchone() == ("approved", "dave")
    approval = audit.rows(desk.db, kind="approval")[0]
    assert (approval.operator, approval.subject) == ("dave", "request fr-1")


def test_threshold_change_is_journaled_and_replays(qtbot: Any, window: Any, tmp_path: Path) -> None:
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
    [command] = journal_commands(window)
    assert command["x-thresholds"] == {"concentration": 0.2}
    setting = audit.rows(desk.db, kind="settings")[0]
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


def test_settlement_dock_approves_the_clawback_after_the_end(qtbot: Any, window: Any) -> None:
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
    row = desk.db.conn.execute("SELECT status, decided_by FROM requests").fetchone()
    assert row == ("approved", "carol")
