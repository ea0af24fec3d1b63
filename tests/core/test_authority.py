"""Authority is checked where a command applies: the role and enabled state its operator has then
in the store, and the command's login and audit entry. A command that cannot apply is refused and
recorded once, never queued again, and the store stays usable."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.desk import audit
from core.desk.operators import add_operator, disable, set_role
from core.engine.ledger import INSURANCE_FUND
from core.model.errors import InputError
from core.model.events import ActionRecorded, ActionRefused, Event
from core.model.operations import Refusal
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from tests.core.conftest import LOGIN_AT, log_in

ADMIN = "local:test"
INJECT = {"action": "inject", "currency": "BTC", "amount": "1", "reason": "top up the fund"}
ONE_BTC = 10**8


def two_traders() -> dict[str, Any]:
    return json.loads(builtin_scenarios()["two-traders"].read_text())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A two-traders store two ticks in, with the demo identities and their logins."""
    path = tmp_path / "run.sqlite"
    session = Session.start(two_traders(), path)
    assert session.store is not None
    log_in(session.store.db, "alice", "bob", "carol", "dave")
    session.step()
    session.step()
    session.close()
    return path


def fund(session: Session) -> int:
    return session.engine.ledger.balance(INSURANCE_FUND, "BTC")


def refusals(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.operator, e.action, e.code) for e in events if isinstance(e, ActionRefused)]


def approve(session: Session, operator: str, role: str, request: str = "inj") -> list[Event]:
    """An approval as the console gives it: with the role the operator had at their login."""
    command = {"action": "approve", "request": request, "operator": operator, "reason": "ok"}
    session.submit(command, role=role)
    return session.step()


def request_injection(session: Session, amount: str = "1", request: str = "inj") -> None:
    session.submit(
        {**INJECT, "amount": amount, "operator": "alice", "id": request}, role="operator"
    )
    session.step()


def test_a_demoted_operator_cannot_approve_an_injection(path: Path) -> None:
    session = Session.open(path)
    assert session.store is not None
    request_injection(session)
    set_role(session.store.db, "carol", "viewer", actor=ADMIN, at=LOGIN_AT)
    before = fund(session)
    events = approve(session, "carol", "supervisor")
    assert refusals(events) == [("carol", "approve", "role")]
    assert fund(session) == before
    refused = session.result()["refused"][-1]
    assert (refused["code"], refused["reason"]) == ("role", "role viewer cannot approve")
    outcome = audit.rows(session.store.db, kind="outcome", limit=1)[0]
    assert outcome.operator == "carol"
    assert outcome.after_value()["code"] == "role"
    session.close()


def test_a_promotion_takes_effect_at_apply(path: Path) -> None:
    session = Session.open(path)
    assert session.store is not None
    request_injection(session)
    assert refusals(approve(session, "bob", "operator")) == [("bob", "approve", "role")]
    set_role(session.store.db, "bob", "supervisor", actor=ADMIN, at=LOGIN_AT)
    before = fund(session)
    events = approve(session, "bob", "supervisor")
    assert [e.detail for e in events if isinstance(e, ActionRecorded)] == [
        "request inj approved: injected 1 BTC into the insurance fund"
    ]
    assert fund(session) == before + ONE_BTC
    session.close()


def test_a_disabled_operator_cannot_act(path: Path) -> None:
    session = Session.open(path)
    assert session.store is not None
    session.submit({**INJECT, "operator": "alice", "id": "inj"}, role="operator")
    disable(session.store.db, "alice", actor=ADMIN, at=LOGIN_AT)
    assert refusals(session.step()) == [("alice", "inject", "disabled")]
    assert "inj" not in session.engine.controls.requests
    session.close()


def test_a_replay_applies_the_authority_recorded_at_apply(path: Path) -> None:
    """Roles changed after a command applied do not change it on a replay."""
    session = Session.open(path)
    assert session.store is not None
    request_injection(session)
    set_role(session.store.db, "carol", "viewer", actor=ADMIN, at=LOGIN_AT)
    approve(session, "carol", "supervisor")
    approve(session, "dave", "supervisor")
    set_role(session.store.db, "carol", "supervisor", actor=ADMIN, at=LOGIN_AT)
    set_role(session.store.db, "dave", "viewer", actor=ADMIN, at=LOGIN_AT)
    expected, result = session.engine.state_hash(), session.result()
    session.close()
    reopened = Session.open(path, at=0)
    reopened.seek(reopened.head)
    assert reopened.engine.state_hash() == expected
    assert reopened.result()["refused"] == result["refused"]
    reopened.close()


def test_a_command_needs_a_login(path: Path) -> None:
    session = Session.open(path)
    with pytest.raises(Refusal, match="has not logged in") as refused:
        session.submit({**INJECT, "operator": "vera", "id": "inj"}, role="viewer")
    assert refused.value.code == "login"
    assert session.store is not None
    assert session.store.pending_commands(session.head) == []
    session.close()


# ----- operator names --------------------------------------------------------------------


def test_an_operator_name_with_a_trailing_newline_is_refused(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = Session.open(path)
    assert session.store is not None
    with pytest.raises(InputError, match="not a valid operator name"):
        add_operator(
            session.store.db, "alice\n", "supervisor", "password-2", actor=ADMIN, at=LOGIN_AT
        )
    session.close()
    add = ["operators", "add", str(path), "alice\n", "--role", "supervisor"]
    code = main([*add, "--password", "password-2"])
    assert code == 2
    assert "not a valid operator name" in capsys.readouterr().err
    names = [r[0] for r in Session.open(path).store.conn.execute("SELECT name FROM operators")]  # type: ignore[union-attr]
    assert "alice\n" not in names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Alice", "not a valid operator name"),  # case: names are lower-case
        ("\u0430lice", "not a valid operator name"),  # Cyrillic a: names are ASCII
        ("\uff41lice", "not a valid operator name"),  # full-width a
        ("a1ice", "looks like the existing operator 'alice'"),
        ("b0b", "looks like the existing operator 'bob'"),
        ("caro1", "looks like the existing operator 'carol'"),
        ("clave", "looks like the existing operator 'dave'"),
        ("vvera", None),
        ("carla", None),
    ],
)
def test_a_look_alike_operator_name_is_refused(path: Path, name: str, message: str | None) -> None:
    session = Session.open(path)
    assert session.store is not None
    db = session.store.db
    add_operator(db, "mallory", "operator", "password-1", actor=ADMIN, at=LOGIN_AT)
    add_operator(db, "ops_desk", "operator", "password-1", actor=ADMIN, at=LOGIN_AT)
    for alike in ("rnallory", "ops-desk", "ops.desk"):
        with pytest.raises(InputError, match="looks like the existing operator"):
            add_operator(db, alike, "supervisor", "password-2", actor=ADMIN, at=LOGIN_AT)
    if message is None:
        add_operator(db, name, "operator", "password-2", actor=ADMIN, at=LOGIN_AT)
    else:
        with pytest.raises(InputError, match=message):
            add_operator(db, name, "supervisor", "password-2", actor=ADMIN, at=LOGIN_AT)
    session.close()


# ----- journal rows that were not given ---------------------------------------------------


def _insert_command(path: Path, command: dict[str, Any]) -> int:
    """A command row written into the journal by hand, for the next tick."""
    session = Session.open(path)
    store = session.store
    assert store is not None
    command = {"at": "2018-07-31T00:00:02Z", **command}
    with store.transaction():
        seq = store.write_command(session.head + 1, session.engine.now, command)
    session.close()
    return seq


FORGED = {
    "operator": "mallory",
    "x-role": "supervisor",
    "action": "freeze",
    "account": "B",
    "reason": "because",
}


def test_a_journal_command_without_login_and_audit_is_refused(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = _insert_command(path, FORGED)
    assert main(["audit", "verify", str(path)]) == 1
    assert f"journal row {seq} has no audit entry" in capsys.readouterr().out
    session = Session.open(path)
    assert session.store is not None
    session.submit(
        {"operator": "alice", "action": "warn", "account": "A", "message": "m", "reason": "r"}
    )
    events = session.step()
    assert refusals(events) == [("mallory", "freeze", "no_audit")]
    assert session.engine.controls.flag_names("B") == ()
    assert session.engine.controls.flag_names("A") == ("warned",)
    outcomes = [
        (r.operator, r.after_value().get("code"))
        for r in audit.rows(session.store.db, kind="outcome")
    ]
    assert ("mallory", "no_audit") in outcomes
    session.close()
    reopened = Session.open(path)
    assert reopened.queued == []  # refused once, never queued again
    reopened.close()
    assert main(["audit", "verify", str(path)]) == 1


def test_a_journal_command_with_an_audit_entry_but_no_login_is_refused(path: Path) -> None:
    """An audit row appended by hand (a sound chain) does not stand in for a login."""
    session = Session.open(path)
    store = session.store
    assert store is not None
    command = {**FORGED, "operator": "carol", "at": "2018-07-31T00:00:02Z", "x-login": 1}
    with store.transaction():
        seq = store.write_command(session.head + 1, session.engine.now, command)
        after = {k: v for k, v in command.items() if k not in ("operator", "reason")}
        audit.append(
            store.db,
            at=LOGIN_AT,
            operator="carol",
            kind="action",
            subject="account B",
            reason="because",
            after={**after, "journal": seq},
        )
    session.close()
    reopened = Session.open(path)
    assert reopened.store is not None
    assert refusals(reopened.step()) == [("carol", "freeze", "no_login")]
    assert audit.verify(reopened.store.db).ok
    reopened.close()


# ----- commands that raise while they apply -----------------------------------------------


def test_an_overflowing_inject_is_refused_where_it_is_typed(path: Path) -> None:
    session = Session.open(path)
    assert session.store is not None
    head = session.head
    with pytest.raises(InputError, match=r"command\.amount"):
        request_injection(session, amount="100000000000", request="big")
    assert session.store.pending_commands(head) == []
    assert "big" not in session.engine.controls.requests
    session.close()


def test_an_overflowing_inject_does_not_brick_the_store(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Input bounds now refuse this amount where it is typed; lifted here, the inject reaches
    the ledger and overflows there, as any command that raises while it applies would."""
    monkeypatch.setattr("core.model.units.MAX_MINOR", 2**70)
    session = Session.open(path)
    assert session.store is not None
    request_injection(session, amount="100000000000", request="big")
    before, head = fund(session), session.head
    events = approve(session, "carol", "supervisor", request="big")
    assert refusals(events) == [("carol", "approve", "apply_failed")]
    refused = session.result()["refused"][-1]
    assert "OverflowError" in refused["reason"]
    assert fund(session) == before
    assert session.head == head + 1
    assert session.engine.controls.requests["big"].status == "pending"
    # Anyone's next command applies: the store is not bricked.
    session.submit(
        {"operator": "bob", "action": "warn", "account": "A", "message": "m", "reason": "r"}
    )
    assert [e.action for e in session.step() if isinstance(e, ActionRecorded)] == ["warn"]
    expected = session.engine.state_hash()
    session.close()
    reopened = Session.open(path)
    assert reopened.queued == []
    assert reopened.engine.state_hash() == expected
    reopened.close()


def test_resume_does_not_exit_zero_leaving_commands_unapplied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command given after the run's end and stopped before it applied: `resume` applies it
    (the old resume exited 0 and left it in the journal, unapplied)."""
    path = tmp_path / "ended.sqlite"
    session = Session.start(two_traders(), path)
    assert session.store is not None
    log_in(session.store.db, "alice")
    session.run_to_end()
    session.submit({"operator": "alice", "action": "freeze", "account": "B", "reason": "check"})
    session.close()  # stopped before it applied
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main(["resume", str(path), "--out", str(tmp_path / "result.json"), "--quiet"])
    reopened = Session.open(path)
    assert reopened.store is not None
    left = reopened.store.pending_commands(reopened.head)
    assert (code, left) == (0, [])
    assert reopened.engine.controls.flag_names("B") == ("frozen", "withdrawals_frozen")
    reopened.close()
    assert "applied alice's freeze" in capsys.readouterr().out
