"""The run store: a scenario's journal of inputs, its output events, price history and engine
snapshots in SQLite (core/store/schema.py), written one transaction per tick, read back to replay.

One module past 500 lines: every write of a tick is one transaction of this class."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import sqlite_utils

from core.engine.views import price_str
from core.model import files
from core.model.errors import InputError
from core.model.events import (
    AdlFill,
    ClawbackComputed,
    Event,
    FundPosting,
    LiquidationFilled,
    LiquidationStarted,
    SettlementDone,
    iso,
)
from core.store import state_classes, state_format
from core.store.checkpoint import Checkpointer
from core.store.schema import (
    ACCOUNT_STATE_INDEXES,
    ACCOUNTS_INDEX,
    connect,
    connect_reader,
    create_account_state_indexes,
    new_store,
    publish_store,
    store_uri,
)

# The meta row that makes a store a what-if branch of another (what it changed, from where).
BRANCH_META = "whatif"


def software_version() -> str:
    try:
        return metadata.version("risk-console")
    except metadata.PackageNotFoundError:
        return "unknown"


def dump_state(state: object, *, compress: bool) -> list[bytes | memoryview]:
    """A snapshot blob (core/store/state_format.py) in parts: zlib-compressed for small books
    (where the store's size matters more than the milliseconds) and raw for big ones (where
    restart time matters)."""
    return state_format.dump_parts(state, compress=compress)


def load_state(blob: bytes, digest: str) -> Any:
    """A snapshot blob back to objects, after checking its digest (a torn or edited blob is
    refused before anything is read); a blob of another shape is refused with its reason."""
    if not isinstance(blob, bytes) or hashlib.sha256(blob).hexdigest() != digest:
        raise InputError("STORE", "a snapshot does not match its digest: the store is damaged")
    return state_format.load(blob)


@dataclass(frozen=True, slots=True)
class StoredCommand:
    """An operator command as journaled: its row number and its fields."""

    seq: int
    command: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredTick:
    """One tick of the journal: the operator commands applied in it, the authority each was
    found to carry there (by command row), and the state hash after it (when it was recorded)."""

    tick: int
    time: str
    commands: tuple[StoredCommand, ...]
    state_hash: str | None
    authorities: dict[int, dict[str, Any]]


class Store:
    """An open store. Writes happen only inside `tick_transaction`; one commit per tick."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path
        self.conn = db.conn
        self._seq: dict[str, int] = {}
        self._insert_sql: dict[str, str] = {}
        self._checkpointer: Checkpointer | None = None
        self._held: dict[str, list[tuple[Any, ...]]] | None = None  # see `transaction`
        self._creating: Path | None = None
        self.read_only = False
        # Temporary files of stores at this path whose creation was killed, removed on creating.
        self.leftovers: tuple[Path, ...] = ()

    # ----- opening ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        scenario_doc: dict[str, Any],
        settings: dict[str, Any],
        *,
        publish: bool = True,
    ) -> Store:
        """A new store at `path` holding the run's header (scenario, version, settings). It is
        built under a temporary name beside `path`; with `publish=False` it stays there until
        `publish()` (so the first tick goes in before the store appears), and a kill before then
        leaves nothing at `path`."""
        path = Path(path)
        removed = files.sweep(path)
        temp, db = new_store(path)
        store = cls(db, path)
        store._creating = temp
        store.leftovers = tuple(removed)
        try:
            with store.transaction():
                store.set_meta("scenario", json.dumps(scenario_doc, separators=(",", ":")))
                store.set_meta("software_version", software_version())
                store.set_meta("settings", json.dumps(settings, sort_keys=True))
            if publish:
                store.publish()
        except BaseException:
            store.discard()
            raise
        return store

    def publish(self) -> None:
        """Rename a new store into place (flushed to disk first); reopen it there in WAL."""
        if self._creating is None:
            return
        temp, self._creating = self._creating, None
        self.conn.close()
        publish_store(temp, self.path)
        self.db = connect(self.path)
        self.conn = self.db.conn
        self._checkpoint_aside()

    def _checkpoint_aside(self) -> None:
        """WAL checkpoints on their own thread (core/store/checkpoint.py), not inside this
        connection's commits; and a transaction's pages kept in memory until its commit rather
        than spilled to the WAL half-written (a big snapshot's blob is inserted as zeros and then
        filled: spilled, each of its pages went to the WAL twice)."""
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self.conn.execute("PRAGMA cache_spill=OFF")
        self._checkpointer = Checkpointer(self.path)

    def discard(self) -> None:
        """Drop a new store that was never published; nothing is left at its path."""
        if self._creating is not None:
            self.conn.close()
            files.discard(self._creating)
            self._creating = None

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Store:
        """An existing store; `read_only` through a connection that cannot write the file (nor
        migrate it: a store of an older schema is refused then)."""
        path = Path(path)
        db = connect_reader(path) if read_only else connect(path)
        if not db["meta"].exists() or db["meta"].count == 0:
            db.conn.close()
            raise InputError("STORE", f"{path} holds no run (it was never written to)")
        store = cls(db, path)
        store.read_only = read_only
        if not read_only:
            store._checkpoint_aside()
        return store

    def close(self) -> None:
        if self._creating is not None:
            self.discard()
            return
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        self.conn.close()

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def scenario_doc(self) -> dict[str, Any]:
        text = self.meta("scenario")
        if text is None:
            raise InputError("STORE", f"{self.path} holds no scenario")
        return json.loads(text)

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.meta("settings") or "{}")

    def transaction(self, *, grouped: bool = False) -> _Transaction:
        """BEGIN ... COMMIT around a block. `grouped` holds the appended rows of the tables
        written only by appending (journal, events, prices, feed messages) and inserts each
        table's rows in one statement at COMMIT: a group of ticks (core/store/writer.py) then
        costs a few SQLite calls, not a few per tick. Rows held so are not readable before
        COMMIT."""
        return _Transaction(self, grouped=grouped)

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self._held is None:
            self.conn.executemany(sql, rows)
        else:
            self._held.setdefault(sql, []).extend(rows)

    # ----- writing ------------------------------------------------------------------------

    def write_reference(
        self, instruments: Iterable[dict[str, Any]], account_ids: Iterable[str], named: int
    ) -> None:
        """The run's fixed reference data; call inside the first tick's transaction."""
        rows = [tuple(i.values()) for i in instruments]
        self.conn.executemany("INSERT INTO instruments VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.conn.executemany(
            "INSERT INTO accounts (idx, id, named) VALUES (?, ?, ?)",
            ((i, name, int(i < named)) for i, name in enumerate(account_ids)),
        )
        self.conn.execute(f"CREATE UNIQUE INDEX {ACCOUNTS_INDEX[0]} ON {ACCOUNTS_INDEX[1]}")

    def attach_parent(self, path: Path) -> None:
        """The store at `path`, read-only, as the schema `parent` of this connection (a what-if
        branch copies from its original); outside a transaction."""
        self.conn.execute("ATTACH DATABASE ? AS parent", (store_uri(path, "ro"),))

    def detach_parent(self) -> None:
        self.conn.execute("DETACH DATABASE parent")

    def copy_reference(self) -> None:
        """The attached parent's reference data, as `write_reference` writes it. The accounts'
        index exists before the copy so that SQLite copies the table's pages whole rather than
        inserting a million rows (its transfer optimisation wants the same indexes on both)."""
        self.conn.execute(f"CREATE UNIQUE INDEX {ACCOUNTS_INDEX[0]} ON {ACCOUNTS_INDEX[1]}")
        for table in ("instruments", "accounts"):
            self.conn.execute(f"INSERT INTO main.{table} SELECT * FROM parent.{table}")

    def copy_feed_messages(self, until: int) -> None:
        """The attached parent's recorded feed messages up to sequence number `until`."""
        self.conn.execute(
            "INSERT INTO main.feed_messages SELECT * FROM parent.feed_messages WHERE seq <= ?",
            (until,),
        )

    def copy_event_chunks(self, until: int) -> None:
        """The attached parent's event chunks up to tick `until`, as stored (digests included)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO main.event_chunks SELECT * FROM parent.event_chunks "
            "WHERE tick <= ?",
            (until,),
        )

    def _next(self, table: str) -> int:
        if table not in self._seq:
            row = self.conn.execute(f"SELECT max(seq) FROM {table}").fetchone()
            self._seq[table] = row[0] or 0
        self._seq[table] += 1
        return self._seq[table]

    def write_tick(
        self,
        tick: int,
        now: datetime,
        commands: list[dict[str, Any]],
        events: list[Event],
        state_hash: str | None,
    ) -> None:
        """The tick's inputs and outputs; call inside `transaction()`."""
        when = iso(now)
        journal = [
            (self._next("journal"), tick, when, "command", json.dumps(c, sort_keys=True), None)
            for c in commands
        ]
        journal.append((self._next("journal"), tick, when, "tick", None, state_hash))
        self._many("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?)", journal)
        if events:
            self._write_events(tick, events)

    def write_command(self, tick: int, now: datetime, command: dict[str, Any]) -> int:
        """An operator command, journaled as soon as it is given (it applies at `tick`); returns
        its row number."""
        seq = self._next("journal")
        self.conn.execute(
            "INSERT INTO journal VALUES (?, ?, ?, 'command', ?, NULL)",
            (seq, tick, iso(now), json.dumps(command, sort_keys=True)),
        )
        return seq

    def write_authority(self, tick: int, now: datetime, authority: dict[str, Any]) -> None:
        """The authority a command carried where it applied at `tick` (core/desk/authority.py), so
        a replay applies or refuses it the same way; call inside the tick's transaction, before
        `write_tick`."""
        self.conn.execute(
            "INSERT INTO journal VALUES (?, ?, ?, 'authority', ?, NULL)",
            (self._next("journal"), tick, iso(now), json.dumps(authority, sort_keys=True)),
        )

    def _write_events(self, tick: int, events: list[Event]) -> None:
        """Events with a table of their own (liquidation starts and fills, ADL, fund, settlements,
        clawbacks) go only there; `events` holds all the others."""
        times: dict[datetime, str] = {}

        def when(t: datetime) -> str:
            text = times.get(t)
            if text is None:
                text = times[t] = iso(t)
            return text

        prices: dict[object, str | None] = {}

        def price(value: Decimal | float | None) -> str | None:
            # A tick's fills sweep a few price levels: format each once.
            text = prices.get(value, _MISSING)
            if text is _MISSING:
                text = prices[value] = price_str(value)
            return text  # type: ignore[return-value]

        rows, starts, liquidations, adl, fund, settlements = [], [], [], [], [], []
        for event in events:
            at = when(event.time)
            kind = type(event)
            if kind is LiquidationFilled:
                liquidations.append(
                    (
                        tick,
                        at,
                        when(event.started),
                        event.account,
                        event.symbol,
                        event.side,
                        event.contracts,
                        int(event.partial),
                        price(event.fill_price),
                        finite_or_none(event.bankruptcy_price),
                        event.surplus,
                        event.deficit,
                        event.covered_by_fund,
                        event.currency,
                        event.fills,
                    )
                )
            elif kind is FundPosting:
                fund.append(
                    (tick, at, event.currency, event.kind, event.amount, event.balance_after)
                )
            elif kind is AdlFill:
                adl.append(
                    (
                        tick,
                        at,
                        event.account,
                        event.symbol,
                        event.contracts,
                        price(event.price),
                        event.against,
                    )
                )
            elif kind is SettlementDone:
                settlements.append(
                    (
                        tick,
                        at,
                        event.family,
                        price_str(event.price),
                        price_str(event.adjusted_from),
                        json.dumps(list(event.expired)),
                    )
                )
            elif kind is ClawbackComputed:
                self._write_clawback(tick, event)
            elif kind is LiquidationStarted:
                starts.append(
                    (
                        tick,
                        at,
                        event.account,
                        event.symbol,
                        event.side,
                        event.contracts,
                        int(event.partial),
                        finite_or_none(event.bankruptcy_price),
                        event.reserved,
                        event.currency,
                    )
                )
            else:
                rows.append(_event_row(tick, at, event))
        self._insert("events", rows)
        self._insert("liquidation_starts", starts)
        self._insert("liquidations", liquidations)
        self._insert("adl", adl)
        self._insert("fund_history", fund)
        self._insert("settlements", settlements)

    def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Rows without their `seq`: SQLite numbers them on (one above the highest, as `_next`
        would), which spares copying every row into a tuple that has it."""
        if not rows:
            return
        sql = self._insert_sql.get(table)
        if sql is None:
            columns = [c for c in self.db[table].columns_dict if c != "seq"]
            marks = ", ".join("?" * len(columns))
            sql = self._insert_sql[table] = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            )
        self._many(sql, rows)

    def _write_clawback(self, tick: int, event: ClawbackComputed) -> None:
        seq = self._next("clawbacks")
        self.conn.execute(
            "INSERT INTO clawbacks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                tick,
                iso(event.time),
                event.family,
                event.currency,
                event.deficit,
                event.total_profit,
                event.ratio,
                event.unrecovered,
                event.status,
            ),
        )
        self.conn.executemany(
            "INSERT INTO clawback_allocations VALUES (?, ?, ?, ?)",
            ((seq, account, profit, amount) for account, profit, amount in event.allocations),
        )

    def write_prices(self, tick: int, now: datetime, prices: list[tuple[str, str, float]]) -> None:
        when = iso(now)
        self._many(
            "INSERT OR REPLACE INTO prices VALUES (?, ?, ?, ?, ?)",
            [(tick, when, kind, name, price) for kind, name, price in prices],
        )

    def price_points(self, until: int) -> list[tuple[int, str, str, float]]:
        """The recorded index, mark and last prices up to tick `until`: (tick, kind, name, price)."""
        return self.conn.execute(
            "SELECT tick, kind, name, price FROM prices WHERE tick <= ? ORDER BY tick", (until,)
        ).fetchall()

    def fund_movements(self, until: int) -> list[tuple[int, str, int, int]]:
        """The insurance funds' movements up to tick `until`, in order: (tick, currency, signed
        amount (a deficit paid out is negative), balance after)."""
        return self.conn.execute(
            "SELECT tick, currency, CASE kind WHEN 'deficit_out' THEN -amount ELSE amount END, "
            "balance_after FROM fund_history WHERE tick <= ? ORDER BY seq",
            (until,),
        ).fetchall()

    def first_tick(self) -> int:
        """The first tick this store journaled (a what-if branch's: its fork)."""
        first = self.conn.execute("SELECT min(tick) FROM journal").fetchone()[0]
        return 0 if first is None else int(first)

    def record_hash(self, tick: int, state_hash: str) -> None:
        """The state hash of a tick journaled without one (a snapshot taken after it)."""
        self.conn.execute(
            "UPDATE journal SET state_hash = ? WHERE kind = 'tick' AND tick = ? "
            "AND state_hash IS NULL",
            (state_hash, tick),
        )

    def write_snapshot(self, tick: int, now: datetime, blob: Blob) -> None:
        parts = [blob] if isinstance(blob, bytes) else blob
        size, digest = _measured(parts)
        self.conn.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, zeroblob(?), ?, ?)",
            (tick, iso(now), size, digest, size),
        )
        self._fill("snapshots", "state", tick, parts)

    def _fill(self, table: str, column: str, row: int, parts: Sequence[bytes | memoryview]) -> None:
        """Write a blob inserted as zeroblob part by part, a few MB at a time: binding it whole
        copies it with the interpreter lock held (a third of a second at 120 MB)."""
        with self.conn.blobopen(table, column, row) as target:
            for part in parts:
                view = memoryview(part)
                for at in range(0, len(view), BLOB_SLICE):
                    target.write(view[at : at + BLOB_SLICE])

    def replace_account_state(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rewrite the per-account table: indexes off, bulk insert, indexes rebuilt in one sort
        each (about 3 s at 1M accounts against 14 s with the indexes kept)."""
        for name in ACCOUNT_STATE_INDEXES:
            self.conn.execute(f"DROP INDEX IF EXISTS {name}")
        self.conn.execute("DELETE FROM account_state")
        self.conn.executemany("INSERT INTO account_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        create_account_state_indexes(self.conn)

    def write_feed_messages(self, rows: list[tuple[int, str, str | None]]) -> None:
        """Messages applied from a feed: (sequence number, the message's text, the refusal)."""
        self._many("INSERT OR REPLACE INTO feed_messages VALUES (?, ?, ?)", rows)

    def write_feed_state(self, tick: int, last_seq: int, state: dict[str, Any]) -> None:
        """The feed run's state beside the snapshot at `tick`, after message `last_seq`."""
        self.conn.execute(
            "INSERT OR REPLACE INTO feed_state VALUES (?, ?, ?)",
            (tick, last_seq, json.dumps(state, separators=(",", ":"))),
        )

    # ----- reading ------------------------------------------------------------------------

    @property
    def branch_of(self) -> str | None:
        """The meta row of a what-if branch (core/whatif/branch.py), None for any other store."""
        return self.meta(BRANCH_META)

    @property
    def feed_url(self) -> str | None:
        """Where the feed of a store written from one comes from; None for a scenario's store."""
        return self.meta("feed")

    def feed_state(self, tick: int) -> tuple[int, dict[str, Any]]:
        row = self.conn.execute(
            "SELECT last_seq, state FROM feed_state WHERE tick = ?", (tick,)
        ).fetchone()
        if row is None:
            raise InputError("STORE", f"{self.path} holds no feed state at its snapshot {tick}")
        return row[0], json.loads(row[1])

    def feed_messages(self, after: int) -> Iterator[tuple[int, str]]:
        """The stored messages after sequence number `after`, in order, as their text."""
        yield from self.conn.execute(
            "SELECT seq, message FROM feed_messages WHERE seq > ? ORDER BY seq", (after,)
        )

    def refused_feed_seqs(self, after: int) -> set[int]:
        """The messages after `after` that the run refused when it applied them (they moved
        nothing, whatever time they name)."""
        rows = self.conn.execute(
            "SELECT seq FROM feed_messages WHERE seq > ? AND refused IS NOT NULL", (after,)
        )
        return {seq for (seq,) in rows}

    def last_feed_seq(self) -> int:
        return self.conn.execute("SELECT coalesce(max(seq), 0) FROM feed_messages").fetchone()[0]

    def head_tick(self) -> int | None:
        """The last committed tick, None before the first."""
        return self.conn.execute("SELECT max(tick) FROM journal WHERE kind = 'tick'").fetchone()[0]

    def snapshot_ticks(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT tick FROM snapshots ORDER BY tick")]

    def write_event_chunk(self, tick: int, blob: Blob) -> None:
        parts = [blob] if isinstance(blob, bytes) else blob
        size, digest = _measured(parts)
        self.conn.execute(
            "INSERT OR REPLACE INTO event_chunks VALUES (?, zeroblob(?), ?)", (tick, size, digest)
        )
        self._fill("event_chunks", "events", tick, parts)

    def load_event_chunks(self, until: int) -> list[Any]:
        """The events of every chunk up to tick `until`, in order."""
        rows = self.conn.execute(
            "SELECT events, digest FROM event_chunks WHERE tick <= ? ORDER BY tick", (until,)
        )
        return [
            event
            for blob, digest in rows
            for event in state_classes.check_events(load_state(blob, digest))
        ]

    def load_snapshot(self, at_or_before: int | None = None) -> tuple[int, Any]:
        sql = "SELECT tick, state, digest FROM snapshots"
        params: tuple[int, ...] = ()
        if at_or_before is not None:
            sql += " WHERE tick <= ?"
            params = (at_or_before,)
        row = self.conn.execute(sql + " ORDER BY tick DESC LIMIT 1", params).fetchone()
        if row is None:
            raise InputError("STORE", f"{self.path} holds no snapshot to start from")
        recorded = self.conn.execute(
            "SELECT state_hash FROM journal WHERE kind = 'tick' AND tick = ?", (row[0],)
        ).fetchone()
        state = load_state(row[1], row[2])
        return row[0], state_classes.check_state(state, recorded[0] if recorded else None)

    def journal(self, after: int, until: int | None = None) -> Iterator[StoredTick]:
        """The ticks after `after` (up to `until`), each with its commands."""
        sql = "SELECT seq, tick, time, kind, payload, state_hash FROM journal WHERE tick > ?"
        params: tuple[int, ...] = (after,)
        if until is not None:
            sql += " AND tick <= ?"
            params = (after, until)
        commands: list[StoredCommand] = []
        authorities: dict[int, dict[str, Any]] = {}
        for seq, tick, when, kind, payload, state_hash in self.conn.execute(
            sql + " ORDER BY seq", params
        ):
            if kind == "command":
                commands.append(StoredCommand(seq, json.loads(payload)))
            elif kind == "authority":
                authority = json.loads(payload)
                authorities[int(authority["command"])] = authority
            else:
                yield StoredTick(tick, when, tuple(commands), state_hash, authorities)
                commands, authorities = [], {}

    def pending_commands(self, head: int) -> list[StoredCommand]:
        """Commands given after the last committed tick, waiting for the next one. One that has
        its authority recorded was applied or refused already: it never waits again."""
        rows = self.conn.execute(
            "SELECT seq, payload FROM journal WHERE kind = 'command' AND tick > ? AND seq NOT IN "
            "(SELECT json_extract(payload, '$.command') FROM journal WHERE kind = 'authority') "
            "ORDER BY seq",
            (head,),
        )
        return [StoredCommand(seq, json.loads(payload)) for seq, payload in rows]

    def journal_gaps(self) -> list[int]:
        """Ticks missing between the first and the last journaled tick (none in a sound store)."""
        ticks = np.array(
            [
                r[0]
                for r in self.conn.execute(
                    "SELECT tick FROM journal WHERE kind = 'tick' ORDER BY tick"
                )
            ],
            dtype=np.int64,
        )
        if ticks.size == 0:
            return []
        expected = np.arange(ticks[0], ticks[-1] + 1)
        return np.setdiff1d(expected, ticks).tolist()

    def recorded_hashes(self) -> dict[int, str]:
        return dict(
            self.conn.execute(
                "SELECT tick, state_hash FROM journal WHERE kind = 'tick' AND state_hash IS NOT NULL"
            ).fetchall()
        )


def _event_row(tick: int, at: str, event: Event) -> tuple[Any, ...]:
    account = getattr(event, "account", None) or getattr(event, "operator", None)
    amount = getattr(event, "amount", None)
    payload = orjson.dumps(event, default=str, option=orjson.OPT_UTC_Z).decode()
    return (
        tick,
        at,
        type(event).__name__,
        account,
        getattr(event, "symbol", None) or getattr(event, "family", None),
        getattr(event, "currency", None),
        amount if isinstance(amount, int) else None,
        payload,
    )


class _Transaction:
    """BEGIN ... COMMIT around a block; ROLLBACK when it raises, and the row numbers the store
    handed out inside it are forgotten (they were never written)."""

    def __init__(self, store: Store, *, grouped: bool) -> None:
        self.store = store
        self.grouped = grouped

    def __enter__(self) -> None:
        checkpointer = self.store._checkpointer
        if checkpointer is not None and checkpointer.error is not None:
            raise checkpointer.error
        self.store.conn.execute("BEGIN IMMEDIATE")
        if self.grouped:
            self.store._held = {}

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        store, conn = self.store, self.store.conn
        held, store._held = store._held, None
        try:
            if kind is None:
                for sql, rows in (held or {}).items():
                    conn.executemany(sql, rows)
                conn.execute("COMMIT")
                if store._checkpointer is not None:
                    store._checkpointer.committed()
                return
        except BaseException:
            # A COMMIT the disk refused (full, I/O) may leave the transaction open.
            self._rollback()
            raise
        self._rollback()

    def _rollback(self) -> None:
        conn = self.store.conn
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        self.store._seq.clear()


_MISSING: Any = object()
Blob = bytes | Sequence[bytes | memoryview]  # a snapshot blob whole or in its parts
BLOB_SLICE = 4 << 20


def _measured(parts: Sequence[bytes | memoryview]) -> tuple[int, str]:
    """(length, sha256 hex) of the parts joined (hashlib lets go of the lock on big data)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return sum(memoryview(p).nbytes for p in parts), digest.hexdigest()


def finite_or_none(value: float | None) -> float | None:
    """A float for a REAL column: NULL where it is missing, NaN or infinite."""
    return value if value is not None and math.isfinite(value) else None
