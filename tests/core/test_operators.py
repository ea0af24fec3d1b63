"""Operators in the store: validation, scrypt hashes, login refusals, permissions, demo identities,
and the audit row each change leaves."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils

from core.desk import audit, operators
from core.desk.operators import ScryptParams
from core.model.errors import InputError
from core.model.operations import Refusal
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)
CHEAP = ScryptParams(n=2**10, r=8, p=1)
ROOT = operators.local_actor("root")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real default costs ~0.1 s a hash; tests that are not about the cost use a cheap one.
    monkeypatch.setattr(operators, "DEFAULT_SCRYPT", CHEAP)


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    return connect(tmp_path / "store.sqlite", create=True)


def _add(db: sqlite_utils.Database, name: str, role: str, actor: str = ROOT) -> None:
    operators.add_operator(db, name, role, f"{name}-secret", actor=actor, at=T0)


def _counts(db: sqlite_utils.Database) -> tuple[int, int]:
    return db["operators"].count, audit.count(db)


def test_add_then_authenticate(db: sqlite_utils.Database) -> None:
    added = operators.add_operator(db, "alice", "operator", "correct horse", actor=ROOT, at=T0)
    assert added == operators.Operator(
        "alice", "operator", False, "2018-07-31T10:00:00.000Z", "2018-07-31T10:00:00.000Z"
    )
    who = operators.authenticate(db, "alice", "correct horse", at=T0)
    assert who.name == "alice" and who.role == "operator"
    assert operators.list_operators(db) == [added]


def test_hashes_are_salted_per_user_with_their_parameters_stored(
    db: sqlite_utils.Database,
) -> None:
    real = ScryptParams(n=2**15, r=8, p=1)
    for name in ("alice", "bob"):
        operators.add_operator(
            db, name, "operator", "same password", actor=ROOT, at=T0, params=real
        )
    rows = list(
        db.conn.execute(
            "SELECT name, salt, password_hash, scrypt_n, scrypt_r, scrypt_p FROM operators"
        )
    )
    (_, salt_a, hash_a, *params_a), (_, salt_b, hash_b, *params_b) = rows
    assert salt_a != salt_b and hash_a != hash_b
    assert params_a == params_b == [2**15, 8, 1]
    assert "same password" not in "".join(str(v) for row in rows for v in row)
    assert len(bytes.fromhex(salt_a)) == 16 and len(bytes.fromhex(hash_a)) == 32
    assert operators.authenticate(db, "bob", "same password", at=T0).name == "bob"


@pytest.mark.parametrize(
    ("name", "password", "code"),
    [
        ("alice", "wrong password", "wrong_password"),
        ("zoe", "alice-secret", "unknown_operator"),
        ("Not A Name!", "alice-secret", "unknown_operator"),
        ("alice", "", "wrong_password"),
    ],
)
def test_login_refusals(db: sqlite_utils.Database, name: str, password: str, code: str) -> None:
    _add(db, "alice", "operator")
    with pytest.raises(Refusal) as refusal:
        operators.authenticate(db, name, password, at=T0)
    assert refusal.value.code == code
    # Unknown name and wrong password read the same, so the dialog does not reveal names.
    assert refusal.value.reason == "unknown operator or wrong password"
    last = audit.rows(db, limit=1)[0]
    assert (last.kind, last.operator) == ("login", name)
    assert last.after_value() == {"result": "refused", "code": code}


def test_a_disabled_operator_cannot_log_in(db: sqlite_utils.Database) -> None:
    _add(db, "alice", "operator")
    operators.disable(db, "alice", actor=ROOT, at=T0, reason="left the desk")
    with pytest.raises(Refusal) as refusal:
        operators.authenticate(db, "alice", "alice-secret", at=T0)
    assert refusal.value.code == "disabled"
    # With a wrong password a disabled operator learns nothing more than anybody else.
    with pytest.raises(Refusal) as wrong:
        operators.authenticate(db, "alice", "guessing-1", at=T0)
    assert wrong.value.code == "wrong_password"
    operators.enable(db, "alice", actor=ROOT, at=T0)
    assert operators.authenticate(db, "alice", "alice-secret", at=T0).name == "alice"


@pytest.mark.parametrize(
    ("name", "role", "password", "field"),
    [
        ("", "operator", "long enough", "name"),
        ("   ", "operator", "long enough", "name"),
        ("Alice Smith", "operator", "long enough", "name"),
        ("a:b", "operator", "long enough", "name"),
        ("system", "operator", "long enough", "name"),
        ("x" * 33, "operator", "long enough", "name"),
        ("alice", "trader", "long enough", "role"),
        ("alice", "", "long enough", "role"),
        ("alice", "operator", "short", "password"),
        ("alice", "operator", "", "password"),
        ("alice", "operator", "x" * 1025, "password"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    db: sqlite_utils.Database, name: str, role: str, password: str, field: str
) -> None:
    _add(db, "bob", "operator")
    before = _counts(db)
    with pytest.raises(InputError) as error:
        operators.add_operator(db, name, role, password, actor=ROOT, at=T0)
    assert error.value.field == field
    assert _counts(db) == before


def test_a_name_is_added_once(db: sqlite_utils.Database) -> None:
    _add(db, "alice", "operator")
    before = _counts(db)
    with pytest.raises(InputError) as error:
        _add(db, "alice", "admin")
    assert error.value.field == "name"
    assert _counts(db) == before
    assert operators.get_operator(db, "alice").role == "operator"  # type: ignore[union-attr]


def test_changes_to_unknown_operators_name_the_field(db: sqlite_utils.Database) -> None:
    for change in (
        lambda: operators.disable(db, "ghost", actor=ROOT, at=T0),
        lambda: operators.set_password(db, "ghost", "new password", actor=ROOT, at=T0),
        lambda: operators.set_role(db, "ghost", "viewer", actor=ROOT, at=T0),
    ):
        with pytest.raises(InputError) as error:
            change()
        assert error.value.field == "name"
    assert _counts(db) == (0, 0)


def test_every_change_and_login_is_audited_without_secrets(db: sqlite_utils.Database) -> None:
    _add(db, "admin", "admin")
    _add(db, "alice", "operator")
    operators.set_password(db, "alice", "new password!", actor="admin", at=T0, reason="reset")
    operators.set_role(db, "alice", "supervisor", actor="admin", at=T0, reason="promoted")
    operators.disable(db, "alice", actor="admin", at=T0, reason="left")
    operators.enable(db, "alice", actor="admin", at=T0, reason="back")
    operators.authenticate(db, "alice", "new password!", at=T0)
    with pytest.raises(Refusal):
        operators.authenticate(db, "alice", "alice-secret", at=T0)
    log = audit.rows(db, newest_first=False)
    assert [(e.operator, e.kind, e.subject, e.reason) for e in log] == [
        (ROOT, "operator", "operator:admin", "operator added"),
        (ROOT, "operator", "operator:alice", "operator added"),
        ("admin", "operator", "operator:alice", "reset"),
        ("admin", "operator", "operator:alice", "promoted"),
        ("admin", "operator", "operator:alice", "left"),
        ("admin", "operator", "operator:alice", "back"),
        ("alice", "login", "operator:alice", "login"),
        ("alice", "login", "operator:alice", "login refused"),
    ]
    assert log[3].before_value() == {"name": "alice", "role": "operator", "disabled": False}
    assert log[3].after_value() == {"name": "alice", "role": "supervisor", "disabled": False}
    assert log[4].after_value()["disabled"] is True
    hashes = {row[0] for row in db.conn.execute("SELECT password_hash FROM operators")}
    text = " ".join(f"{e.before} {e.after} {e.reason}" for e in log)
    assert "new password!" not in text and "secret" not in text
    assert not any(h in text for h in hashes)
    assert audit.verify(db).ok


def test_who_may_change_operators(db: sqlite_utils.Database) -> None:
    _add(db, "admin", "admin")
    _add(db, "carol", "supervisor")
    _add(db, "alice", "operator")
    for actor in ("alice", "carol", "nobody"):
        with pytest.raises(Refusal) as refusal:
            _add(db, "mallory", "admin", actor=actor)
        assert refusal.value.code in ("role", "unknown_operator")
        with pytest.raises(Refusal):
            operators.set_role(db, "alice", "admin", actor=actor, at=T0)
        with pytest.raises(Refusal):
            operators.disable(db, "admin", actor=actor, at=T0)
    # An operator may change their own password, not someone else's.
    operators.set_password(db, "alice", "alice-new-1", actor="alice", at=T0)
    with pytest.raises(Refusal) as refusal:
        operators.set_password(db, "carol", "carol-new-1", actor="alice", at=T0)
    assert refusal.value.code == "role"
    _add(db, "mallory", "operator", actor="admin")
    # A disabled admin is no admin.
    _add(db, "admin2", "admin")
    operators.disable(db, "admin2", actor="admin", at=T0)
    with pytest.raises(Refusal) as refusal:
        operators.disable(db, "alice", actor="admin2", at=T0)
    assert refusal.value.code == "disabled"
    assert [o.name for o in operators.list_operators(db, include_disabled=False)] == [
        "admin",
        "alice",
        "carol",
        "mallory",
    ]


def test_the_last_admin_cannot_be_disabled_or_demoted(db: sqlite_utils.Database) -> None:
    _add(db, "admin", "admin")
    for change in (
        lambda: operators.disable(db, "admin", actor=ROOT, at=T0),
        lambda: operators.set_role(db, "admin", "supervisor", actor=ROOT, at=T0),
    ):
        with pytest.raises(Refusal) as refusal:
            change()
        assert refusal.value.code == "last_admin"
    _add(db, "root2", "admin")
    operators.set_role(db, "admin", "supervisor", actor=ROOT, at=T0)
    with pytest.raises(Refusal) as same:
        operators.set_role(db, "admin", "supervisor", actor=ROOT, at=T0)
    assert same.value.code == "no_effect"


def test_a_change_whose_audit_row_fails_is_not_kept(
    db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(db, "alice", "operator")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "append", broken)
    with pytest.raises(RuntimeError):
        operators.disable(db, "alice", actor=ROOT, at=T0)
    with pytest.raises(RuntimeError):
        _add(db, "bob", "operator")
    assert not operators.get_operator(db, "alice").disabled  # type: ignore[union-attr]
    assert operators.get_operator(db, "bob") is None


def test_raised_parameters_upgrade_a_hash_at_the_next_login(db: sqlite_utils.Database) -> None:
    weak = ScryptParams(n=2**8, r=4, p=1)
    operators.add_operator(db, "alice", "operator", "alice-secret", actor=ROOT, at=T0, params=weak)
    old = db.conn.execute("SELECT salt, password_hash FROM operators").fetchone()
    operators.authenticate(db, "alice", "alice-secret", at=T0)
    row = db.conn.execute(
        "SELECT salt, password_hash, scrypt_n, scrypt_r, scrypt_p FROM operators"
    ).fetchone()
    assert row[2:] == (CHEAP.n, CHEAP.r, CHEAP.p)
    assert row[:2] != old
    assert audit.rows(db, limit=1)[0].after_value()["rehashed"] == {"n": 2**10, "r": 8, "p": 1}
    assert operators.authenticate(db, "alice", "alice-secret", at=T0).name == "alice"


def test_roles_are_ordered() -> None:
    alice = operators.Operator("alice", "operator", False, "", "")
    assert alice.has_role("viewer") and alice.has_role("operator")
    assert not alice.has_role("supervisor") and not alice.has_role("admin")
    with pytest.raises(InputError):
        alice.has_role("boss")


def test_require_role(db: sqlite_utils.Database) -> None:
    _add(db, "carol", "supervisor")
    assert operators.require_role(db, "carol", "operator").name == "carol"
    for name, minimum, code in (
        ("carol", "admin", "role"),
        ("ghost", "viewer", "unknown_operator"),
    ):
        with pytest.raises(Refusal) as refusal:
            operators.require_role(db, name, minimum)
        assert refusal.value.code == code


def test_demo_identities_log_in_with_their_documented_passwords(
    db: sqlite_utils.Database,
) -> None:
    added = operators.ensure_demo_operators(db, at=T0)
    assert added == [d.name for d in operators.DEMO_IDENTITIES]
    roles = {d.role for d in operators.DEMO_IDENTITIES}
    assert roles == set(operators.ROLES)
    assert sum(d.role == "supervisor" for d in operators.DEMO_IDENTITIES) >= 2
    docs = DOCS.read_text()
    for identity in operators.DEMO_IDENTITIES:
        who = operators.authenticate(db, identity.name, identity.password, at=T0)
        assert who.role == identity.role
        row = rf"\|\s*`{identity.name}`\s*\|\s*{identity.role}\s*\|\s*`{identity.password}`\s*\|"
        assert re.search(row, docs), f"docs/operators.md does not list {identity}"
    assert operators.ensure_demo_operators(db, at=T0) == []
    assert audit.verify(db).ok


def test_demo_identities_never_join_a_store_with_operators(db: sqlite_utils.Database) -> None:
    _add(db, "admin", "admin")
    assert operators.ensure_demo_operators(db, at=T0) == []
    assert [o.name for o in operators.list_operators(db)] == ["admin"]
    with pytest.raises(Refusal):
        operators.authenticate(db, "admin", "admin-demo", at=T0)
