"""The append-only audit log, chained by HMAC with a key kept outside the store: appending rows,
reading them for the audit view, and verifying the chain (naming the first row that was changed,
removed, inserted, moved or added without the key; checking the triggers and anchored heads).

One module past 500 lines: appending and verifying must agree on every byte a row's HMAC
covers, so they stay side by side."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlite_utils

from core.desk.audit_key import KEY_ENV, Anchor, key_path, load_key
from core.model.errors import InputError
from core.model.operations import Refusal
from core.model.text import require_visible

# prev_hash of the first row: the chain starts from a fixed, documented value.
GENESIS_HASH = "0" * 64
# Fields covered by a row's hash, in the order they appear in the canonical JSON (sorted anyway).
HASHED_FIELDS = ("seq", "at", "operator", "kind", "subject", "reason", "before", "after")
_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COLUMNS = "seq, at, operator, kind, subject, reason, before, after, prev_hash, hash"
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")


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
    """The outcome of `verify`: `broken_seq` names the first broken row, if any, and `problem`
    what is wrong (a row, the triggers, the table, an anchor). `legacy_rows` counts the unkeyed
    rows at the start of a chain that was keyed later (written before keyed chains)."""

    rows: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None
    legacy_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.broken_seq is None and self.problem is None

    def message(self) -> str:
        if self.ok:
            legacy = f" ({self.legacy_rows} legacy rows before keying)" if self.legacy_rows else ""
            return f"audit log sound: {self.rows} rows, head {self.head_hash}{legacy}"
        if self.broken_seq is None:
            return f"audit log unsound: {self.problem}"
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


def row_hash(prev_hash: str, fields: dict[str, Any], key: bytes | None = None) -> str:
    """HMAC-SHA256 hex, under `key`, of prev_hash followed by the canonical JSON of the row's
    HASHED_FIELDS; plain sha256 of the same bytes without a key (the unkeyed legacy chain)."""
    payload = (prev_hash + canonical_json({name: fields[name] for name in HASHED_FIELDS})).encode()
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _signed(entry: AuditEntry, key: bytes | None) -> str | None:
    """Whether the row's hash is its HMAC under `key` ("keyed") or its plain sha256 ("plain")."""
    try:
        fields = {name: getattr(entry, name) for name in HASHED_FIELDS}
        if key is not None and hmac.compare_digest(
            row_hash(entry.prev_hash, fields, key), entry.hash
        ):
            return "keyed"
        if row_hash(entry.prev_hash, fields) == entry.hash:
            return "plain"
    except (InputError, TypeError):
        pass
    return None


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
    a BEGIN is no transaction). Cost: one primary-key lookup of the head, a read of the key file,
    one HMAC of the head and one INSERT. Pass `before`/`after` as plain JSON values (dicts, lists,
    strings, numbers, Decimals); they are stored as canonical JSON, and None is stored as NULL.

    Keying: each row is hashed with the HMAC key of core.desk.audit_key (created with the first row of a
    new log). A log whose last row is unkeyed (a store from before keyed chains) or was written with
    another key is an InputError naming the audit key: nothing is written (see `seal`)."""
    return _append(
        db,
        at=at,
        operator=operator,
        kind=kind,
        subject=subject,
        reason=reason,
        before=before,
        after=after,
    )


def _append(
    db: sqlite_utils.Database,
    *,
    at: datetime | str,
    operator: str,
    kind: str,
    subject: str,
    reason: str,
    before: Any,
    after: Any,
    seal: bool = False,
) -> AuditEntry:
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
            f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        head = None if last is None else AuditEntry(*last)
        key = _writing_key(head, seal=seal)
        seq, prev_hash = (1, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
        fields["seq"] = seq
        entry = AuditEntry(prev_hash=prev_hash, hash=row_hash(prev_hash, fields, key), **fields)
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


def _writing_key(head: AuditEntry | None, *, seal: bool) -> bytes:
    """The key to hash the next row with, after checking that the head was hashed with it."""
    path = key_path()
    key = load_key(path)
    signed = None if head is None else _signed(head, key)
    if head is None or (signed == "plain" and seal):
        key = key or load_key(path, create=True)
        assert key is not None
        return key
    if signed == "plain":
        raise InputError(
            "audit key",
            "this store's audit log is not keyed (written before keyed chains): check it with "
            "`risk-console audit verify STORE`, then key it with `risk-console audit seal STORE`",
        )
    if key is None:
        raise InputError(
            "audit key",
            f"no audit key at {path}: this log was keyed with a key kept elsewhere; copy that "
            f"key file here or point {KEY_ENV} at it",
        )
    if signed != "keyed":
        raise InputError(
            "audit key",
            f"the audit log's last row ({head.seq}) does not match the key at {path}: the log was "
            "keyed with another key, or the row was changed; run `risk-console audit verify`",
        )
    return key


def seal(
    db: sqlite_utils.Database, *, at: datetime | str, operator: str, reason: str = ""
) -> AuditEntry:
    """Key a log written before keyed chains: one keyed row naming how many unkeyed rows it
    vouches for and their head. Check the log first (`verify`, ideally against a head recorded
    elsewhere): the seal makes its rows as trusted as keyed ones."""
    with atomic(db):
        last = db.conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1")
        row = last.fetchone()
        if row is None:
            raise Refusal("no_effect", "the audit log is empty: its first row will be keyed")
        head = AuditEntry(*row)
        if _signed(head, None) != "plain":
            raise Refusal("no_effect", "the audit log's last row is not an unkeyed legacy row")
        return _append(
            db,
            at=at,
            operator=operator,
            kind="audit",
            subject="audit_log",
            reason=reason or "legacy audit log keyed",
            before=None,
            after={"legacy_rows": head.seq, "legacy_head": head.hash},
            seal=True,
        )


def _text(value: object, field: str, *, allow_empty: bool = False) -> str:
    # Whitespace or invisible characters only (a zero-width space) would pass for a reason while
    # saying nothing; an empty reason is allowed where the row's kind says it all.
    if allow_empty and value == "":
        return value
    return require_visible(value, field)


def _kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InputError(
            "kind", f"expected a lower-case word such as login, action or settings, got {kind!r}"
        )
    return kind


def verify(
    db: sqlite_utils.Database,
    *,
    expected_head: str | None = None,
    anchors: Sequence[Anchor] = (),
    key: bytes | None = None,
) -> VerifyResult:
    """Walk the chain in seq order and name the first broken row; then check the triggers, the
    expected head and each anchor. `key` defaults to the key file's (core.desk.audit_key).

    A row is broken when its seq is not the previous one plus one (a row removed: the missing seq
    is named), its prev_hash is not the previous row's hash (rows removed and renumbered, inserted
    or moved), its hash matches neither its HMAC nor (before the first keyed row) its plain
    sha256 (changed), or it is unkeyed after a keyed row (added or re-hashed without the key). A
    chain with rows but no keyed row is unsound: a legacy store, or one rewritten without the key.
    Rows cut from the end and a chain rewritten whole are caught by an anchor (or `expected_head`,
    which must be the hash of some row)."""
    if expected_head is not None and not _HEX64.match(expected_head):
        raise InputError("expected_head", "expected a sha256 hex digest (64 lower-case hex digits)")
    if key is None:
        try:
            key = load_key()
        except InputError as error:  # a key others can read, or not a key: said, not raised
            return VerifyResult(0, GENESIS_HASH, problem=str(error))
    try:
        cursor = db.conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")
    except sqlite3.OperationalError as error:
        if "no such table" not in str(error):
            raise
        return VerifyResult(0, GENESIS_HASH, problem="the store has no audit_log table (dropped)")
    anchored = {anchor.rows for anchor in anchors}
    hashes = {0: GENESIS_HASH}
    prev_hash, expected_seq, count, legacy, keyed = GENESIS_HASH, 1, 0, 0, False
    seen_expected = expected_head is None or expected_head == GENESIS_HASH
    for row in cursor:
        entry = AuditEntry(*row)
        problem, broken = _check(entry, expected_seq, prev_hash)
        if problem is None:
            signed = _signed(entry, key)
            problem = _keying_problem(signed, keyed, key)
        if problem is None:
            keyed, legacy = keyed or signed == "keyed", legacy + (signed == "plain")
        else:
            cursor.close()
            return VerifyResult(count, prev_hash, broken, _with_triggers(db, problem), legacy)
        prev_hash, expected_seq, count = entry.hash, entry.seq + 1, count + 1
        seen_expected = seen_expected or entry.hash == expected_head
        if entry.seq in anchored:
            hashes[entry.seq] = entry.hash
    if count and not keyed:
        problem = (
            f"no row of the {count} is keyed: a store written before keyed chains (check it, then "
            "`audit seal` it) or a chain rewritten without the key"
        )
        return VerifyResult(count, prev_hash, None, _with_triggers(db, problem), legacy)
    if not seen_expected:
        problem = (
            f"no row has the expected head hash {expected_head}: rows were removed from the end"
        )
        return VerifyResult(count, prev_hash, expected_seq, _with_triggers(db, problem), legacy)
    for anchor in anchors:
        if anchor.rows > count:
            problem = (
                f"the anchor of {anchor.at} records {anchor.rows} rows (head {anchor.head}), the "
                f"log has {count}: rows were removed from the end"
            )
            return VerifyResult(count, prev_hash, count + 1, _with_triggers(db, problem), legacy)
        if hashes[anchor.rows] != anchor.head:
            problem = (
                f"its hash differs from the anchor of {anchor.at} ({anchor.head}): the chain was "
                "rewritten up to here"
            )
            return VerifyResult(count, prev_hash, anchor.rows, _with_triggers(db, problem), legacy)
    return VerifyResult(count, prev_hash, None, _with_triggers(db, None), legacy)


def _keying_problem(signed: str | None, keyed_before: bool, key: bytes | None) -> str | None:
    if signed == "keyed" or (signed == "plain" and not keyed_before):
        return None
    if signed == "plain":
        return "the row is not keyed though rows before it are: added or re-hashed without the key"
    if key is None:
        return f"the row is keyed and there is no audit key at {key_path()} to check it"
    return "content does not match its hash (the row was changed, or keyed with another key)"


def _with_triggers(db: sqlite_utils.Database, problem: str | None) -> str | None:
    """`problem` with the missing append-only triggers added to it, if any are missing."""
    missing = missing_triggers(db)
    if not missing:
        return problem
    dropped = f"the append-only triggers are missing ({', '.join(missing)}): someone dropped them"
    return dropped if problem is None else f"{problem}; {dropped}"


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


def missing_triggers(db: sqlite_utils.Database) -> list[str]:
    """The append-only triggers (refusing UPDATE and DELETE on the log) the store lacks."""
    names = {
        row[0]
        for row in db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
        )
    }
    return [name for name in TRIGGERS if name not in names]


def is_append_only(db: sqlite_utils.Database) -> bool:
    """True when the store's triggers refuse UPDATE and DELETE on the log."""
    return not missing_triggers(db)
