"""Every table of the operations docks is a DataTable over an exportable model: it copies its
selection and exports CSV like the accounts and liquidations tables, against a real session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.widgets.alerts_view import AlertsView
from console.widgets.approvals import ApprovalsView
from console.widgets.audit_view import AuditView
from console.widgets.settlement_view import SettlementView
from console.widgets.table import DataTable
from console.worker.operations import DeskAlerts
from console.worker.readers import pending_requests, settlement_state
from core.desk.operators import ensure_demo_operators, get_operator
from core.session.session import Session
from tests.console.conftest import assert_copies_and_exports, two_traders_doc
from tests.console.test_operator_ui import asker, db_of, login, step, submitter

FAMILY = "DEMO-USD"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """Two ticks of the two-traders run: A's gap liquidation leaves 8 BTC uncovered, the fund
    alert fires, and alice asks to inject 10 BTC (a pending request)."""
    run = Session.start(two_traders_doc(clawback_approval="required"), tmp_path / "run.sqlite")
    assert run.store is not None
    ensure_demo_operators(run.store.db, at=run.engine.now)
    yield run
    run.close()


def prepared(qtbot: Any, session: Session) -> None:
    alice = login(qtbot, session, "alice")
    raw = {
        "operator": "alice",
        "action": "inject",
        "currency": "BTC",
        "amount": "10",
        "reason": "top up before settlement",
        "id": "inj-1",
    }
    submitter(session, alice)(raw)
    step(session, 2)


def test_each_operations_table_copies_its_selection_and_exports_csv(
    qtbot: Any, session: Session, tmp_path: Path
) -> None:
    prepared(qtbot, session)
    db = db_of(session)
    alice = get_operator(db, "alice")
    assert alice is not None
    thresholds = session.engine.surveillance
    alerts_view = AlertsView(
        DeskAlerts(asker(session), alice, lambda *_: {}, lambda: thresholds.thresholds)
    )
    alerts_view.state_combo.setCurrentIndex(alerts_view.state_combo.findData(None))
    approvals = ApprovalsView("carol", "supervisor", lambda raw: None)
    approvals.set_requests(pending_requests(session.engine))
    settlement = SettlementView(
        "carol", "supervisor", lambda raw: None, session.engine.settlements.preview
    )
    settlement.set_state(settlement_state(session.engine, FAMILY))
    audit_view = AuditView(asker(session))
    tables = {
        "alerts-table": alerts_view.table,
        "approvals-table": approvals.table,
        "settlement-indicators": settlement.indicators,
        "clawback-allocations": settlement.table,
        "audit-table": audit_view.table,
    }
    for view in (alerts_view, approvals, settlement, audit_view):
        qtbot.addWidget(view)
    for name, table in tables.items():
        assert isinstance(table, DataTable) and table.export_name == name
        assert_copies_and_exports(qtbot, table, tmp_path)
    # What is copied is the record the view acts on: the selected request, the selected alert.
    assert approvals.selected() is not None and approvals.selected().id == "inj-1"
    assert approvals.model.cell_text(0, 0) == "inj-1"
    alerts_view.select(alerts_view.shown[-1].id)
    row = len(alerts_view.shown) - 1
    assert alerts_view.table.copy_selection().splitlines()[1].split("\t")[0] == str(
        alerts_view.shown[row].id
    )
    assert alerts_view.selected() == alerts_view.shown[row]
    assert audit_view.model.records == tuple(audit_view.entries)
