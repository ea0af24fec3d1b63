"""Every entry point that can apply a maker-checker action (scenario file, session command,
command line) refuses to apply it without a second person with the supervisor role; commands are
journaled, audited and listed as requests."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.desk import audit
from core.desk.operators import ensure_demo_operators
from core.engine.ledger import INSURANCE_FUND
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from tests.core.conftest import log_in

AT = "2026-01-01T00:00:00Z"
INJECT = {"action": "inject", "currency": "BTC", "amount": "1", "reason": "top up the fund"}


def two_traders() -> dict[str, Any]:
    return json.loads(builtin_scenarios()["two-traders"].read_text())


def fund(session: Session) -> int:
    return session.engine.ledger.balance(INSURANCE_FUND, "BTC")


@pytest.fixture
def store_session(tmp_path: Path) -> Session:
    session = Session.start(two_traders(), tmp_path / "run.sqlite")
    assert session.store is not None
    log_in(session.store.db, *ROLES)
    session.step()
    return session


ROLES = {"alice": "operator", "bob": "operator", "carol": "supervisor", "dave": "supervisor"}


def _session_request(session: Session, approver: str | None) -> int:
    before = fund(session)
    session.submit({**INJECT, "operator": "alice", "id": "inj"}, role=ROLES["alice"])
    session.step()
    if approver is not None:
        session.submit(
            {"action": "approve", "request": "inj", "operator": approver, "reason": "checked"},
            role=ROLES[approver],
        )
        session.step()
    return fund(session) - before


def _scenario_request(approver: str | None) -> int:
    doc = two_traders()
    doc["operators"] = [{"name": n, "role": r} for n, r in ROLES.items()]
    actions = [{**INJECT, "at": "2018-07-31T00:00:02Z", "operator": "alice", "id": "inj"}]
    if approver is not None:
        actions.append(
            {
                "at": "2018-07-31T00:00:03Z",
                "action": "approve",
                "request": "inj",
                "operator": approver,
                "reason": "checked",
            }
        )
    doc["actions"] = actions
    session = Session.start(doc)
    before = fund(session)
    for _ in range(4):
        session.step()
    return fund(session) - before


def _cli_request(tmp_path: Path, approver: str | None, monkeypatch: pytest.MonkeyPatch) -> int:
    path = tmp_path / f"cli-{approver}.sqlite"
    session = Session.start(two_traders(), path)
    assert session.store is not None
    ensure_demo_operators(session.store.db, at=AT)
    session.close()

    def act(operator: str, *args: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(f"{operator}-demo\n"))
        return main(["action", str(path), *args, "--as", operator, "--password-stdin"])

    before_session = Session.open(path)
    before = fund(before_session)
    before_session.close()
    assert (
        act("alice", "inject", "--currency", "BTC", "--amount", "1", "--id", "inj", "--reason", "r")
        == 0
    )
    if approver is not None:
        act(approver, "approve", "--request", "inj", "--reason", "checked")
    after_session = Session.open(path)
    change = fund(after_session) - before
    after_session.close()
    return change


@pytest.mark.parametrize("approver", [None, "alice", "bob"])
def test_no_entry_point_applies_an_injection_without_a_second_supervisor(
    store_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, approver: str | None
) -> None:
    assert _session_request(store_session, approver) == 0
    assert _scenario_request(approver) == 0
    assert _cli_request(tmp_path, approver, monkeypatch) == 0


def test_every_entry_point_applies_it_with_a_second_supervisor(
    store_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_btc = 10**8
    assert _session_request(store_session, "carol") == one_btc
    assert _scenario_request("carol") == one_btc
    assert _cli_request(tmp_path, "dave", monkeypatch) == one_btc


def test_a_clawback_approval_needs_a_supervisor(tmp_path: Path) -> None:
    doc = two_traders()
    doc["policy"]["clawback_approval"] = "required"
    session = Session.start(doc, tmp_path / "claw.sqlite")
    assert session.store is not None
    log_in(session.store.db, "bob", "carol")
    session.run_to_end()
    assert session.result()["clawbacks"][0]["status"] == "pending"
    balances = session.engine.book.balances.copy()
    clawback = {"action": "approve_clawback", "family": "DEMO-USD", "currency": "BTC"}
    session.submit({**clawback, "operator": "bob", "reason": "ok"}, role="operator")
    session.apply_pending()
    assert (session.engine.book.balances == balances).all()
    session.submit({**clawback, "operator": "carol", "reason": "ok"}, role="supervisor")
    session.apply_pending()
    assert session.result()["clawbacks"][-1]["status"] == "applied"
    assert (session.engine.book.balances != balances).any()
    session.close()


def test_commands_are_audited_and_requests_listed(store_session: Session) -> None:
    session = store_session
    session.clock = lambda: datetime(2026, 1, 1, 9, tzinfo=UTC)
    session.submit(
        {"action": "warn", "account": "B", "message": "m", "operator": "alice", "reason": "watch"}
    )
    session.submit({**INJECT, "operator": "alice", "id": "inj"}, role="operator")
    session.step()
    session.submit(
        {"action": "approve", "request": "inj", "operator": "alice", "reason": "mine"},
        role="operator",
    )
    session.step()
    assert session.store is not None
    db = session.store.db
    kinds = [(r.operator, r.kind, r.subject) for r in audit.rows(db, newest_first=False)][-6:]
    assert kinds == [
        ("alice", "action", "account B"),
        ("alice", "request", "fund BTC"),
        ("alice", "outcome", "warn"),
        ("alice", "outcome", "inj"),
        ("alice", "approval", "request inj"),
        ("alice", "outcome", "inj"),
    ]
    assert audit.verify(db).ok
    requests = list(db.query("SELECT id, operator, status, decided_by FROM requests"))
    assert requests == [{"id": "inj", "operator": "alice", "status": "pending", "decided_by": None}]
    session.close()


def test_the_settlement_flow_replays_from_the_store_to_the_same_state(tmp_path: Path) -> None:
    """Propose an adjusted price, approve it, settle at it, approve the clawback request with
    the digest of its preview: reopening the store rebuilds exactly that state."""
    doc = two_traders()
    doc["policy"]["clawback_approval"] = "required"
    path = tmp_path / "settle.sqlite"
    session = Session.start(doc, path)
    assert session.store is not None
    log_in(session.store.db, "alice", "carol")
    for _ in range(10):
        session.step()
    proposal = {"action": "adjust_settlement_price", "family": "DEMO-USD", "price": "0.2"}
    session.submit(
        {**proposal, "id": "px", "operator": "alice", "reason": "manipulated"}, role="operator"
    )
    session.step()
    session.submit(
        {"action": "approve", "request": "px", "operator": "alice", "reason": "mine"},
        role="operator",
    )
    session.step()
    session.submit(
        {"action": "approve", "request": "px", "operator": "carol", "reason": "checked"},
        role="supervisor",
    )
    session.run_to_end()
    (settlement,) = session.result()["settlements"]
    assert (settlement["price"], settlement["adjusted_from"]) == ("0.2", "0.1")
    pending = session.engine.settlements.pending[("DEMO-USD", "BTC")]
    clawback = {"action": "approve_clawback", "family": "DEMO-USD", "currency": "BTC"}
    session.submit(
        {**clawback, "digest": pending.digest, "operator": "carol", "reason": "reviewed"},
        role="supervisor",
    )
    session.apply_pending()
    result = session.result()
    assert result["clawbacks"][-1]["status"] == "applied"
    assert [r["reason"] for r in result["refused"]] == [
        "self-approval: the approver must be a different person"
    ]
    expected = session.engine.state_hash()
    session.close()
    reopened = Session.open(path)
    assert reopened.engine.state_hash() == expected
    assert reopened.result()["clawbacks"] == result["clawbacks"]
    reopened.close()
