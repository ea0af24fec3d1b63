"""The operator side of the console driven end to end against a real session and store: login,
the action dialog, approvals (and the refused self-approval), the alerts and audit views."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from console.dialogs.action_dialog import ActionDialog, build_action
from console.dialogs.login import LoginDialog
from console.widgets.alerts_view import AlertsView
from console.widgets.approvals import ApprovalsView
from console.widgets.audit_view import AuditView
from console.worker.operations import DeskAlerts
from console.worker.readers import action_context, pending_requests
from core.desk import alerts, audit
from core.desk.alerts import AlertDesk
from core.desk.operators import Operator, ensure_demo_operators, get_operator
from core.desk.queries import DeskQueries
from core.model.errors import InputError
from core.model.events import ActionRefused, AlertRaised
from core.model.operations import Refusal
from core.session.session import Session
from tests.console.conftest import two_traders_doc


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    run = Session.start(two_traders_doc(clawback_approval="required"), tmp_path / "run.sqlite")
    assert run.store is not None
    ensure_demo_operators(run.store.db, at=run.engine.now)
    yield run
    run.close()


def db_of(session: Session) -> Any:
    assert session.store is not None
    return session.store.db


def asker(session: Session, clock: Callable[[], Any] | None = None) -> Any:
    """What the console wires to its views' store queries, answered at once on this thread (in
    the console the engine thread answers them)."""
    queries = DeskQueries(db_of(session), clock or (lambda: session.engine.now))

    def answer(query: Any, reply: Callable[[Any], None]) -> None:
        session.flush()  # as the engine thread does: the writer's tick commits first
        reply(queries.answer(query))

    return answer


def login_dialog(session: Session) -> LoginDialog:
    info = DeskQueries(db_of(session)).login_info()
    return LoginDialog(asker(session), info)


def step(session: Session, ticks: int = 1) -> list[Any]:
    """Step, recording the tick's alerts in the store as the console does."""
    seen: list[Any] = []
    for _ in range(ticks):
        events = session.step()
        session.flush()
        alerts.record(db_of(session), events, tick=session.tick)
        seen += events
    return seen


def submitter(session: Session, operator: Operator) -> Callable[[dict[str, Any]], None]:
    """What the console wires to `submit`: the command journaled (and audited by the session)
    for the logged-in operator with their role."""
    return lambda raw: session.submit(raw, role=operator.role) and None


def login(qtbot: Any, session: Session, name: str) -> Operator:
    # The login writes to the store's connection: the writer thread's tick commits first, as the
    # console's engine thread does before it answers a login.
    session.flush()
    dialog = login_dialog(session)
    qtbot.addWidget(dialog)
    dialog.name_edit.setText(name)
    dialog.password_edit.setText(f"{name}-demo")
    assert dialog.try_login()
    assert dialog.operator is not None
    return dialog.operator


def commands(session: Session) -> list[str]:
    rows = db_of(session).conn.execute("SELECT payload FROM journal WHERE kind = 'command'")
    return [row[0] for row in rows]


def test_login_refuses_inline_then_logs_in_and_both_are_audited(
    qtbot: Any, session: Session
) -> None:
    dialog = login_dialog(session)
    qtbot.addWidget(dialog)
    assert "carol" in dialog.hint_label.text() and not dialog.hint_label.isHidden()
    dialog.name_edit.setText("alice")
    dialog.password_edit.setText("not-her-password")
    assert dialog.try_login()  # sent; the answer shows the refusal
    assert dialog.error_label.text() == "unknown operator or wrong password"
    assert dialog.result() == 0 and dialog.operator is None
    assert dialog.password_edit.text() == ""
    dialog.password_edit.setText("alice-demo")
    assert dialog.try_login()
    assert dialog.operator is not None and dialog.operator.role == "operator"
    rows = audit.rows(db_of(session), kind="login", newest_first=False)
    assert [(r.operator, r.after_value()["result"]) for r in rows] == [
        ("alice", "refused"),
        ("alice", "ok"),
    ]


def test_action_dialog_freezes_an_account_end_to_end(qtbot: Any, session: Session) -> None:
    alice = login(qtbot, session, "alice")
    context = action_context(session.engine, alice.name, alice.role, "A")
    dialog = ActionDialog(context, submitter(session, alice), action="freeze")
    qtbot.addWidget(dialog)
    assert not dialog.review()  # no reason yet
    assert dialog.error_label.text() == "reason: a reason is required"
    assert dialog.pages.currentWidget() is dialog.edit_page
    dialog.reason_edit.setText("manipulating the settlement window")
    assert dialog.review()
    assert dialog.pages.currentWidget() is dialog.confirm_page
    assert "Freeze trading - account A" in dialog.summary_label.text()
    assert commands(session) == []  # nothing is sent before the confirmation
    assert dialog.confirm() and dialog.result() == 1
    assert len(commands(session)) == 1 and '"action": "freeze"' in commands(session)[0]
    assert session.engine.controls.flag_names("A") == ()
    step(session)
    assert session.engine.controls.flag_names("A") == ("frozen", "withdrawals_frozen")
    action_row = audit.rows(db_of(session), kind="action")[0]
    assert (action_row.operator, action_row.subject, action_row.reason) == (
        "alice",
        "account A",
        "manipulating the settlement window",
    )
    assert action_row.before_value() == {"account": "A", "flags": []}
    assert action_row.after_value()["action"] == "freeze"
    outcome = audit.rows(db_of(session), kind="outcome")[0]
    assert outcome.after_value()["applied"] == "flags none -> frozen,withdrawals_frozen"
    assert audit.verify(db_of(session)).ok

    # The account's state now makes a second freeze meaningless: refused before confirming.
    again = ActionDialog(
        action_context(session.engine, alice.name, alice.role, "A"),
        submitter(session, alice),
        action="freeze",
    )
    qtbot.addWidget(again)
    again.reason_edit.setText("again")
    assert not again.review()
    assert again.error_label.text().startswith("refused (no_effect): account A is already")


def test_action_fields_are_checked_with_the_field_named(qtbot: Any, session: Session) -> None:
    context = action_context(session.engine, "alice", "operator", "B")
    cases = [
        ("warn", {"reason": "r", "message": " "}, "message"),
        (
            "force_reduce",
            {"reason": "r", "symbol": "DEMO-USD-180731", "contracts": "ten"},
            "contracts",
        ),
        (
            "force_reduce",
            {"reason": "r", "symbol": "DEMO-USD-180731", "contracts": "11"},
            "contracts",
        ),
        ("force_reduce", {"reason": "r", "symbol": "OTHER", "contracts": "1"}, "symbol"),
        ("inject", {"reason": "r", "currency": "BTC", "amount": "-1"}, "amount"),
        ("inject", {"reason": "r", "currency": "BTC", "amount": "0.000000001"}, "amount"),
        ("inject", {"reason": "r", "currency": "XYZ", "amount": "1"}, "currency"),
    ]
    for kind, values, field in cases:
        with pytest.raises(InputError) as error:
            build_action(context, kind, values)
        assert error.value.field == field, (kind, values)
    raw = build_action(context, "inject", {"reason": "top up", "currency": "BTC", "amount": "2500"})
    assert raw["amount"] == "2500" and raw["id"].startswith("inject-")
    with pytest.raises(Refusal) as refused:
        build_action(context, "unfreeze", {"reason": "r"})
    assert refused.value.code == "no_effect"
    viewer = ActionDialog(action_context(session.engine, "vera", "viewer", "B"), lambda raw: None)
    qtbot.addWidget(viewer)
    assert not viewer.review_button.isEnabled()
    assert "viewer role" in viewer.error_label.text()


def test_force_reduce_request_is_approved_by_another_supervisor(
    qtbot: Any, session: Session
) -> None:
    alice = login(qtbot, session, "alice")
    context = replace(
        action_context(session.engine, alice.name, alice.role, "B"), new_id=lambda kind: "cut-1"
    )
    dialog = ActionDialog(context, submitter(session, alice), action="force_reduce")
    qtbot.addWidget(dialog)
    dialog.contracts_edit.setText("4")
    dialog.reason_edit.setText("reduce the short before settlement")
    preview = dialog.update_preview()
    assert preview is not None and (preview.requested, preview.filled) == (4, 4)
    assert "Expected fill now: 4 of 4 DEMO-USD-180731" in dialog.preview_label.text()
    assert dialog.review() and "request cut-1" in dialog.summary_label.text()
    assert dialog.confirm()
    step(session)
    assert session.engine.controls.requests["cut-1"].status == "pending"

    # The maker sees the request but cannot approve it; a supervisor can.
    own = ApprovalsView(alice.name, alice.role, submitter(session, alice))
    qtbot.addWidget(own)
    own.set_requests(pending_requests(session.engine))
    assert own.selected() is not None and own.selected().id == "cut-1"
    assert not own.approve_button.isEnabled()
    carol = login(qtbot, session, "carol")
    view = ApprovalsView(carol.name, carol.role, submitter(session, carol))
    qtbot.addWidget(view)
    view.set_requests(pending_requests(session.engine))
    assert view.approve_button.isEnabled() and view.reject_button.isEnabled()
    assert "Expected fill now: 4 of 4" in view.preview.toPlainText()
    assert not view.decide(True)  # a comment is required
    assert view.status_label.text() == "reason: a comment is required"
    view.comment_edit.setText("agreed: the short is too large")
    assert view.decide(True)
    row = _row(session, "B")
    before = int(session.engine.book.contracts[row])
    step(session, 2)
    assert session.engine.controls.requests["cut-1"].status == "approved"
    assert int(session.engine.book.contracts[row]) == before - 4
    kinds = [(r.kind, r.operator) for r in audit.rows(db_of(session), newest_first=False)]
    assert ("request", "alice") in kinds and ("approval", "carol") in kinds
    approval = audit.rows(db_of(session), kind="approval")[0]
    assert (
        approval.subject == "request cut-1" and approval.reason == "agreed: the short is too large"
    )
    view.set_requests(pending_requests(session.engine))
    assert view.requests == () and not view.approve_button.isEnabled()


def test_self_approval_is_disabled_and_refused_by_the_engine(qtbot: Any, session: Session) -> None:
    carol = login(qtbot, session, "carol")
    submit = submitter(session, carol)
    context = replace(
        action_context(session.engine, carol.name, carol.role, None), new_id=lambda kind: "inj-1"
    )
    submit(build_action(context, "inject", {"currency": "BTC", "amount": "10", "reason": "top up"}))
    step(session)
    view = ApprovalsView(carol.name, carol.role, submit)
    qtbot.addWidget(view)
    view.set_requests(pending_requests(session.engine))
    assert view.selected() is not None and view.selected().id == "inj-1"
    assert not view.approve_button.isEnabled() and not view.reject_button.isEnabled()
    assert "your own request" in view.status_label.text()
    # The button is only the first guard: the engine refuses a self-approval anyway.
    view.comment_edit.setText("looks fine to me")
    assert view.decide(True)
    refused = [e for e in step(session) if isinstance(e, ActionRefused)]
    assert [(e.operator, e.action) for e in refused] == [("carol", "approve")]
    assert "self-approval" in refused[0].reason
    assert session.engine.controls.requests["inj-1"].status == "pending"
    assert "self-approval" in audit.rows(db_of(session), kind="outcome")[0].after_value()["refused"]


def test_alerts_view_works_the_queue_and_edits_thresholds(qtbot: Any, session: Session) -> None:
    db = db_of(session)
    now = session.engine.now
    alerts.record(
        db,
        [
            AlertRaised(
                now, "concentration", "A", "DEMO-USD-180731", "critical", "A holds 50%", 0.5, 0.1
            ),
            AlertRaised(now, "fund_coverage", None, "BTC", "warning", "fund short", 3.0, 1.0),
        ],
        tick=0,
    )
    clock = lambda: session.engine.now + timedelta(minutes=1)  # noqa: E731
    surveillance = session.engine.surveillance

    def desk(name: str) -> DeskAlerts:
        operator = get_operator(db, name)
        assert operator is not None
        # What the engine thread does with a threshold change (console.worker.engine_worker.set_thresholds).
        send = lambda changes, reason: AlertDesk(  # noqa: E731
            db, name, clock, surveillance=surveillance
        ).set_thresholds(changes, reason)
        return DeskAlerts(asker(session, clock), operator, send, lambda: surveillance.thresholds)

    view = AlertsView(desk("alice"))
    qtbot.addWidget(view)
    assert [a.rule for a in view.shown] == ["fund_coverage", "concentration"]
    view.select(view.shown[1].id)
    assert view.move_buttons["acknowledged"].isEnabled()
    assert not view.move_buttons["open"].isEnabled()
    assert view.move("acknowledged")
    concentration = alerts.list_alerts(db, rule="concentration")[0]
    assert (concentration.state, concentration.owner) == ("acknowledged", "alice")
    assert [a.rule for a in view.shown] == ["fund_coverage"]  # the filter shows open ones
    view.state_combo.setCurrentIndex(view.state_combo.findData("acknowledged"))
    view.select(concentration.id)
    assert view.move("dismissed")  # sent; closing needs a note
    assert view.status_label.text() == "note: say why the alert is dismissed"
    view.note_edit.setText("a hedge against the spot book")
    assert view.move("dismissed")
    assert alerts.get(db, concentration.id).state == "dismissed"
    assert audit.count(db, kind="alert") == 2

    # Thresholds: an operator is refused; a supervisor's change reaches the engine, audited.
    view.threshold_edits["concentration"].setText("0.25")
    view.thresholds_reason.setText("fewer false alarms")
    assert not view.apply_thresholds()
    assert view.thresholds_status.text().startswith("refused (role)")
    boss = AlertsView(desk("carol"))
    qtbot.addWidget(boss)
    boss.threshold_edits["shock"].setText("5")
    boss.thresholds_reason.setText("typo")
    assert not boss.apply_thresholds()
    assert boss.thresholds_status.text().startswith("thresholds.shock:")
    boss.threshold_edits["shock"].setText("0.2")
    assert boss.apply_thresholds()
    assert session.engine.surveillance.thresholds.shock == 0.2
    (row,) = audit.rows(db, kind="settings")
    assert (row.operator, row.before_value(), row.after_value()) == (
        "carol",
        {"shock": 0.1},
        {"shock": 0.2},
    )


def test_audit_view_filters_and_verifies_the_chain(qtbot: Any, session: Session) -> None:
    db = db_of(session)
    login(qtbot, session, "alice")
    login(qtbot, session, "carol")
    view = AuditView(asker(session))
    qtbot.addWidget(view)
    assert view.total == audit.count(db) and view.total >= 8  # the demo set-up and two logins
    view.operator_edit.setText("carol")
    view.apply_filters()
    assert {e.operator for e in view.entries} == {"carol"} and len(view.entries) == 1
    view.operator_edit.clear()
    view.kind_combo.setCurrentText("login")
    view.apply_filters()
    assert [e.operator for e in view.entries] == ["carol", "alice"]
    view.since_edit.setText("yesterday")
    view.apply_filters()
    assert view.status_label.text().startswith("since:")
    assert len(view.entries) == 2  # a bad filter leaves the rows shown
    view.verify()
    assert view.verify_label.text().startswith("audit log sound")
    # Someone with the file drops the guard and edits a row: the view names it.
    db.conn.execute("DROP TRIGGER audit_log_no_update")
    db.conn.execute("UPDATE audit_log SET reason = 'edited' WHERE seq = 3")
    view.verify()
    assert view.verify_label.text().startswith("audit log broken at row 3")


def _row(session: Session, account: str) -> int:
    book = session.engine.book
    rows = np.flatnonzero((book.account == book.account_index[account]) & (book.contracts > 0))
    return int(rows[0])


def test_review_page_shows_every_line_at_the_dialog_s_own_size(
    qtbot: Any, session: Session
) -> None:
    alice = login(qtbot, session, "alice")
    context = action_context(session.engine, alice.name, alice.role, "B")
    # Opened on its first action (as the menu does), then switched: sized for the shorter form.
    dialog = ActionDialog(context, submitter(session, alice))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.set_action("force_reduce")
    dialog.contracts_edit.setText("4")
    dialog.reason_edit.setText("reduce the short before settlement")
    dialog.update_preview()
    label = dialog.preview_label
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))
    assert dialog.review()
    label = dialog.summary_label
    assert label.text().count("\n") >= 4
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))
    assert label.geometry().bottom() < dialog.confirm_button.geometry().top()
