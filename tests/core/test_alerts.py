"""The alert workflow in the store: recording raised and cleared alerts, the allowed moves between
states, owners and notes, refusals that change nothing, and the audit rows of every change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.desk import alerts, audit
from core.desk.alerts import AlertDesk
from core.desk.operators import ensure_demo_operators
from core.model.errors import InputError
from core.model.events import AlertCleared, AlertRaised
from core.model.operations import Refusal
from core.model.thresholds import Thresholds
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    store = connect(tmp_path / "store.sqlite", create=True)
    ensure_demo_operators(store, at=T0)
    yield store
    store.conn.close()


def raised(rule: str = "concentration", account: str | None = "A", minutes: int = 0) -> Any:
    return AlertRaised(
        T0 + timedelta(minutes=minutes),
        rule,
        account,
        "BTC-USD-180928" if account else None,
        "warning",
        f"{account} holds 12% of open interest",
        0.12,
        0.10,
    )


def cleared(rule: str = "concentration", account: str | None = "A", minutes: int = 5) -> Any:
    symbol = "BTC-USD-180928" if account else None
    return AlertCleared(T0 + timedelta(minutes=minutes), rule, account, symbol, 0.05)


def test_record_raises_open_alerts_and_clears_the_standing_one(db: Any) -> None:
    assert alerts.record(db, [raised(), raised("fund_coverage", None), "not an alert"], tick=7) == 2
    rows = alerts.list_alerts(db)
    assert [(a.rule, a.account, a.state, a.tick) for a in rows] == [
        ("fund_coverage", None, "open", 7),
        ("concentration", "A", "open", 7),
    ]
    assert all(a.standing for a in rows)
    alerts.record(db, [cleared("fund_coverage", None)])
    by_rule = {a.rule: a for a in alerts.list_alerts(db)}
    assert by_rule["fund_coverage"].cleared_at == "2018-07-31T10:05:00.000Z"
    assert by_rule["concentration"].standing
    # Raised again after clearing: a new alert; the next clear closes only the new one.
    alerts.record(db, [raised("fund_coverage", None, minutes=9)])
    alerts.record(db, [cleared("fund_coverage", None, minutes=12)])
    coverage = alerts.list_alerts(db, rule="fund_coverage")
    assert [a.cleared_at for a in coverage] == [
        "2018-07-31T10:12:00.000Z",
        "2018-07-31T10:05:00.000Z",
    ]
    # Recording is not an operator's change: nothing in the audit log beyond the demo set-up.
    assert audit.count(db, kind="alert") == 0


def test_workflow_moves_are_audited_with_before_and_after(db: Any) -> None:
    alerts.record(db, [raised()])
    (alert,) = alerts.list_alerts(db)
    acked = alerts.change(db, alert.id, operator="alice", at=T0, state="acknowledged")
    assert (acked.state, acked.owner) == ("acknowledged", "alice")
    assigned = alerts.change(db, alert.id, operator="alice", at=T0, owner="bob", note="bob's book")
    assert assigned.owner == "bob"
    assert [(n.operator, n.text) for n in assigned.notes] == [("alice", "bob's book")]
    done = alerts.change(
        db, alert.id, operator="bob", at=T0 + timedelta(minutes=1), state="resolved", note="cut"
    )
    assert done.state == "resolved" and done.updated_at == "2018-07-31T10:01:00.000Z"
    reopened = alerts.change(db, alert.id, operator="carol", at=T0, state="open")
    assert reopened.state == "open" and len(reopened.notes) == 2
    rows = audit.rows(db, kind="alert", newest_first=False)
    assert [(r.operator, r.before_value(), r.after_value()) for r in rows] == [
        ("alice", {"state": "open", "owner": None}, {"state": "acknowledged", "owner": "alice"}),
        (
            "alice",
            {"state": "acknowledged", "owner": "alice"},
            {"state": "acknowledged", "owner": "bob", "note": "bob's book"},
        ),
        (
            "bob",
            {"state": "acknowledged", "owner": "bob"},
            {"state": "resolved", "owner": "bob", "note": "cut"},
        ),
        ("carol", {"state": "resolved", "owner": "bob"}, {"state": "open", "owner": "bob"}),
    ]
    assert {r.subject for r in rows} == {f"alert:{alert.id}"}
    assert audit.verify(db).ok
    assert alerts.counts(db) == {"open": 1, "acknowledged": 0, "resolved": 0, "dismissed": 0}


@pytest.mark.parametrize(
    ("start", "to", "code"),
    [
        ("resolved", "acknowledged", "transition"),
        ("dismissed", "resolved", "transition"),
        ("open", "open", "no_change"),
    ],
)
def test_moves_the_workflow_does_not_allow_are_refused(
    db: Any, start: str, to: str, code: str
) -> None:
    alerts.record(db, [raised()])
    (alert,) = alerts.list_alerts(db)
    if start != "open":
        alerts.change(db, alert.id, operator="alice", at=T0, state=start, note="closing")
    rows_before = audit.count(db)
    with pytest.raises(Refusal) as refused:
        # The same state with no note and no new owner changes nothing: refused, not audited.
        note = "" if code == "no_change" else "again"
        alerts.change(db, alert.id, operator="alice", at=T0, state=to, note=note)
    assert refused.value.code == code
    assert alerts.get(db, alert.id).state == start
    assert audit.count(db) == rows_before


def test_bad_input_names_the_field_and_changes_nothing(db: Any) -> None:
    alerts.record(db, [raised()])
    (alert,) = alerts.list_alerts(db)
    rows_before = audit.count(db)
    cases = [
        ({"state": "closed"}, "state"),
        ({"state": "dismissed"}, "note"),  # closing needs a reason
        ({"owner": "nobody"}, "owner"),
        ({"owner": "vera"}, "owner"),  # a viewer cannot own an alert
        ({"note": "x" * 3000}, "note"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InputError) as error:
            alerts.change(db, alert.id, operator="alice", at=T0, **kwargs)
        assert error.value.field == field, kwargs
    with pytest.raises(InputError) as error:
        alerts.change(db, 999, operator="alice", at=T0, state="acknowledged")
    assert error.value.field == "alert"
    with pytest.raises(Refusal) as refused:
        alerts.change(db, alert.id, operator="vera", at=T0, state="acknowledged")
    assert refused.value.code == "role"
    assert alerts.get(db, alert.id) == alert
    assert audit.count(db) == rows_before


def test_threshold_changes_are_settings_changes_audited(db: Any) -> None:
    applied: list[dict[str, object]] = []
    current = [Thresholds()]

    def apply(changes: dict[str, object]) -> tuple[Thresholds, Thresholds]:
        applied.append(changes)
        before = current[0]
        current[0] = replace(before, **changes)  # type: ignore[arg-type]
        return before, current[0]

    desk = AlertDesk(db, "carol", lambda: T0, apply_thresholds=apply)
    changed = desk.set_thresholds({"concentration": "0.2", "shock": "0.15"}, "desk review")
    assert changed == {"concentration": 0.2, "shock": 0.15}
    assert applied == [{"concentration": 0.2, "shock": 0.15}]
    assert alerts.saved_thresholds(db) == Thresholds(concentration=0.2, shock=0.15)
    (row,) = audit.rows(db, kind="settings")
    assert (row.operator, row.subject, row.reason) == (
        "carol",
        alerts.THRESHOLDS_KEY,
        "desk review",
    )
    assert row.before_value() == {"concentration": 0.1, "shock": 0.1}
    assert row.after_value() == {"concentration": 0.2, "shock": 0.15}

    with pytest.raises(InputError) as error:
        desk.set_thresholds({"shock": "2"}, "too wide")
    assert error.value.field == "thresholds.shock"
    with pytest.raises(InputError) as error:
        desk.set_thresholds({"shock": "0.2"}, " ")
    assert error.value.field == "reason"
    with pytest.raises(Refusal) as refused:
        AlertDesk(db, "alice", lambda: T0, apply_thresholds=apply).set_thresholds(
            {"shock": "0.2"}, "an operator may not"
        )
    assert refused.value.code == "role"
    assert len(applied) == 1 and audit.count(db, kind="settings") == 1


def test_desk_lists_owners_and_filters_by_state(db: Any) -> None:
    alerts.record(db, [raised(), raised("near_liquidation", "B")])
    desk = AlertDesk(db, "alice", lambda: T0)
    first = desk.alerts()[-1]
    desk.change(first.id, state="dismissed", note="known hedge")
    assert [a.rule for a in desk.alerts("dismissed")] == ["concentration"]
    assert [a.rule for a in desk.alerts("open")] == ["near_liquidation"]
    assert desk.owners() == ["admin", "alice", "bob", "carol", "dave"]
