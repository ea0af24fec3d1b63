"""One rule for money on screen (docs/console.md, "Money"): the same amount reads the same in
the overview, the liquidations log, the approvals view and the settlement review."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.models.logs import LiquidationsModel
from console.widgets.approvals import ApprovalsView
from console.widgets.overview import OverviewPanel
from console.widgets.settlement_view import SettlementView
from console.worker.readers import pending_requests, settlement_state
from core.session.session import Session
from core.session.snapshot import Snapshot, TableSpec
from core.session.snapshot_builder import SnapshotBuilder
from tests.console.conftest import two_traders_doc


@pytest.fixture
def settled(tmp_path: Path) -> Iterator[tuple[Session, Snapshot]]:
    """The two-traders run at its settlement: A's gap left 8 BTC uncovered, and the clawback of
    those 8 BTC waits for a supervisor."""
    session = Session.start(two_traders_doc(clawback_approval="required"), tmp_path / "run.db")
    builder = SnapshotBuilder(session)
    while not session.engine.settlements.pending and not session.finished:
        builder.record_tick(session.step())
    snap = builder.build(TableSpec(), playing=False, speed=0, ticks_per_second=0, notice=None)
    yield session, snap
    session.close()


def test_the_same_amount_reads_the_same_in_every_view(qtbot: Any, settled: Any) -> None:
    session, snap = settled
    shown = "8.00000000 BTC"  # 800,000,000 minor units: every decimal of BTC
    overview = OverviewPanel()
    qtbot.addWidget(overview)
    overview.update_snapshot(snap)
    assert overview.cards["BTC"].values["uncovered"].text().startswith(shown)

    log = LiquidationsModel()
    log.set_log(
        snap.liquidations,
        account_ids=snap.table.account_ids,
        symbols=snap.instruments,
        currencies=snap.table.currencies,
        decimals={o.code: o.decimals for o in snap.overview},
    )
    deficit = [c.key for c in log.columns].index("deficit")
    assert f"{log.cell_text(0, deficit)} BTC" == shown

    approvals = ApprovalsView("carol", "supervisor", lambda raw: None)
    qtbot.addWidget(approvals)
    approvals.set_requests(pending_requests(session.engine))
    (clawback,) = approvals.requests
    assert f"Deficit shared {shown}" in approvals.preview.toPlainText()
    assert f": {shown} from" in clawback.summary

    review = SettlementView(
        "carol", "supervisor", lambda raw: None, session.engine.settlements.preview
    )
    qtbot.addWidget(review)
    review.set_state(settlement_state(session.engine, "DEMO-USD"))
    assert f"clawback {shown} after the fund pays 0.00000000 BTC" in review.preview_label.text()
    amount = [c.key for c in review.model.columns].index("amount")
    total = sum(int(review.model.amounts[r]) for r in range(review.model.rowCount()))
    assert total == 800_000_000 and review.model.cell_text(0, amount) == "8.00000000"
