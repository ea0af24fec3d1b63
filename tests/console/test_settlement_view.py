"""The settlement view walked from a proposed price to an applied clawback against a real session:
propose -> a supervisor approves -> settlement at that price -> clawback request -> approve ->
the allocations applied equal the preview the view showed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from console.widgets.approvals import ApprovalsView
from console.widgets.settlement_view import AllocationModel, SettlementView
from console.worker.readers import pending_requests, settlement_state
from core.desk import audit
from core.engine.settlement import _preview
from core.model.events import ClawbackComputed, SettlementDone
from core.session.session import Session
from tests.console.conftest import two_traders_doc
from tests.core.conftest import log_in

FAMILY = "DEMO-USD"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    run = Session.start(two_traders_doc(clawback_approval="required"), tmp_path / "run.sqlite")
    assert run.store is not None
    log_in(run.store.db, "alice", "carol")
    yield run
    run.close()


def submitter(session: Session, name: str, role: str) -> Any:
    return lambda raw: session.submit(raw, role=role) and None


def view_for(qtbot: Any, session: Session, name: str, role: str) -> SettlementView:
    view = SettlementView(
        name,
        role,
        submitter(session, name, role),
        session.engine.settlements.preview,
        new_id=lambda: "adj-1",
    )
    qtbot.addWidget(view)
    view.set_state(settlement_state(session.engine, FAMILY))
    return view


def test_settlement_view_from_proposal_to_applied_clawback(qtbot: Any, session: Session) -> None:
    engine = session.engine
    session.step()
    session.step()  # the gap: A's loss stops at its margin, 8 BTC are left uncovered
    alice = view_for(qtbot, session, "alice", "operator")
    review = alice.state.review  # type: ignore[union-attr]
    assert review.pending_deficit == {"BTC": 800_000_000}
    assert "pending deficit 8.00000000 BTC" in alice.summary_label.text()
    assert alice.index_curve.getData()[1] is not None and len(alice.index_curve.getData()[1]) > 0
    assert alice.indicator_model.records == review.assessment.indicators
    assert not alice.approve_button.isEnabled()  # nothing pending, and alice is no supervisor

    # The live preview follows what is typed; a bad price is named.
    at_computed = alice.shown_preview
    assert at_computed is not None and at_computed.price == review.computed_price
    alice.price_edit.setText("abc")
    assert alice.shown_preview is None and alice.preview_label.text().startswith("price:")
    alice.price_edit.setText("0.2")
    typed = alice.shown_preview
    assert typed is not None and typed.price == Decimal("0.2")
    assert alice.model.rowCount() == typed.accounts.size > 0
    assert "ratio" in alice.preview_label.text()

    # Propose 0.2 for the next settlement; a supervisor approves it.
    assert not alice.propose()  # a reason is required
    assert alice.status_label.text() == "reason: a reason is required"
    alice.reason_edit.setText("the window's index was pushed down")
    assert alice.propose()
    session.step()
    carol = ApprovalsView("carol", "supervisor", submitter(session, "carol", "supervisor"))
    qtbot.addWidget(carol)
    carol.set_requests(pending_requests(engine))
    assert [r.id for r in carol.requests] == ["adj-1"]
    assert "proposed 0.2" in carol.preview.toPlainText()
    carol.comment_edit.setText("checked against spot venues")
    assert carol.decide(True)
    session.step()
    assert engine.controls.adjustments[FAMILY][1] == Decimal("0.2")

    # Run to the settlement: it uses the approved price and freezes the clawback into a request.
    events: list[Any] = []
    while not engine.settlements.pending and not session.finished:
        events += session.step()
    (done,) = [e for e in events if isinstance(e, SettlementDone)]
    # adjusted_from: the hour mean of the index at the settlement (0.10 after the gap).
    assert done.price == Decimal("0.2") and done.adjusted_from == Decimal("0.1")

    supervisor = view_for(qtbot, session, "carol", "supervisor")
    shown = supervisor.shown_preview
    assert shown is not None and shown.digest == typed.digest  # exactly what alice previewed
    assert "clawback request" in supervisor.summary_label.text()
    assert supervisor.approve_button.isEnabled()
    supervisor.reason_edit.setText("allocations checked")
    assert supervisor.approve_clawback()
    balances = engine.book.balances[:, 0].copy()
    applied = [e for e in session.step() if isinstance(e, ClawbackComputed)]
    assert [e.status for e in applied] == ["applied"]
    ids = engine.book.account_ids
    assert applied[0].allocations == tuple(
        (ids[a], p, m)
        for a, p, m in zip(
            shown.accounts.tolist(), shown.profits.tolist(), shown.amounts.tolist(), strict=True
        )
    )
    paid = balances - engine.book.balances[:, 0]
    expected = np.zeros_like(paid)
    expected[shown.accounts] = shown.amounts
    assert np.array_equal(paid, expected) and int(paid.sum()) == shown.deficit
    assert session.result()["settlements"][0]["adjusted_from"] == "0.1"
    assert session.store is not None
    kinds = [(r.kind, r.operator) for r in audit.rows(session.store.db, newest_first=False)]
    assert ("request", "alice") in kinds and kinds.count(("approval", "carol")) == 2


def test_allocation_table_sorts_with_numpy(qtbot: Any) -> None:
    profits = np.array([500, 100, 900, 300], dtype=np.int64)
    preview = _preview(FAMILY, "BTC", Decimal("0.2"), 900, 0, np.array([0, 1, 2, 3]), profits)
    model = AllocationModel()
    model.set_preview(preview, ("d", "a", "c", "b"), 8)
    assert model.rowCount() == 4
    # Largest clawback first by default; the parts sum exactly to the deficit.
    assert [model.cell_text(r, 0) for r in range(4)] == ["c", "d", "b", "a"]
    assert int(preview.amounts.sum()) == 900
    model.sort(0, Qt.SortOrder.AscendingOrder)
    assert [model.cell_text(r, 0) for r in range(4)] == ["a", "b", "c", "d"]
    model.sort(1, Qt.SortOrder.DescendingOrder)
    assert [model.cell_text(r, 1) for r in range(4)] == [
        "0.00000900",
        "0.00000500",
        "0.00000300",
        "0.00000100",
    ]
    model.set_preview(None, (), 8)
    assert model.rowCount() == 0


def test_reject_clawback_from_the_settlement_review(qtbot: Any, session: Session) -> None:
    engine = session.engine
    while not engine.settlements.pending and not session.finished:
        session.step()
    (pending,) = engine.settlements.pending.values()
    alice = view_for(qtbot, session, "alice", "operator")
    assert not alice.reject_button.isEnabled()  # an operator does not decide a clawback
    carol = view_for(qtbot, session, "carol", "supervisor")
    assert carol.reject_button.isEnabled() and carol.approve_button.isEnabled()
    assert not carol.reject_clawback()  # a reason is required
    assert carol.status_label.text() == "reason: a reason is required"
    carol.reason_edit.setText("the company covers this deficit instead")
    balances = engine.book.balances.copy()
    assert carol.reject_clawback()
    assert f"clawback {pending.request} rejected" in carol.status_label.text()
    rejected = [e for e in session.step() if isinstance(e, ClawbackComputed)]
    assert [(e.status, e.allocations) for e in rejected] == [("rejected", ())]
    assert np.array_equal(engine.book.balances, balances)
    assert engine.settlements.pending == {}
    assert engine.uncovered[(FAMILY, "BTC")] == pending.preview.deficit
    carol.set_state(settlement_state(engine, FAMILY))
    assert not carol.reject_button.isEnabled() and not carol.approve_button.isEnabled()
    assert session.store is not None
    (row,) = session.store.db.execute(
        "SELECT status, decided_by, comment FROM requests WHERE id = ?", (pending.request,)
    ).fetchall()
    assert row == ("rejected", "carol", "the company covers this deficit instead")
    (rejection,) = audit.rows(session.store.db, kind="rejection")
    assert rejection.operator == "carol" and rejection.subject == f"family {FAMILY} BTC"
