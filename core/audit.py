"""The append-only, hash-chained audit log: appending rows, reading them for the audit view, and
verifying the chain (naming the first row that was changed, removed, inserted or moved)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlite_utils

from core.errors import InputError

# prev_hash of the first row: the chain starts from a fixed, documented value.
GENESIS_HASH = "0" * 64
# Fields covered by a row's hash, in the order they appear in the canonical JSON (sorted anyway).
HASHED_FIELDS = ("seq", "at", "operator", "kind", "subject", "reason", "before", "after")
_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COLUMNS = "seq, at, operator, kind, subject, reason, before, after, prev_hash, hash"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the log. `before` and `after` are canonical JSON text (None when absent)."""

    seq: int
    at: str
    operator: str
    kind: str
    subject: str
    reason: str
    before: str | None
    after: str | None
    prev_hash: str
    hash: str

    def before_value(self) -> Any:
        return None if self.before is None else json.loads(self.before)

    def after_value(self) -> Any:
        return None if self.after is None else json.loads(self.after)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `verify`: `broken_seq` and `problem` name the first broken row, if any."""

    rows: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None

    def message(self) -> str:
        if self.ok:
            return f"audit log sound: {self.rows} rows, head {self.head_hash}"
        return f"audit log broken at row {self.broken_seq}: {self.problem}"


def canonical_json(value: Any, field: str = "value") -> str:
    """The one JSON spelling of a value that hashes reproducibly: sorted keys, no spaces, UTF-8.

    Decimals are written as their exact string and datetimes in ISO UTC; NaN and infinities, and
    any other type, are an InputError naming `field`."""
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as error:
        raise InputError(field, f"not representable as JSON ({error})") from None


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value, "value")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def format_time(at: datetime | str, field: str = "at") -> str:
    """ISO 8601 UTC with milliseconds (`2018-07-31T10:00:00.000Z`), so strings sort as times."""
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.replace("Z", "+00:00") if at.endswith("Z") else at)
        except ValueError:
            raise InputError(field, f"{at!r} is not an ISO 8601 time") from None
    if not isinstance(at, datetime):
        raise InputError(field, f"expected a time, got {type(at).__name__}")
    if at.tzinfo is None:
        raise InputError(field, "a time needs its time zone (UTC)")
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 hex of prev_hash followed by the canonical JSON of the row's HASHED_FIELDS."""
    payload = canonical_json({name: fields[name] for name in HASHED_FIELDS})
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


@contextmanager
def atomic(db: sqlite_utils.Database) -> Iterator[None]:
    """All-or-nothing block that leaves the caller's transaction to the caller.

    Inside an open transaction it is a savepoint (the caller's COMMIT or ROLLBACK decides);
    otherwise it is its own BEGIN IMMEDIATE ... COMMIT, taking the write lock before reading so
    two writers cannot both read the same head of the chain."""
    conn = db.conn
    if conn.in_transaction:
        conn.execute("SAVEPOINT audit_atomic")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO SAVEPOINT audit_atomic")
                conn.execute("RELEASE SAVEPOINT audit_atomic")
            raise
        conn.execute("RELEASE SAVEPOINT audit_atomic")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def head_hash(db: sqlite_utils.Database) -> str:
    """Hash of the last row, or GENESIS_HASH for an empty log (the next row's prev_hash)."""
    row = db.conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return GENESIS_HASH if row is None else str(row[0])


def append(
    db: sqlite_utils.Database,
    *,
    at: datetime | str,
    operator: str,
    kind: str,
    subject: str,
    reason: str = "",
    before: Any = None,
    after: Any = None,
) -> AuditEntry:
    """Append one row and return it. Bad input is an InputError naming the field; nothing is written.

    Transactions: append never commits a transaction it did not open. Called inside the caller's
    open transaction (`with db.conn:` after `BEGIN IMMEDIATE`, or `with db.atomic():`), the row is
    part of it: kept when the caller commits, gone when the caller rolls back. Called outside one,
    it commits the row by itself (the connection is in autocommit mode, so `with db.conn:` without
    a BEGIN is no transaction). Cost: one primary-key lookup of the head and one INSERT. Pass
    `before`/`after` as plain JSON values (dicts, lists, strings, numbers, Decimals); they are
    stored as canonical JSON, and None is stored as NULL."""
    fields: dict[str, Any] = {
        "at": format_time(at),
        "operator": _text(operator, "operator"),
        "kind": _kind(kind),
        "subject": _text(subject, "subject"),
        "reason": _text(reason, "reason", allow_empty=True),
        "before": None if before is None else canonical_json(before, "before"),
        "after": None if after is None else canonical_json(after, "after"),
    }
    with atomic(db):
        last = db.conn.execute(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
        fields["seq"] = seq
        entry = AuditEntry(prev_hash=prev_hash, hash=row_hash(prev_hash, fields), **fields)
        db.conn.execute(
            f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.seq,
                entry.at,
                entry.operator,
                entry.kind,
                entry.subject,
                entry.reason,
                entry.before,
                entry.after,
                entry.prev_hash,
                entry.hash,
            ),
        )
    return entry


def _text(value: object, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InputError(field, f"expected text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InputError(field, "must not be empty")
    return value


def _kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InputError(
            "kind", f"expected a lower-case word such as login, action or settings, got {kind!r}"
        )
    return kind


def verify(db: sqlite_utils.Database, *, expected_head: str | None = None) -> VerifyResult:
    """Walk the chain in seq order and name the first broken row.

    A row is broken when its seq is not the previous one plus one (a row removed: the missing seq
    is named), its prev_hash is not the previous row's hash (rows removed and renumbered, inserted
    or moved), or its hash does not match its own content (changed). The chain alone cannot show
    that rows were cut from its end: compare the head hash with one recorded elsewhere, or pass
    it as `expected_head`, which must then be the hash of some row of the chain."""
    if expected_head is not None and not _HEX64.match(expected_head):
        raise InputError("expected_head", "expected a sha256 hex digest (64 lower-case hex digits)")
    cursor = db.conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    seen_expected = expected_head is None or expected_head == GENESIS_HASH
    for row in cursor:
        entry = AuditEntry(*row)
        problem, broken = _check(entry, expected_seq, prev_hash)
        if problem is not None:
            cursor.close()
            return VerifyResult(count, prev_hash, broken, problem)
        prev_hash, expected_seq, count = entry.hash, entry.seq + 1, count + 1
        seen_expected = seen_expected or entry.hash == expected_head
    if not seen_expected:
        return VerifyResult(
            count,
            prev_hash,
            expected_seq,
            f"no row has the expected head hash {expected_head}: rows were removed from the end",
        )
    return VerifyResult(count, prev_hash)


def _check(entry: AuditEntry, expected_seq: int, prev_hash: str) -> tuple[str | None, int]:
    if entry.seq != expected_seq:
        if entry.seq > expected_seq:
            return (
                f"row {expected_seq} is missing: seq goes from {expected_seq - 1} to {entry.seq}",
                expected_seq,
            )
        return f"seq {entry.seq} is out of order: row {expected_seq} was expected", entry.seq
    if entry.prev_hash != prev_hash:
        previous = "the start of the chain" if entry.seq == 1 else f"row {entry.seq - 1}"
        return (
            f"prev_hash does not match the hash of {previous} "
            "(a row before it was changed and re-hashed, removed, inserted or moved)",
            entry.seq,
        )
    try:
        fields = {name: getattr(entry, name) for name in HASHED_FIELDS}
        computed = row_hash(entry.prev_hash, fields)
    except InputError:
        computed = ""
    if computed != entry.hash:
        return "content does not match its hash (the row was changed)", entry.seq
    return None, entry.seq


def rows(
    db: sqlite_utils.Database,
    *,
    operator: str | None = None,
    kind: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int = 200,
    offset: int = 0,
    newest_first: bool = True,
) -> list[AuditEntry]:
    """Rows for the audit view, filtered; `since` is inclusive and `until` exclusive."""
    if not isinstance(limit, int) or not 0 < limit <= 100_000:
        raise InputError("limit", "expected a whole number from 1 to 100000")
    if not isinstance(offset, int) or offset < 0:
        raise InputError("offset", "expected a whole number, 0 or more")
    where, params = _filters(operator, kind, since, until)
    order = "DESC" if newest_first else "ASC"
    sql = f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY seq {order} LIMIT ? OFFSET ?"
    return [AuditEntry(*row) for row in db.conn.execute(sql, [*params, limit, offset])]


def count(
    db: sqlite_utils.Database,
    *,
    operator: str | None = None,
    kind: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> int:
    """How many rows `rows` would page through with the same filters."""
    where, params = _filters(operator, kind, since, until)
    return int(db.conn.execute(f"SELECT count(*) FROM audit_log{where}", params).fetchone()[0])


def _filters(
    operator: str | None,
    kind: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if operator is not None:
        clauses.append("operator = ?")
        params.append(operator)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(_kind(kind))
    if since is not None:
        clauses.append("at >= ?")
        params.append(format_time(since, "since"))
    if until is not None:
        clauses.append("at < ?")
        params.append(format_time(until, "until"))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def is_append_only(db: sqlite_utils.Database) -> bool:
    """True when the store's triggers refuse UPDATE and DELETE on the log."""
    names = {
        row[0]
        for row in db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
        )
    }
    return {"audit_log_no_update", "audit_log_no_delete"} <= names
