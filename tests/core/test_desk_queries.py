"""The operator views' store queries (core.desk.queries), answered off the UI thread: frozen
answers, refusals and bad fields returned as values, and the login and alert changes audited."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils

from core.desk import alerts, audit, operators
from core.desk.alerts import Alert
from core.desk.operators import Operator, ScryptParams
from core.desk.queries import (
    AlertChange,
    AlertPage,
    AlertsQuery,
    AuditPage,
    AuditQuery,
    AuditVerify,
    DeskQueries,
    Login,
    LoginInfo,
    LoginInfoQuery,
)
from core.model.errors import InputError
from core.model.events import AlertRaised
from core.model.operations import Refusal
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)


@pytest.fixture
def queries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeskQueries:
    monkeypatch.setattr(operators, "DEFAULT_SCRYPT", ScryptParams(n=2**10, r=8, p=1))
    db: sqlite_utils.Database = connect(tmp_path / "store.sqlite", create=True)
    return DeskQueries(db, lambda: T0)


def test_the_desk_queries_answer_with_frozen_values_and_return_refusals(
    queries: DeskQueries,
) -> None:
    assert queries.answer(LoginInfoQuery()) == LoginInfo(0)
    info = queries.answer(LoginInfoQuery(demo=True))
    assert isinstance(info, LoginInfo) and info.operators == 6
    assert ("carol", "supervisor", "carol-demo") in info.demo_hint
    refused = queries.answer(Login("carol", "wrong"))
    assert isinstance(refused, Refusal) and refused.code == "wrong_password"
    carol = queries.answer(Login("carol", "carol-demo"))
    assert isinstance(carol, Operator) and carol.role == "supervisor"
    assert "carol-demo" not in repr(Login("carol", "carol-demo"))

    raised = AlertRaised(T0, "concentration", "A", "X", "critical", "A holds 50%", 0.5, 0.1)
    alerts.record(queries.db, [raised], tick=0)
    page = queries.answer(AlertsQuery("open"))
    assert isinstance(page, AlertPage) and [a.rule for a in page.alerts] == ["concentration"]
    assert dict(page.counts)["open"] == 1 and "vera" not in page.owners
    note = queries.answer(AlertChange("carol", page.alerts[0].id, state="dismissed"))
    assert isinstance(note, InputError) and note.field == "note"
    moved = queries.answer(AlertChange("carol", page.alerts[0].id, assign=True, owner="alice"))
    assert isinstance(moved, Alert) and moved.owner == "alice"

    logs = queries.answer(AuditQuery((("kind", "login"),), limit=10))
    assert isinstance(logs, AuditPage) and logs.total == 2
    assert [e.after_value()["result"] for e in logs.entries] == ["ok", "refused"]
    bad = queries.answer(AuditQuery((("since", "yesterday"),)))
    assert isinstance(bad, InputError) and bad.field == "since"
    assert queries.answer(AuditVerify()) == audit.verify(queries.db)
    assert queries.audit_head() == audit.count(queries.db)
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.state = "dismissed"  # type: ignore[misc]
