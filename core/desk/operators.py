"""Operator identities in the store: roles, scrypt password hashes, login (throttled by
core.desk.logins), and the changes an admin makes to them, each written to the audit log in the same
transaction.

One module past 500 lines: every change to an identity and its audit row share one
transaction."""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from core.desk import audit, logins
from core.desk.names import look_alike
from core.model.errors import InputError
from core.model.operations import Refusal
from core.model.passwords import (
    DEFAULT_SCRYPT,
    ScryptParams,
    given_password_bytes,
    password_bytes,
    scrypt,
)

ROLES = ("viewer", "operator", "supervisor", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
# Actors that act through direct access to the store file rather than as a logged-in operator:
# the program itself (demo set-up) and the command line ("local:" + the OS user name). Neither
# can collide with an operator, whose name cannot be "system" or contain a colon.
SYSTEM = "system"
LOCAL_PREFIX = "local:"
# Matched whole (fullmatch; \Z also for `match`): "$" would match before a trailing newline. ASCII
# only, so no two names differ by case or by Unicode look-alikes (docs/operators.md).
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}\Z")
_RESERVED = frozenset({SYSTEM})
_SALT_BYTES = 16


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: str
    disabled: bool
    created_at: str
    updated_at: str

    def has_role(self, minimum: str) -> bool:
        """True when this operator's role is `minimum` or above it (viewer < ... < admin)."""
        return RANK[self.role] >= RANK[_role(minimum)]


@dataclass(frozen=True, slots=True)
class DemoIdentity:
    name: str
    role: str
    password: str


# Documented in docs/operators.md. Added only to a store that has no operators yet.
DEMO_IDENTITIES = (
    DemoIdentity("vera", "viewer", "vera-demo"),
    DemoIdentity("alice", "operator", "alice-demo"),
    DemoIdentity("bob", "operator", "bob-demo"),
    DemoIdentity("carol", "supervisor", "carol-demo"),
    DemoIdentity("dave", "supervisor", "dave-demo"),
    DemoIdentity("admin", "admin", "admin-demo"),
)


def local_actor(user: str) -> str:
    """The actor recorded for a command run against the store file by OS user `user`."""
    return LOCAL_PREFIX + (user or "unknown")


def valid_name(name: str) -> bool:
    """True when `name` is, whole, a name an operator may have (not `system`)."""
    return _NAME.fullmatch(name) is not None and name not in _RESERVED


def _look_alike(db: sqlite_utils.Database, name: str) -> None:
    names = (str(row[0]) for row in db.conn.execute("SELECT name FROM operators"))
    other = look_alike(name, names)
    if other is not None:
        raise InputError(
            "name", f"{name!r} looks like the existing operator {other!r}: choose another"
        )


def _name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError(field, "an operator name must not be empty")
    if not _NAME.fullmatch(name):
        raise InputError(
            field,
            f"{name!r} is not a valid operator name: 1-32 lower-case letters, digits, '_', '.' or "
            "'-', starting with a letter or digit",
        )
    if name in _RESERVED:
        raise InputError(field, f"{name!r} is reserved")
    return name


def _role(role: object) -> str:
    if role not in RANK:
        raise InputError("role", f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return str(role)


def hash_password(
    password: str, params: ScryptParams | None = None, salt: bytes | None = None
) -> tuple[str, str]:
    """(salt hex, hash hex) of `password` (DEFAULT_SCRYPT unless `params` is given); a fresh
    random salt unless one is given."""
    params = params or DEFAULT_SCRYPT
    if not params.valid():
        raise InputError("params", f"scrypt parameters out of range: {params}")
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    return salt.hex(), scrypt(password_bytes(password), salt, params).hex()


def _operator(row: tuple[object, ...]) -> Operator:
    name, role, disabled, created_at, updated_at = row
    return Operator(
        str(name), str(role), bool(disabled), str(created_at or ""), str(updated_at or "")
    )


_SELECT = "SELECT name, role, disabled, created_at, updated_at FROM operators"


def get_operator(db: sqlite_utils.Database, name: str) -> Operator | None:
    row = db.conn.execute(f"{_SELECT} WHERE name = ?", (name,)).fetchone()
    return None if row is None else _operator(row)


def list_operators(db: sqlite_utils.Database, *, include_disabled: bool = True) -> list[Operator]:
    where = "" if include_disabled else " WHERE disabled = 0"
    return [_operator(row) for row in db.conn.execute(f"{_SELECT}{where} ORDER BY name")]


def require_role(db: sqlite_utils.Database, name: str, minimum: str) -> Operator:
    """The enabled operator `name` when their role is `minimum` or above; a Refusal otherwise."""
    operator = get_operator(db, name)
    if operator is None:
        raise Refusal("unknown_operator", f"unknown operator {name!r}")
    if operator.disabled:
        raise Refusal("disabled", f"operator {name} is disabled")
    if not operator.has_role(minimum):
        raise Refusal("role", f"{name} has the {operator.role} role; this needs {minimum}")
    return operator


def _authorize(db: sqlite_utils.Database, actor: str, *, self_name: str | None = None) -> None:
    """Operator management needs an enabled admin, direct access to the file, or (for one's own
    password) the operator themself."""
    if not isinstance(actor, str) or not actor:
        raise InputError("actor", "the operator making the change must be named")
    if actor == SYSTEM or actor.startswith(LOCAL_PREFIX):
        return
    if self_name is not None and actor == self_name:
        require_role(db, actor, "viewer")
        return
    require_role(db, actor, "admin")


def _existing(db: sqlite_utils.Database, name: str) -> Operator:
    operator = get_operator(db, _name(name))
    if operator is None:
        raise InputError("name", f"no operator {name!r}")
    return operator


def _guard_last_admin(db: sqlite_utils.Database, operator: Operator) -> None:
    if operator.role != "admin" or operator.disabled:
        return
    admins = db.conn.execute(
        "SELECT count(*) FROM operators WHERE role = 'admin' AND disabled = 0"
    ).fetchone()[0]
    if admins <= 1:
        raise Refusal(
            "last_admin", f"{operator.name} is the last enabled admin; add another admin first"
        )


def _subject(name: str) -> str:
    return f"operator:{name}"


def _state(operator: Operator) -> dict[str, object]:
    return {"name": operator.name, "role": operator.role, "disabled": operator.disabled}


def add_operator(
    db: sqlite_utils.Database,
    name: str,
    role: str,
    password: str,
    *,
    actor: str,
    at: datetime | str,
    reason: str = "",
    params: ScryptParams | None = None,
) -> Operator:
    """Create an operator; an existing name, an unknown role or a short password is an InputError."""
    name, role = _name(name), _role(role)
    when = audit.format_time(at)
    _authorize(db, actor)
    if get_operator(db, name) is not None:
        raise InputError("name", f"operator {name} exists already")
    _look_alike(db, name)
    params = params or DEFAULT_SCRYPT
    salt, digest = hash_password(password, params)
    with audit.atomic(db):
        # Checked again inside the transaction: another process may have added it meanwhile.
        if get_operator(db, name) is not None:
            raise InputError("name", f"operator {name} exists already")
        _look_alike(db, name)
        db.conn.execute(
            "INSERT INTO operators (name, role, salt, password_hash, scrypt_n, scrypt_r, "
            "scrypt_p, disabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (name, role, salt, digest, params.n, params.r, params.p, when, when),
        )
        operator = Operator(name, role, False, when, when)
        audit.append(
            db,
            at=when,
            operator=actor,
            kind="operator",
            subject=_subject(name),
            reason=reason or "operator added",
            after=_state(operator),
        )
    return operator


def set_password(
    db: sqlite_utils.Database,
    name: str,
    password: str,
    *,
    actor: str,
    at: datetime | str,
    reason: str = "",
    params: ScryptParams | None = None,
) -> None:
    """Replace an operator's password (new salt, current scrypt parameters). An admin may set
    anyone's; an operator their own (the console asks for the old one first)."""
    when = audit.format_time(at)
    operator = _existing(db, name)
    _authorize(db, actor, self_name=operator.name)
    params = params or DEFAULT_SCRYPT
    salt, digest = hash_password(password, params)
    with audit.atomic(db):
        # Checked again under the write lock: the actor may have been disabled meanwhile.
        _authorize(db, actor, self_name=operator.name)
        _store_hash(db, operator.name, salt, digest, params, when)
        audit.append(
            db,
            at=when,
            operator=actor,
            kind="operator",
            subject=_subject(operator.name),
            reason=reason or "password changed",
            after={"password": "changed"},
        )


def _store_hash(
    db: sqlite_utils.Database, name: str, salt: str, digest: str, params: ScryptParams, when: str
) -> None:
    db.conn.execute(
        "UPDATE operators SET salt = ?, password_hash = ?, scrypt_n = ?, scrypt_r = ?, "
        "scrypt_p = ?, updated_at = ? WHERE name = ?",
        (salt, digest, params.n, params.r, params.p, when, name),
    )


def set_role(
    db: sqlite_utils.Database,
    name: str,
    role: str,
    *,
    actor: str,
    at: datetime | str,
    reason: str = "",
) -> Operator:
    when = audit.format_time(at)
    role = _role(role)
    # Checks and change in one write transaction, so two admins cannot both pass the last-admin
    # guard at once.
    with audit.atomic(db):
        operator = _existing(db, name)
        _authorize(db, actor)
        if operator.role == role:
            raise Refusal("no_effect", f"{operator.name} has the {role} role already")
        if role != "admin":
            _guard_last_admin(db, operator)
        return _update(db, operator, when, actor, reason or "role changed", role=role)


def disable(
    db: sqlite_utils.Database, name: str, *, actor: str, at: datetime | str, reason: str = ""
) -> Operator:
    """Stop an operator from logging in; their rows in the audit log stay as they are."""
    when = audit.format_time(at)
    with audit.atomic(db):
        operator = _existing(db, name)
        _authorize(db, actor)
        if operator.disabled:
            raise Refusal("no_effect", f"{operator.name} is disabled already")
        _guard_last_admin(db, operator)
        return _update(db, operator, when, actor, reason or "operator disabled", disabled=True)


def enable(
    db: sqlite_utils.Database, name: str, *, actor: str, at: datetime | str, reason: str = ""
) -> Operator:
    when = audit.format_time(at)
    with audit.atomic(db):
        operator = _existing(db, name)
        _authorize(db, actor)
        if not operator.disabled:
            raise Refusal("no_effect", f"{operator.name} is enabled already")
        return _update(db, operator, when, actor, reason or "operator enabled", disabled=False)


def _update(
    db: sqlite_utils.Database,
    operator: Operator,
    when: str,
    actor: str,
    reason: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
) -> Operator:
    changed = Operator(
        operator.name,
        operator.role if role is None else role,
        operator.disabled if disabled is None else disabled,
        operator.created_at,
        when,
    )
    with audit.atomic(db):
        db.conn.execute(
            "UPDATE operators SET role = ?, disabled = ?, updated_at = ? WHERE name = ?",
            (changed.role, int(changed.disabled), when, changed.name),
        )
        audit.append(
            db,
            at=when,
            operator=actor,
            kind="operator",
            subject=_subject(operator.name),
            reason=reason,
            before=_state(operator),
            after=_state(changed),
        )
    return changed


# Hashed when the name is unknown, so that a login costs the same whether or not the name exists.
_DUMMY_SALT = bytes(_SALT_BYTES)


def authenticate(
    db: sqlite_utils.Database, name: str, password: str, *, at: datetime | str
) -> Operator:
    """The operator when `password` is theirs and they are enabled; a Refusal otherwise
    (`unknown_operator`, `wrong_password`, `disabled`, and from core.desk.logins `too_soon` during
    the delay after a failure, `locked` after LOCKOUT_AFTER failures in a row). Success and
    failure are both audited.

    Unknown name and wrong password give the same reason text, so the login dialog does not
    reveal which names exist; only the code (and the audit log) tells them apart."""
    when = audit.format_time(at)
    if not isinstance(name, str) or not name.strip():
        raise InputError("name", "an operator name must not be empty")
    secret = given_password_bytes(password)
    logins.refuse_early(db, name, when)
    row = None
    if _NAME.match(name):
        row = db.conn.execute(
            "SELECT salt, password_hash, scrypt_n, scrypt_r, scrypt_p FROM operators "
            "WHERE name = ?",
            (name,),
        ).fetchone()
    if row is None:
        scrypt(secret, _DUMMY_SALT, DEFAULT_SCRYPT)
        raise logins.refused(db, name, when, "unknown_operator")
    salt, stored, n, r, p = row
    params = ScryptParams(int(n), int(r), int(p))
    if not params.valid():
        raise logins.refused(db, name, when, "stored_hash")
    computed = scrypt(secret, bytes.fromhex(str(salt)), params)
    if not hmac.compare_digest(computed, bytes.fromhex(str(stored))):
        raise logins.refused(db, name, when, "wrong_password")
    operator = get_operator(db, name)
    assert operator is not None
    if operator.disabled:
        raise logins.refused(db, name, when, "disabled")
    after: dict[str, object] = {"result": "ok", "role": operator.role}
    with audit.atomic(db):
        if params.weaker_than(DEFAULT_SCRYPT):
            fresh = os.urandom(_SALT_BYTES)
            digest = scrypt(secret, fresh, DEFAULT_SCRYPT).hex()
            _store_hash(db, name, fresh.hex(), digest, DEFAULT_SCRYPT, when)
            after["rehashed"] = {
                "n": DEFAULT_SCRYPT.n,
                "r": DEFAULT_SCRYPT.r,
                "p": DEFAULT_SCRYPT.p,
            }
        audit.append(
            db,
            at=when,
            operator=name,
            kind="login",
            subject=_subject(name),
            reason="login",
            after=after,
        )
    return operator


def unlock(
    db: sqlite_utils.Database, name: str, *, actor: str, at: datetime | str, reason: str = ""
) -> int:
    """Lift the lockout (or the delay) of `name` after failed logins: an admin's change, or one
    made through the store file. Audited; returns the failures it cleared."""
    when = audit.format_time(at)
    with audit.atomic(db):
        operator = _existing(db, name)
        _authorize(db, actor)
        current = logins.state(db, operator.name)
        if not current.failures:
            raise Refusal("no_effect", f"{operator.name} has no failed logins to clear")
        audit.append(
            db,
            at=when,
            operator=actor,
            kind="login",
            subject=logins.subject(operator.name),
            reason=reason or "lockout lifted",
            before={"failures": current.failures, "locked": current.locked},
            after={"result": "unlocked"},
        )
    return current.failures


def ensure_demo_operators(db: sqlite_utils.Database, *, at: datetime | str) -> list[str]:
    """Add the documented demo identities to a store that has no operators yet; return the names
    added. A store with any operator is left alone: known demo passwords must never appear beside
    real identities."""
    if db.conn.execute("SELECT count(*) FROM operators").fetchone()[0]:
        return []
    with audit.atomic(db):
        for identity in DEMO_IDENTITIES:
            add_operator(
                db,
                identity.name,
                identity.role,
                identity.password,
                actor=SYSTEM,
                at=at,
                reason="demo identity",
            )
    return [identity.name for identity in DEMO_IDENTITIES]
