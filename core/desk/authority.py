"""Who may give a journaled command, checked where it applies: the command's origin (its login and
its audit entry; with the feed, its signature) and its operator's role and enabled state in the
store's operators table at that moment. Also the journal check behind `audit verify`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlite_utils

from core.desk.operators import get_operator, valid_name
from core.desk.requests import audit_kind
from core.model.operations import Refusal
from core.model.scenario_values import Authority

# The login a command was given under: the seq of its `login` row in the audit log.
LOGIN_FIELD = "x-login"
# The command's journal row, named in its audit entry's `after`.
JOURNAL_FIELD = "journal"
ROLE_FIELD = "x-role"
THRESHOLDS_FIELD = "x-thresholds"
_COMMAND_KINDS = ("action", "request", "approval", "rejection")
_MAX_ERROR = 200

# Proves where a command came from, or says why it cannot: (store, journal row, command).
OriginCheck = Callable[[sqlite_utils.Database, int, dict[str, Any]], Refusal | None]


def latest_login(db: sqlite_utils.Database, name: str) -> int | None:
    """The seq of `name`'s last successful login in the audit log, if any."""
    row = db.conn.execute(
        "SELECT seq FROM audit_log WHERE kind = 'login' AND operator = ? "
        "AND json_extract(after, '$.result') = 'ok' ORDER BY seq DESC LIMIT 1",
        (name,),
    ).fetchone()
    return None if row is None else int(row[0])


def audit_after(command: dict[str, Any], seq: int) -> dict[str, Any]:
    """The `after` of a command's audit entry: its fields but operator and reason (the entry's
    own columns), and its journal row."""
    after = {k: v for k, v in command.items() if k not in ("operator", "reason")}
    after[JOURNAL_FIELD] = seq
    return after


def logged_in_and_audited(
    db: sqlite_utils.Database, seq: int, command: dict[str, Any]
) -> Refusal | None:
    """A console or command-line command proves its origin by its audit entry (same operator,
    reason and fields, naming its journal row) and by the successful login of the same operator
    that the command names, written before that entry."""
    name = command.get("operator")
    entry = db.conn.execute(
        "SELECT seq, operator, kind, reason, after FROM audit_log "
        f"WHERE kind IN ({', '.join('?' * len(_COMMAND_KINDS))}) "
        "AND json_extract(after, '$.journal') = ?",
        (*_COMMAND_KINDS, seq),
    ).fetchone()
    if entry is None:
        return Refusal(
            "no_audit",
            f"journal row {seq} has no audit entry: the command was not given through a login",
        )
    entry_seq, operator, kind, reason, after = entry
    same = (
        operator == name
        and reason == command.get("reason")
        and kind == audit_kind(str(command.get("action")))
        and json.loads(after) == audit_after(command, seq)
    )
    if not same:
        return Refusal("no_audit", f"journal row {seq} differs from its audit entry {entry_seq}")
    login = command.get(LOGIN_FIELD)
    row = None
    if isinstance(login, int) and not isinstance(login, bool) and login < entry_seq:
        row = db.conn.execute(
            "SELECT operator FROM audit_log WHERE seq = ? AND kind = 'login' "
            "AND json_extract(after, '$.result') = 'ok'",
            (login,),
        ).fetchone()
    if row is None or row[0] != name:
        return Refusal("no_login", f"journal row {seq} names no login of {name!r}")
    return None


# Run in order before the operator's standing is read. A command from the feed will prove its
# origin by its signature, through a check of the same shape.
ORIGIN_CHECKS: tuple[OriginCheck, ...] = (logged_in_and_audited,)


def authorize(
    db: sqlite_utils.Database,
    seq: int,
    command: dict[str, Any],
    origin_checks: tuple[OriginCheck, ...] = ORIGIN_CHECKS,
) -> Authority:
    """The authority journal command `seq` carries now: its operator's role, or a refusal."""
    for check in origin_checks:
        refusal = check(db, seq, command)
        if refusal is not None:
            return Authority(seq, code=refusal.code, reason=refusal.reason)
    name = command.get("operator")
    operator = get_operator(db, name) if isinstance(name, str) and valid_name(name) else None
    if operator is None:
        return Authority(seq, code="unknown_operator", reason=f"unknown operator {name!r}")
    if operator.disabled:
        return Authority(seq, code="disabled", reason=f"operator {operator.name} is disabled")
    return Authority(seq, role=operator.role)


def trusted(seq: int | None, command: dict[str, Any]) -> Authority | None:
    """A command of a run without a store: the caller is the authority, with the role it gave
    (none: the scenario's roles)."""
    role = command.get(ROLE_FIELD)
    return None if role is None else Authority(seq, role=str(role))


def failed(seq: int | None, error: BaseException) -> Authority:
    """The refusal of a command that raised while it applied (its effect was rolled back)."""
    text = f"{type(error).__name__}: {error}"
    if len(text) > _MAX_ERROR:
        text = text[: _MAX_ERROR - 3] + "..."
    return Authority(seq, code="apply_failed", reason=f"the command could not be applied ({text})")


def to_row(authority: Authority) -> dict[str, Any]:
    """The journal's `authority` row of a command."""
    if authority.code is not None:
        return {"command": authority.command, "code": authority.code, "reason": authority.reason}
    return {"command": authority.command, "role": authority.role}


def from_row(seq: int, row: dict[str, Any] | None) -> Authority:
    """The authority a replayed command carried; none recorded refuses it."""
    if row is None:
        return Authority(
            seq, code="no_authority", reason=f"journal row {seq} has no recorded authority"
        )
    if row.get("code") is not None:
        return Authority(seq, code=str(row["code"]), reason=str(row.get("reason", "")))
    return Authority(seq, role=None if row.get("role") is None else str(row["role"]))


def unproven_commands(db: sqlite_utils.Database) -> list[str]:
    """One line per journal command whose origin is not proven (no audit entry, no login), or
    that was applied with no recorded authority; empty for a sound journal."""
    if not db["journal"].exists():
        return []
    conn = db.conn
    head = conn.execute("SELECT max(tick) FROM journal WHERE kind = 'tick'").fetchone()[0]
    recorded = {
        int(json.loads(payload)["command"])
        for (payload,) in conn.execute("SELECT payload FROM journal WHERE kind = 'authority'")
    }
    problems = []
    for seq, tick, payload in conn.execute(
        "SELECT seq, tick, payload FROM journal WHERE kind = 'command' ORDER BY seq"
    ).fetchall():
        command = json.loads(payload)
        if THRESHOLDS_FIELD in command:
            continue
        what = f"command {command.get('operator')!r} {command.get('action')}"
        refusal = logged_in_and_audited(db, seq, command)
        if refusal is not None:
            problems.append(f"{what}: {refusal.reason}")
        elif head is not None and tick <= head and seq not in recorded:
            problems.append(f"{what}: journal row {seq} applied at tick {tick} with no authority")
    return problems
