"""The store's SQLite schema: every table with its indexes, the schema version and its migrations,
and opening a file with a clear error when it is not a store of this version."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from core.model import files
from core.model.errors import InputError, WriteError

SCHEMA_VERSION = 1
# PRAGMA application_id marks a file as ours: "RSKC".
APPLICATION_ID = 0x52534B43

INTEGER, TEXT, REAL, BLOB = int, str, float, bytes


def _create_v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": TEXT, "value": TEXT}, pk="key")
    db["instruments"].create(
        {
            "symbol": TEXT,
            "type": TEXT,
            "family": TEXT,
            "settle_currency": TEXT,
            "contract_value": TEXT,
            "tick_size": TEXT,
            "expiry": TEXT,
        },
        pk="symbol",
    )
    db["accounts"].create({"idx": INTEGER, "id": TEXT, "named": INTEGER}, pk="idx")
    # Inputs, in the order the engine took them: one `tick` row per tick and the operator
    # commands applied in it. Replaying them from a snapshot rebuilds the state exactly.
    db["journal"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "kind": TEXT,
            "payload": TEXT,
            "state_hash": TEXT,
        },
        pk="seq",
    )
    db["journal"].create_index(["tick"])
    db["snapshots"].create(
        {"tick": INTEGER, "time": TEXT, "state": BLOB, "digest": TEXT, "bytes": INTEGER},
        pk="tick",
    )
    # The result collector's events, each chunk those since the previous snapshot: a snapshot
    # would otherwise re-write every event of the run so far.
    db["event_chunks"].create({"tick": INTEGER, "events": BLOB, "digest": TEXT}, pk="tick")
    db["events"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "kind": TEXT,
            "account": TEXT,
            "symbol": TEXT,
            "currency": TEXT,
            "amount": INTEGER,
            "payload": TEXT,
        },
        pk="seq",
    )
    db["events"].create_index(["account", "tick"])
    db["liquidation_starts"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "account": TEXT,
            "symbol": TEXT,
            "side": TEXT,
            "contracts": INTEGER,
            "partial": INTEGER,
            "bankruptcy_price": REAL,
            "reserved": INTEGER,
            "currency": TEXT,
        },
        pk="seq",
    )
    db["liquidations"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "started": TEXT,
            "account": TEXT,
            "symbol": TEXT,
            "side": TEXT,
            "contracts": INTEGER,
            "partial": INTEGER,
            "fill_price": TEXT,
            "bankruptcy_price": REAL,
            "surplus": INTEGER,
            "deficit": INTEGER,
            "covered_by_fund": INTEGER,
            "currency": TEXT,
            "fills": INTEGER,
        },
        pk="seq",
    )
    # No index by account on the two liquidation tables: a random text key made each of a 1M
    # cascade's 752,000 rows a search into a B-tree (12 of 17 s of their commits, measured); a
    # query for one account scans them in 50-70 ms, and a report's time index narrows it first.
    db["liquidations"].create_index(["time"])
    db["adl"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "account": TEXT,
            "symbol": TEXT,
            "contracts": INTEGER,
            "price": TEXT,
            "against": TEXT,
        },
        pk="seq",
    )
    db["adl"].create_index(["account"])
    db["fund_history"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "currency": TEXT,
            "kind": TEXT,
            "amount": INTEGER,
            "balance_after": INTEGER,
        },
        pk="seq",
    )
    db["fund_history"].create_index(["currency", "tick"])
    db["settlements"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "family": TEXT,
            "price": TEXT,
            "adjusted_from": TEXT,
            "expired": TEXT,
        },
        pk="seq",
    )
    db["clawbacks"].create(
        {
            "seq": INTEGER,
            "tick": INTEGER,
            "time": TEXT,
            "family": TEXT,
            "currency": TEXT,
            "deficit": INTEGER,
            "total_profit": INTEGER,
            "ratio": TEXT,
            "unrecovered": INTEGER,
            "status": TEXT,
        },
        pk="seq",
    )
    db["clawback_allocations"].create(
        {"clawback": INTEGER, "account": TEXT, "profit": INTEGER, "amount": INTEGER},
        pk=("clawback", "account"),
        foreign_keys=[("clawback", "clawbacks", "seq")],
    )
    db["clawback_allocations"].create_index(["clawback", "amount"])
    db["clawback_allocations"].create_index(["account"])
    # Price history, downsampled on long runs: kind is index, mark or last.
    db["prices"].create(
        {"tick": INTEGER, "time": TEXT, "kind": TEXT, "name": TEXT, "price": REAL},
        pk=("kind", "name", "tick"),
    )
    # The latest state per account and currency (rewritten with each snapshot): what the
    # console's top-accounts queries read. Valuation columns are display floats.
    db["account_state"].create(
        {
            "account": TEXT,
            "currency": TEXT,
            "tick": INTEGER,
            "cash": INTEGER,
            "equity": REAL,
            "notional": REAL,
            "maintenance": REAL,
            "margin_ratio": REAL,
            "positions": INTEGER,
        }
    )
    create_account_state_indexes(db.conn)
    _create_controls_v1(db)


def create_feed_tables(db: sqlite_utils.Database) -> None:
    """Tables of a store written from a feed: every message applied, by its sequence number (with
    the refusal, when it was refused), and the feed run's own state at each snapshot."""
    db["feed_messages"].create(
        {"seq": INTEGER, "message": TEXT, "refused": TEXT}, pk="seq", not_null={"message"}
    )
    db["feed_state"].create(
        {"tick": INTEGER, "last_seq": INTEGER, "state": TEXT}, pk="tick", not_null={"state"}
    )


def _create_controls_v1(db: sqlite_utils.Database) -> None:
    """Tables of the operator side: identities, requests, the audit chain, alerts, settings."""
    db["operators"].create(
        {
            "name": TEXT,
            "role": TEXT,
            "salt": TEXT,
            "password_hash": TEXT,
            "scrypt_n": INTEGER,
            "scrypt_r": INTEGER,
            "scrypt_p": INTEGER,
            "disabled": INTEGER,
            "created_at": TEXT,
            "updated_at": TEXT,
        },
        pk="name",
        not_null={"role", "salt", "password_hash", "scrypt_n", "scrypt_r", "scrypt_p", "disabled"},
        defaults={"disabled": 0},
    )
    db["requests"].create(
        {
            "id": TEXT,
            "action": TEXT,
            "params": TEXT,
            "operator": TEXT,
            "reason": TEXT,
            "created_at": TEXT,
            "status": TEXT,
            "decided_by": TEXT,
            "decided_at": TEXT,
            "comment": TEXT,
            "preview": TEXT,
            "digest": TEXT,
        },
        pk="id",
    )
    db["requests"].create_index(["status"])
    db["audit_log"].create(
        {
            "seq": INTEGER,
            "at": TEXT,
            "operator": TEXT,
            "kind": TEXT,
            "subject": TEXT,
            "reason": TEXT,
            "before": TEXT,
            "after": TEXT,
            "prev_hash": TEXT,
            "hash": TEXT,
        },
        pk="seq",
        not_null={"at", "operator", "kind", "subject", "reason", "prev_hash", "hash"},
    )
    db["audit_log"].create_index(["operator"])
    db["audit_log"].create_index(["kind"])
    db["audit_log"].create_index(["at"])
    # Append-only: the store itself refuses to change or remove a row (core.desk.audit.verify still
    # catches edits made by someone who drops these triggers first).
    for verb in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
    db["alerts"].create(
        {
            "id": INTEGER,
            "rule": TEXT,
            "tick": INTEGER,
            "time": TEXT,
            "account": TEXT,
            "symbol": TEXT,
            "severity": TEXT,
            "message": TEXT,
            "value": REAL,
            "threshold": REAL,
            "state": TEXT,
            "owner": TEXT,
            "notes": TEXT,
            "updated_at": TEXT,
            # When the rule stopped firing (AlertCleared); the workflow state is the desk's own.
            "cleared_at": TEXT,
        },
        pk="id",
    )
    db["alerts"].create_index(["state"])
    db["alerts"].create_index(["account"])
    db["settings"].create({"key": TEXT, "value": TEXT}, pk="key")


# Indexes built after bulk writes (one sort, not a million random inserts): the store drops and
# recreates them around each rewrite of the table.
ACCOUNT_STATE_INDEXES = {
    "account_state_by_notional": "account_state (currency, notional)",
    "account_state_by_risk": "account_state (currency, margin_ratio)",
    "account_state_by_account": "account_state (account)",
}
ACCOUNTS_INDEX = ("accounts_by_id", "accounts (id)")


def create_account_state_indexes(conn: sqlite3.Connection) -> None:
    for name, target in ACCOUNT_STATE_INDEXES.items():
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


# MIGRATIONS[v] takes a store at version v to v + 1; version 0 is an empty file.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_create_v1]
assert len(MIGRATIONS) == SCHEMA_VERSION


def connect(path: str | Path, *, create: bool = False) -> sqlite_utils.Database:
    """Open the store at `path`, migrated to SCHEMA_VERSION, in WAL. With `create`, a new store
    is built under a temporary name beside `path` and renamed into place once complete.

    A missing file, an empty file, a file that is not SQLite, another program's SQLite file or a
    store written by a newer version is an InputError naming the problem; opening never creates
    or initialises a file, and nothing is written to such a file."""
    path = Path(path)
    if create:
        temp, db = new_store(path)
        db.conn.close()
        publish_store(temp, path)
    elif not path.exists():
        cut = files.leftovers(path)
        if cut:
            raise InputError(
                "STORE",
                f"no store at {path}: the run creating it was killed before its first tick "
                f"(the incomplete {cut[-1].name} beside it is ignored, and removed by the next "
                f"`risk-console run SCENARIO --db {path}`)",
            )
        raise InputError("STORE", f"no store at {path}")
    return _open(path)


def check_new(path: Path) -> None:
    """Refuse to put a new store where one holds anything (an empty file, or a store whose
    creation was cut short before anything was written to it, may be replaced)."""
    if path.exists() and path.stat().st_size > 0 and not _holds_nothing(path):
        raise InputError("STORE", f"{path} exists already; choose a new file for a new store")


def store_uri(path: str | Path, mode: str) -> str:
    """The SQLite URI of the file at `path` opened in `mode` (`ro`, `rw`): the path is
    percent-encoded, so that a `?`, `#` or `%` in a folder or file name stays part of the name
    rather than starting SQLite's query string or fragment."""
    return f"{Path(path).resolve().as_uri()}?mode={mode}"


def connect_read_only(path: str | Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection to the store at `path`: never creates, migrates or writes it.
    The caller closes it; the thread that opened it is the one that may use it."""
    return sqlite3.connect(store_uri(path, "ro"), uri=True, timeout=timeout)


def connect_reader(path: str | Path) -> sqlite_utils.Database:
    """The store at `path` for reading only (a what-if's parent): the same checks as `connect`,
    through a connection that can never write, migrate or create the file."""
    path = Path(path)
    if not path.exists():
        raise InputError("STORE", f"no store at {path}")
    try:
        conn = connect_read_only(path, timeout=30.0)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        application = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise InputError("STORE", f"{path} is not a readable SQLite store ({error})") from None
    if application != APPLICATION_ID or version != SCHEMA_VERSION:
        conn.close()
        raise InputError(
            "STORE", f"{path} is not a store of schema version {SCHEMA_VERSION} (found {version})"
        )
    return sqlite_utils.Database(conn)


def _holds_nothing(path: Path) -> bool:
    try:
        conn = connect_read_only(path)
    except sqlite3.Error:
        return False
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            return False
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return not any(conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def new_store(path: Path) -> tuple[Path, sqlite_utils.Database]:
    """A new store for `path`, open under its temporary name: (that name, the database). The
    current schema is in it, with a rollback journal so that once committed and closed the file
    is complete on its own; `publish_store` renames it into place, `files.discard` drops it."""
    check_new(path)
    temp = files.temp_beside(path)
    # By URI, so that the connection may ATTACH another store read-only (a what-if's parent).
    conn = sqlite3.connect(
        store_uri(temp, "rwc"), uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        db = sqlite_utils.Database(conn)
        with conn:
            conn.execute("BEGIN")
            for step in range(SCHEMA_VERSION):
                MIGRATIONS[step](db)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    except sqlite3.Error as error:
        conn.close()
        files.discard(temp)
        raise files.write_error(path, os_error(error), existed=path.exists()) from None
    except BaseException:
        conn.close()
        files.discard(temp)
        raise
    return temp, db


def publish_store(temp: Path, path: Path) -> None:
    """Rename a new store (committed and closed) into place, unless a store appeared at `path`
    meanwhile."""
    try:
        check_new(path)
    except InputError:
        files.discard(temp)
        raise
    # A WAL or shared-memory file left at `path` by a store deleted under it belongs to no
    # store now; SQLite would apply that WAL to the new one and mix the two runs.
    for suffix in files.SQLITE_SIDECARS:
        with contextlib.suppress(OSError):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    files.publish(temp, path)


def _open(path: Path) -> sqlite_utils.Database:
    try:
        # mode=rw: SQLite must never create the file it is asked to read.
        # A second connection (the console's UI thread) waits for the run's tick transaction;
        # a snapshot of a big book holds it for a few seconds.
        conn = sqlite3.connect(
            store_uri(path, "rw"),
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=30.0,
        )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        application = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise InputError("STORE", f"{path} is not a readable SQLite store ({error})") from None
    if application != APPLICATION_ID and (tables or version):
        conn.close()
        raise InputError("STORE", f"{path} is an SQLite file of another program, not a store")
    if not tables and not version:
        conn.close()
        raise InputError("STORE", f"{path} is empty: not a store (nothing was ever written to it)")
    if version > SCHEMA_VERSION:
        conn.close()
        raise InputError(
            "STORE",
            f"{path} has schema version {version}; this version of risk-console reads up to "
            f"{SCHEMA_VERSION}: upgrade risk-console",
        )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint the WAL every ~64 MB rather than every 4 MB: a cascade writes in bursts.
    conn.execute("PRAGMA wal_autocheckpoint=16000")
    conn.execute("PRAGMA foreign_keys=ON")
    db = sqlite_utils.Database(conn)
    try:
        for step in range(version, SCHEMA_VERSION):
            with conn:
                conn.execute("BEGIN")
                MIGRATIONS[step](db)
                conn.execute(f"PRAGMA user_version={step + 1}")
    except sqlite3.DatabaseError as error:
        conn.close()
        raise InputError("STORE", f"{path} is damaged ({error})") from None
    return db


# SQLite's primary result codes for a write the disk refused.
_DISK_CODES = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
}


def os_error(error: sqlite3.Error) -> OSError:
    """A refused SQLite write as the OSError it stands for."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    number = errno.ENOSPC if code == sqlite3.SQLITE_FULL else errno.EIO
    if code == sqlite3.SQLITE_READONLY:
        number = errno.EROFS
    return OSError(number, str(error))


def store_write_error(path: str | Path, error: sqlite3.Error) -> WriteError | None:
    """A store write the disk refused (full, quota, size limit, read-only, I/O) as one line naming
    the store; None for other SQLite errors. SQLite rolled the tick back, so the store ends at its
    last committed tick and can be resumed once there is room."""
    if getattr(error, "sqlite_errorcode", 0) & 0xFF not in _DISK_CODES:
        return None
    return WriteError(
        str(path),
        f"cannot write the store ({error}); it is kept at its last committed tick: make room, "
        f"then `risk-console resume {path} --out RESULT`",
    )
