"""Login throttling: the growing delay, the lockout after a run of failures, each audited, and an
admin lifting it (in core and from the command line). Times are passed in, never slept."""

from __future__ import annotations

import argparse
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from console.cli import operators as cli_operators
from core.desk import audit, logins, operators
from core.desk.operators import ScryptParams
from core.model.operations import Refusal
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)
ROOT = operators.local_actor("root")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operators, "DEFAULT_SCRYPT", ScryptParams(n=2**10, r=8, p=1))


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    db = connect(tmp_path / "store.sqlite", create=True)
    operators.ensure_demo_operators(db, at=T0)
    return db


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="risk-console")
    cli_operators.register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def _attempt(db: sqlite_utils.Database, name: str, password: str, at: datetime) -> str:
    """The refusal code of a login, or "ok"."""
    try:
        operators.authenticate(db, name, password, at=at)
    except Refusal as refusal:
        return refusal.code
    return "ok"


def _fail_until_locked(db: sqlite_utils.Database, name: str) -> datetime:
    """Fail LOCKOUT_AFTER logins in a row, each once its delay has passed; the time after."""
    at = T0
    for _ in range(logins.LOCKOUT_AFTER):
        retry = logins.state(db, name).retry_at()
        at = max(at, retry or at) + timedelta(milliseconds=1)
        code = _attempt(db, name, "wrong password", at)
    assert code == "locked"
    return at


def test_fifty_wrong_passwords_lock_the_operator_out(db: sqlite_utils.Database) -> None:
    # Fifty tries, each waiting out its delay: the tenth locks the name, the right password later
    # is refused too.
    at = T0
    codes = []
    for _ in range(50):
        retry = logins.state(db, "alice").retry_at()
        at = max(at, retry or at) + timedelta(milliseconds=1)
        codes.append(_attempt(db, "alice", "wrong password", at))
    assert codes[: logins.LOCKOUT_AFTER - 1] == ["wrong_password"] * (logins.LOCKOUT_AFTER - 1)
    assert set(codes[logins.LOCKOUT_AFTER - 1 :]) == {"locked"}
    assert _attempt(db, "alice", "alice-demo", at + timedelta(days=1)) == "locked"
    assert logins.state(db, "alice") == logins.LoginState(
        logins.LOCKOUT_AFTER, logins.state(db, "alice").last_failure, True
    )
    rows = audit.rows(db, kind="login", newest_first=False, limit=1000)
    outcomes = [r.after_value() for r in rows]
    assert outcomes.count({"result": "locked", "failures": logins.LOCKOUT_AFTER}) == 1
    assert len(outcomes) == 50 + 1 + 1  # every attempt, the lockout, the refused right password
    assert audit.verify(db).ok


def test_a_login_during_the_delay_is_refused_early(db: sqlite_utils.Database) -> None:
    assert _attempt(db, "alice", "wrong password", T0) == "wrong_password"
    # No delay after one typo; a second failure costs a second, a third two.
    assert _attempt(db, "alice", "wrong password", T0) == "wrong_password"
    with pytest.raises(Refusal) as early:
        operators.authenticate(db, "alice", "alice-demo", at=T0 + timedelta(milliseconds=500))
    assert early.value.code == "too_soon"
    assert early.value.reason == "too many failed logins: wait 1 s and try again"
    assert audit.rows(db, limit=1)[0].after_value() == {
        "result": "refused",
        "code": "too_soon",
        "retry_in_s": 1,
    }
    # Refusals during the delay do not count towards the lockout; the right password after it works.
    assert logins.state(db, "alice").failures == 2
    assert _attempt(db, "alice", "alice-demo", T0 + timedelta(seconds=1)) == "ok"
    assert logins.state(db, "alice") == logins.LoginState(0, None, False)


def test_the_delay_grows_to_its_cap() -> None:
    delays = [logins.delay_after(n).total_seconds() for n in range(1, 12)]
    assert delays == [0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_unknown_names_are_throttled_and_locked_alike(db: sqlite_utils.Database) -> None:
    _fail_until_locked(db, "nobody")
    with pytest.raises(Refusal) as refusal:
        operators.authenticate(db, "nobody", "anything at all", at=T0 + timedelta(days=1))
    locked_reason = refusal.value.reason
    _fail_until_locked(db, "alice")
    with pytest.raises(Refusal) as refusal:
        operators.authenticate(db, "alice", "alice-demo", at=T0 + timedelta(days=1))
    assert (refusal.value.code, refusal.value.reason) == ("locked", locked_reason)


def test_an_admin_lifts_a_lockout(db: sqlite_utils.Database) -> None:
    at = _fail_until_locked(db, "alice")
    with pytest.raises(Refusal) as refusal:
        operators.unlock(db, "alice", actor="bob", at=at)
    assert refusal.value.code == "role"
    cleared = operators.unlock(db, "alice", actor="admin", at=at, reason="alice called the desk")
    assert cleared == logins.LOCKOUT_AFTER
    last = audit.rows(db, limit=1)[0]
    assert (last.operator, last.kind, last.subject, last.reason) == (
        "admin",
        "login",
        "operator:alice",
        "alice called the desk",
    )
    assert last.before_value() == {"failures": logins.LOCKOUT_AFTER, "locked": True}
    assert _attempt(db, "alice", "alice-demo", at) == "ok"
    with pytest.raises(Refusal) as refusal:
        operators.unlock(db, "alice", actor="admin", at=at)
    assert refusal.value.code == "no_effect"


def test_an_admin_lifts_a_lockout_from_the_command_line(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    db = connect(store, create=True)
    operators.ensure_demo_operators(db, at=T0)
    _fail_until_locked(db, "alice")
    _fail_until_locked(db, "bob")
    db.conn.close()

    def run(*argv: str, stdin: str = "") -> int | None:
        args = _parser().parse_args(argv)
        return cli_operators.handle(args, clock=lambda: T0, stdin=io.StringIO(stdin))

    unlock = ("operators", "unlock", str(store))
    assert run(*unlock, "alice", "--as", "admin", "--password-stdin", stdin="wrong one\n") == 2
    assert run(*unlock, "alice", "--as", "admin", "--password-stdin", stdin="admin-demo\n") == 0
    assert run(*unlock, "bob", "--reason", "reset by the desk lead") == 0
    db = connect(store)
    rows = [r for r in audit.rows(db, limit=10) if r.after_value() == {"result": "unlocked"}]
    assert [(r.operator, r.subject) for r in rows] == [
        (cli_operators._actor(), "operator:bob"),
        ("admin", "operator:alice"),
    ]
    assert _attempt(db, "alice", "alice-demo", T0 + timedelta(days=1)) == "ok"


def test_the_lockout_numbers_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert f"after {logins.LOCKOUT_AFTER} failed logins in a row" in text
    assert re.search(r"1, 2, 4, 8, 16, 32, then 60 s", text)
