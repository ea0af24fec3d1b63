"""A run of one scenario with its store: steps the engine, journals each tick in one transaction,
takes snapshots, replays from the journal, seeks, and takes operator commands between ticks.

One module past 500 lines: stepping, journaling, replay and seek share the head and the
journal's order; apart, a change to one could break replay's equality with the run."""

from __future__ import annotations

import bisect
import math
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.desk import alerts, audit
from core.desk.authority import (
    LOGIN_FIELD,
    ROLE_FIELD,
    THRESHOLDS_FIELD,
    audit_after,
    authorize,
    failed,
    from_row,
    latest_login,
    to_row,
    trusted,
)
from core.desk.requests import action_subject, audit_kind, record_operator_side
from core.engine.facade import Engine
from core.engine.result import ResultCollector
from core.engine.surveillance import parse_thresholds
from core.model import files
from core.model.errors import InputError, WriteError
from core.model.events import ActionRecorded, ActionRefused, ClawbackComputed, Event, iso
from core.model.operations import Refusal
from core.model.scenario_values import ActionSpec, Authority
from core.scenario.parse import parse_command, parse_scenario, read_scenario_doc
from core.session import commands
from core.session.commands import Queued
from core.session.recorded_feed import RecordedFeed
from core.store.schema import os_error, store_write_error
from core.store.store import Store, StoredCommand, dump_state
from core.store.writer import StoreWriter

# Events whose store rows read the engine (requests, clawback previews): their tick is written at
# once, after the ticks held for a group commit.
OPERATOR_EVENTS = (ActionRecorded, ActionRefused, ClawbackComputed)
# Above this many positions a snapshot is a second's work: fewer of them, no compression, and the
# per-account table written only when asked (its export) rather than with each snapshot.
BIG_BOOK = 200_000
# A state hash every tick cost the demo's store run more than the engine's own work (sha256 over
# the book's columns); one every 100 ticks, and at every snapshot, still pins a replay down.
HASH_EVERY = 100


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How often a run writes a snapshot, a state hash and a price point."""

    snapshot_ticks: int
    snapshot_events: int
    hash_every: int
    price_every: int

    @classmethod
    def for_engine(cls, engine: Engine) -> StoreSettings:
        positions = len(engine.book)
        small = positions <= BIG_BOOK
        return cls(
            # About 50 snapshots a run; 4 for big books, where each costs about a second (a
            # seek or a restart replays at most the ticks between two of them).
            snapshot_ticks=max(100, engine.ticks_total // (50 if small else 4)),
            snapshot_events=200_000 if small else 1_000_000,
            hash_every=HASH_EVERY if small else 0,
            price_every=max(1, engine.ticks_total // 20_000),
        )


class Session:
    """The engine, its result collector and (optionally) its store.

    Past the store's head the session is live: each step is journaled. Behind the head (after a
    seek or a restart) steps replay the journal and write nothing."""

    def __init__(
        self,
        engine: Engine,
        collector: ResultCollector,
        scenario_doc: dict[str, Any],
        store: Store | None,
        settings: StoreSettings,
    ) -> None:
        self.engine = engine
        self.collector = collector
        self.scenario_doc = scenario_doc
        self.store = store
        self.settings = settings
        self.head = engine.tick
        self._action_ids = [a.id for a in engine.scenario.actions if a.id]
        self._last_snapshot = engine.tick
        self._events_since_snapshot = 0
        self._account_state_tick = -1
        self._events_saved = len(collector.events)
        self._snapshot_ticks: set[int] = set()
        self._writer = (
            StoreWriter(lambda: store.transaction(grouped=True)) if store is not None else None
        )
        # A tick failed to commit: the engine is past the store, which must not be written on.
        self._broken = False
        self._replay: list[tuple[int, tuple[StoredCommand, ...], dict[int, Any], str | None]] = []
        self.queued: list[Queued] = []
        # A feed's store opened to look at: behind its head, ticks come from its messages.
        self._recorded: RecordedFeed | None = None
        self.on_snapshot: Callable[[int], None] | None = None
        # A caller that takes the snapshots itself (a feed's, between whole messages).
        self.snapshots_by_caller = False
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # ----- opening ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        source: str | Path | dict[str, Any],
        store_path: str | Path | None = None,
        *,
        first: Callable[[Store], None] | None = None,
        settings_for: Callable[[Engine], StoreSettings] = StoreSettings.for_engine,
    ) -> Session:
        """A new run of a scenario (a file path or a decoded document), with a new store when
        `store_path` is given; `first` writes what else belongs in its first transaction. Bad
        input raises InputError and writes nothing."""
        doc = source if isinstance(source, dict) else read_scenario_doc(Path(source))
        scenario = parse_scenario(doc)
        engine = Engine(scenario)
        settings = settings_for(engine)
        store = None
        if store_path is not None:
            # The store appears at its path only with its first tick in (a run killed before
            # that leaves no store, rather than one that cannot be resumed).
            store = Store.create(store_path, doc, asdict(settings), publish=False)
        session = cls(engine, ResultCollector(engine), doc, store, settings)
        if store is not None:
            session._begin_store({}, first)
        return session

    @classmethod
    def fork(
        cls,
        engine: Engine,
        collector: ResultCollector,
        doc: dict[str, Any],
        store_path: str | Path,
        settings: StoreSettings,
        meta: dict[str, str],
        parent: Path,
        snapshot_tick: int,
        beside: Callable[[Store], None] | None = None,
    ) -> Session:
        """A new store that begins at `engine`'s tick (a what-if branch, core/whatif/): the
        header with `meta`, the state as given and the collector's events as its first snapshot;
        the run goes on live from there. Nothing is left at the path on failure.

        The reference data and the event chunks up to `snapshot_tick` (the parent's snapshot the
        engine was loaded from, with the collector holding only the events after it) are copied
        from the store at `parent` as stored, never read into Python. `beside` writes in the
        same first transaction, the parent attached (a feed's branch: its messages)."""
        store = Store.create(store_path, doc, asdict(settings), publish=False)
        session = cls(engine, collector, doc, store, settings)
        session._events_saved = 0

        def first(store: Store) -> None:
            store.copy_event_chunks(snapshot_tick)
            if beside is not None:
                beside(store)

        session._begin_store(meta, first, parent=parent)
        return session

    @property
    def stored_events(self) -> tuple[int, int]:
        """(the tick of the snapshot the session was loaded from or last wrote, how many of the
        collector's events the store's chunks up to it hold)."""
        return self._last_snapshot, self._events_saved

    def _begin_store(
        self,
        meta: dict[str, str],
        first: Callable[[Store], None] | None = None,
        parent: Path | None = None,
    ) -> None:
        """The first transaction of a new store (reference data, the first tick's row and
        snapshot, what `first` writes), then the store published at its path. With `parent`,
        the reference data is the store's there, copied, and `first` may read it (`parent.`)."""
        store, engine = self.store, self.engine
        assert store is not None
        try:
            if parent is not None:
                store.attach_parent(parent)
            with store.transaction():
                for key, value in meta.items():
                    store.set_meta(key, value)
                if parent is not None:
                    store.copy_reference()
                else:
                    store.write_reference(
                        (_instrument_row(i) for i in engine.instruments),
                        engine.book.account_ids,
                        len(engine.scenario.accounts),
                    )
                store.write_tick(engine.tick, engine.now, [], [], engine.state_hash())
                store.write_prices(engine.tick, engine.now, self._price_points())
                self._write_snapshot()
                if first is not None:
                    first(store)
            if parent is not None:
                store.detach_parent()
            store.publish()
        except BaseException as error:
            self._writer_close()
            store.discard()
            if isinstance(error, sqlite3.Error) and store_write_error(store.path, error):
                raise files.write_error(store.path, os_error(error), existed=False) from None
            raise

    @classmethod
    def open(
        cls,
        store_path: str | Path,
        *,
        at: int | None = None,
        step: bool = True,
        read_only: bool = False,
        events: bool = True,
    ) -> Session:
        """Reopen a store at its last committed tick (or at tick `at`): the last snapshot plus the
        journal after it. Commands journaled after the head wait for the next tick. With `step`
        off the session stays at the snapshot, behind the head (a feed's store replays its
        messages from there). `read_only` opens the file so that nothing can write it (a
        what-if's parent). With `events` off the collector holds only the events after the
        snapshot: a what-if branch copies the chunks before it as stored, unread."""
        store = Store.open(store_path, read_only=read_only)
        settings = StoreSettings(**store.settings)
        snapshot_tick, engine, collector = _load(store, at, events)
        session = cls(engine, collector, store.scenario_doc, store, settings)
        session._events_saved = len(collector.events)
        session.head = store.head_tick() or 0
        stated = store.conn.execute("SELECT max(tick) FROM account_state").fetchone()[0]
        session._account_state_tick = -1 if stated is None else stated
        session._last_snapshot = snapshot_tick
        session._load_replay(snapshot_tick)
        if not step:
            return session
        if store.feed_url is not None:
            session._recorded = RecordedFeed(store, engine, session._replay_step)
        target = session.head if at is None else min(at, session.head)
        while session.engine.tick < target:
            session.step()
        if session._recorded is not None:
            session._recorded.drain()
        if at is None and session._recorded is None:
            for stored in store.pending_commands(session.head):
                session._queue(stored.seq, stored.command)
        return session

    def close(self) -> None:
        """Close the store; a small book's per-account table is brought up to the live tick
        first (a big book's is written only when asked, `update_account_state`), and the live
        tick's state hash recorded, unless a tick failed to commit (the store then ends at its
        last committed tick, and the failure is raised)."""
        try:
            self._writer_close()
            stale = self._account_state_tick != self.engine.tick
            small = len(self.engine.book) <= BIG_BOOK
            writable = self.store is not None and not self.store.read_only
            if writable and not self._broken and self.live:
                assert self.store is not None
                with self.store.transaction():
                    self.store.record_hash(self.engine.tick, self.engine.state_hash())
                    if stale and small:
                        self._write_account_state()
        finally:
            if self.store is not None:
                self.store.close()
                self.store = None

    def _writer_close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except BaseException:
                self._broken = True
                raise

    # ----- the clock ----------------------------------------------------------------------

    @property
    def tick(self) -> int:
        return self.engine.tick

    @property
    def finished(self) -> bool:
        """At the run's end; a feed's store opened to look at ends at its head (what comes
        after is the feed's to bring, not the engine's to make up)."""
        return self.engine.finished or (self._recorded is not None and self.live)

    @property
    def live(self) -> bool:
        return self.engine.tick >= self.head

    def step(self) -> list[Event]:
        """One tick: replayed from the journal behind the head (a feed's store: from its
        recorded messages), journaled past it."""
        if self._recorded is not None:
            # What comes after the head is the feed's to bring, not the engine's to make up.
            if self.live:
                raise Refusal(
                    "recorded_feed",
                    "a feed's store opened to look at ends at its head: commands go through the feed",
                )
            return self._recorded.advance()
        if not self.live:
            return self._replay_step()
        if self._broken and self.store is not None:
            raise WriteError(
                str(self.store.path),
                "a tick failed to commit; the store ends at its last committed tick: reopen it "
                "to go on",
            )
        if self.queued and self.store is not None:
            try:
                return self._step_commands()
            except BaseException:
                self._broken = True
                raise
        for queued in self.queued:
            authority = queued.action.authority or trusted(None, queued.command)
            self._insert(replace(queued.action, authority=authority))
        self.queued = []
        events = self.engine.step()
        self.collector.feed(events)
        self.head = self.engine.tick
        if self.store is not None:
            try:
                self._journal(events)
            except BaseException:
                self._broken = True
                raise
        return events

    def run_to_end(self, progress: Callable[[int], None] | None = None) -> None:
        while not self.finished:
            self.step()
            if progress is not None:
                progress(self.engine.tick)

    def seek(self, tick: int) -> None:
        """Jump to `tick`: back from the nearest snapshot (replaying the journal, writing nothing),
        or forward by stepping."""
        last = (
            self.head if self._recorded is not None else max(self.engine.ticks_total - 1, self.head)
        )
        if tick < 0 or tick > last:
            raise InputError("tick", f"expected a tick from 0 to {last}, found {tick}")
        if tick < self.engine.tick:
            self.flush()
            if self.store is None:
                raise InputError("tick", "a run without a store cannot go back in time")
            snapshot_tick, self.engine, self.collector = _load(self.store, tick)
            self._last_snapshot = snapshot_tick
            self._events_saved = len(self.collector.events)
            self._load_replay(snapshot_tick)
            self._reload_recorded()
        while self.engine.tick < tick:
            self.step()
        if self._recorded is not None:
            self._recorded.drain()

    def result(self) -> dict[str, Any]:
        return self.collector.result()

    # ----- commands -----------------------------------------------------------------------

    def submit(self, raw: dict[str, Any], *, role: str | None = None) -> ActionSpec:
        """An operator command (a risk-scenario/1 action without `at`): validated, journaled and
        audited at once (one transaction), and applied at the next tick. Bad fields raise
        InputError and change nothing.

        With a store the command is given under its operator's last login (a Refusal when there
        is none) and `role` is only recorded: the role that counts is the one the store's
        operators table holds when the command applies. Without a store the caller's `role` is
        trusted."""
        if self._recorded is not None:
            raise Refusal(
                "recorded_feed",
                "a feed's store opened to look at ends at its head: commands go through the feed",
            )
        if not self.live:
            raise Refusal(
                "not_live", "the view is behind the live end of the run; jump to the end to act"
            )
        command = {k: v for k, v in raw.items() if k not in ("at", LOGIN_FIELD)}
        command["at"] = iso(self.engine.now)
        if role is not None:
            command[ROLE_FIELD] = role
        action = parse_command(self.engine.scenario, command, self._action_ids)
        seq = None
        if self.store is not None:
            login = latest_login(self.store.db, action.operator)
            if login is None:
                raise Refusal("login", f"{action.operator} has not logged in to this store")
            command[LOGIN_FIELD] = login
            self.flush()
            with self.store.transaction():
                seq = self.store.write_command(self.engine.tick + 1, self.engine.now, command)
                audit.append(
                    self.store.db,
                    at=self.clock(),
                    operator=action.operator,
                    kind=audit_kind(action.action),
                    subject=action_subject(action),
                    reason=action.reason,
                    before=commands.state_before(self.engine, action),
                    after=audit_after(command, seq),
                )
        if action.id:
            self._action_ids.append(action.id)
        self.queued.append(Queued(seq, command, action))
        return action

    def carry(self, command: dict[str, Any], authority: dict[str, Any] | None) -> None:
        """A command journaled in another store (a what-if's parent) that applied there at the
        next tick: journaled here and queued with the authority it carried there, so that it
        applies or is refused the same way."""
        assert self.store is not None and self.live
        if THRESHOLDS_FIELD in command:
            self.set_thresholds(command[THRESHOLDS_FIELD])
            return
        self.flush()
        with self.store.transaction():
            seq = self.store.write_command(self.engine.tick + 1, self.engine.now, command)
        action = commands.parse_journaled(self.engine, seq, command, self._action_ids)
        carried = action.authority or from_row(seq, authority)
        self.queued.append(
            Queued(seq, command, replace(action, authority=replace(carried, command=seq)))
        )

    def apply_pending(self) -> list[Event]:
        """Apply the commands waiting for the next tick, also after the scenario's end (one more
        tick of time then passes, at the last prices)."""
        if not (self.queued or self.engine.controls.pending_actions) or not self.live:
            return []
        return self.step()

    def _step_commands(self) -> list[Event]:
        """The live tick that applies the queued commands, each with the authority it carries
        now (core/desk/authority.py). A command that raises while it applies is refused instead and
        the tick is stepped again from the store, so nothing of it stays; the others apply."""
        assert self.store is not None
        self.flush()
        queued, self.queued = self.queued, []
        head = self.head
        authorities = {
            q.seq: q.action.authority or authorize(self.store.db, q.seq, q.command) for q in queued
        }
        while True:
            try:
                return self._try_tick(queued, authorities)
            except Exception as error:
                culprit = commands.culprit(error, queued, authorities)
                if culprit is None:
                    raise
                authorities = {**authorities, culprit: failed(culprit, error)}
            self._rebuild(head, queued)

    def _try_tick(
        self, queued: list[Queued], authorities: dict[int | None, Authority]
    ) -> list[Event]:
        for q in queued:
            self._insert(replace(q.action, authority=authorities[q.seq]))
        events = self.engine.step()
        self.collector.feed(events)
        self.head = self.engine.tick
        self._journal(events, [authorities[q.seq] for q in queued])
        return events

    def _rebuild(self, head: int, queued: list[Queued]) -> None:
        """The engine as the store holds it at `head`, after a tick that failed part-way."""
        assert self.store is not None
        self.head = head
        snapshot_tick, self.engine, self.collector = _load(self.store, head)
        self._last_snapshot = snapshot_tick
        self._events_saved = len(self.collector.events)
        self._events_since_snapshot = 0
        stated = self.store.conn.execute("SELECT max(tick) FROM account_state").fetchone()[0]
        self._account_state_tick = -1 if stated is None else stated
        self._load_replay(snapshot_tick)
        self._reload_recorded()
        while self.engine.tick < head:
            self.step()
        self._action_ids += [q.action.id for q in queued if q.action.id]

    def set_thresholds(self, changes: dict[str, Any]) -> tuple[Any, Any]:
        """Change surveillance thresholds from the next tick on: validated (InputError names the
        threshold, nothing changes), journaled so a replay makes the same change at the same
        tick. Returns (before, after); the caller audits it (core/desk/alerts.py)."""
        if self._recorded is not None:
            raise Refusal(
                "recorded_feed",
                "a feed's store opened to look at ends at its head: commands go through the feed",
            )
        if not self.live:
            raise Refusal(
                "not_live", "the view is behind the live end of the run; jump to the end to act"
            )
        surveillance = self.engine.surveillance
        before = surveillance.thresholds
        after = parse_thresholds(changes, before)
        command = {THRESHOLDS_FIELD: changes, "at": iso(self.engine.now)}
        if self.store is not None:
            self.flush()
            with self.store.transaction():
                self.store.write_command(self.engine.tick + 1, self.engine.now, command)
        surveillance.thresholds = after
        return before, after

    def _queue(self, seq: int, command: dict[str, Any]) -> None:
        """A journaled command not applied yet: it waits for the next live tick."""
        if THRESHOLDS_FIELD in command:
            self.engine.surveillance.set_thresholds(**command[THRESHOLDS_FIELD])
            return
        self.queued.append(
            Queued(
                seq, command, commands.parse_journaled(self.engine, seq, command, self._action_ids)
            )
        )

    def _insert(self, action: ActionSpec) -> None:
        bisect.insort(self.engine.controls.pending_actions, action, key=lambda a: a.at)

    # ----- the store ----------------------------------------------------------------------

    def _passed_snapshot(self, tick: int) -> None:
        """Replaying past a tick the store has a snapshot of: its events are saved already."""
        if tick in self._snapshot_ticks:
            self._last_snapshot = tick
            self._events_saved = len(self.collector.events)
            self._events_since_snapshot = 0

    def _load_replay(self, after: int) -> None:
        """Prepare to replay the journal after the snapshot at tick `after`; the ids of commands
        up to that snapshot are known already (replayed ones are added as they apply)."""
        assert self.store is not None
        self._action_ids = [a.id for a in self.engine.scenario.actions if a.id]
        self._action_ids += [
            c.command["id"]
            for t in self.store.journal(-1, after)
            for c in t.commands
            if c.command.get("id")
        ]
        self._snapshot_ticks = set(self.store.snapshot_ticks())
        self._replay = [
            (t.tick, t.commands, t.authorities, t.state_hash)
            for t in self.store.journal(after, self.head)
        ]
        self._replay.reverse()

    def _reload_recorded(self) -> None:
        """A feed's store looked at: its messages again from the snapshot just loaded."""
        if self._recorded is not None and self.store is not None:
            self._recorded = RecordedFeed(self.store, self.engine, self._replay_step)

    def _replay_step(self) -> list[Event]:
        tick, journaled, authorities, recorded = self._replay.pop()
        for stored in journaled:
            if THRESHOLDS_FIELD in stored.command:
                self.engine.surveillance.set_thresholds(**stored.command[THRESHOLDS_FIELD])
                continue
            action = commands.parse_journaled(
                self.engine, stored.seq, stored.command, self._action_ids
            )
            authority = action.authority or from_row(stored.seq, authorities.get(stored.seq))
            self._insert(replace(action, authority=authority))
        events = self.engine.step()
        self.collector.feed(events)
        if self.engine.tick != tick:
            raise InputError(
                "STORE", f"the journal skips from tick {self.engine.tick - 1} to {tick}"
            )
        if recorded is not None and self.engine.state_hash() != recorded:
            raise InputError(
                "STORE", f"replaying tick {tick} gives another state than the run recorded"
            )
        self._passed_snapshot(tick)
        return events

    def _journal(self, events: list[Event], authorities: list[Authority] | None = None) -> None:
        store, engine, settings = self.store, self.engine, self.settings
        assert store is not None
        tick = engine.tick
        self._events_since_snapshot += len(events) + 1
        snapshot_due = not self.snapshots_by_caller and (self.snapshot_wanted or engine.finished)
        operator_side = authorities or any(isinstance(e, OPERATOR_EVENTS) for e in events)
        every = settings.hash_every
        hashed = snapshot_due or operator_side or (every and tick % every == 0)
        state_hash = engine.state_hash() if hashed else None
        prices = (
            self._price_points() if tick % settings.price_every == 0 or engine.finished else None
        )
        if not snapshot_due and not operator_side:
            # Nothing here reads the engine any more: held, to commit with the ticks after it.
            now = engine.now

            self._writer.put(
                lambda: self._write_plain_tick_rows(tick, now, events, state_hash, prices)
            )
            return
        self.flush()
        with store.transaction():
            for authority in authorities or ():
                store.write_authority(tick, engine.now, to_row(authority))
            self._write_plain_tick_rows(tick, engine.now, events, state_hash, prices)
            record_operator_side(store, engine, events, self.clock())
            if snapshot_due:
                self._write_snapshot()
        if snapshot_due and self.on_snapshot is not None:
            self.on_snapshot(tick)

    def _write_plain_tick_rows(
        self,
        tick: int,
        now: datetime,
        events: list[Event],
        state_hash: str | None,
        prices: list[tuple[str, str, float]] | None,
    ) -> None:
        assert self.store is not None
        self.store.write_tick(tick, now, [], events, state_hash)
        alerts.record(self.store.db, events, tick=tick)
        if prices is not None:
            self.store.write_prices(tick, now, prices)

    @property
    def snapshot_wanted(self) -> bool:
        """Whether enough ticks or events passed since the last snapshot for the next one."""
        return (
            self.engine.tick - self._last_snapshot >= self.settings.snapshot_ticks
            or self._events_since_snapshot >= self.settings.snapshot_events
        )

    def snapshot(self, beside: Callable[[Store], None]) -> None:
        """A snapshot now, in one transaction with what `beside` writes (a caller that takes its
        own snapshots, at moments the engine's stepping alone cannot tell)."""
        assert self.store is not None
        self.flush()
        # A second snapshot of one tick would replace its event chunk with an empty one.
        again = self.engine.tick == self._last_snapshot
        with self.store.transaction():
            if not again:
                # Its tick's row is written already, maybe without a hash: a restart checks it.
                self.store.record_hash(self.engine.tick, self.engine.state_hash())
                self._write_snapshot()
            beside(self.store)
        if self.on_snapshot is not None and not again:
            self.on_snapshot(self.engine.tick)

    def write_later(self, write: Callable[[Store], None]) -> None:
        """A write of the caller's, committed in order with the ticks (held with them)."""
        store, writer = self.store, self._writer
        assert store is not None and writer is not None
        writer.put(lambda: write(store))

    def flush(self) -> None:
        """Commit every tick stepped so far (those held for a group commit)."""
        if self._writer is not None:
            self._writer.flush()

    def _price_points(self) -> list[tuple[str, str, float]]:
        engine = self.engine
        points = [("index", name, float(price)) for name, price in engine.index_now.items()]
        for k, inst in enumerate(engine.instruments):
            points.append(("mark", inst.symbol, float(engine.marks[k])))
            last = engine.liquidity[k].last_price
            if last is not None and math.isfinite(last):
                points.append(("last", inst.symbol, float(last)))
        return points

    def update_account_state(self) -> bool:
        """Bring the per-account table to the live tick; returns whether it was written. A big
        book's table is written only here (its export asks): at 1M accounts it takes seconds,
        which no snapshot, close or replay should wait for."""
        if self._account_state_tick == self.engine.tick:
            return False
        assert self.store is not None and not self.store.read_only and self.live
        with self.store.transaction():
            self._write_account_state()
        return True

    def _write_account_state(self) -> None:
        from core.store.queries import account_state_rows

        assert self.store is not None
        self.store.replace_account_state(account_state_rows(self.engine))
        self._account_state_tick = self.engine.tick

    def _write_snapshot(self) -> None:
        engine = self.engine
        assert self.store is not None
        compress = len(engine.book) <= BIG_BOOK
        events = self.collector.events
        self.collector.events = []
        try:
            state = dump_state((engine, self.collector), compress=compress)
        finally:
            self.collector.events = events
        self.store.write_snapshot(engine.tick, engine.now, state)
        chunk = events[self._events_saved :]
        self.store.write_event_chunk(engine.tick, dump_state(chunk, compress=compress))
        self._events_saved = len(events)
        if len(engine.book) <= BIG_BOOK:
            self._write_account_state()
        self._last_snapshot = engine.tick
        self._events_since_snapshot = 0


def _instrument_row(inst: Any) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "type": inst.kind,
        "family": inst.family,
        "settle_currency": inst.settle_currency,
        "contract_value": str(inst.contract_value),
        "tick_size": str(inst.tick_size),
        "expiry": iso(inst.expiry) if inst.expiry is not None else None,
    }


def _load(store: Store, at: int | None, events: bool = True) -> tuple[int, Engine, ResultCollector]:
    """The engine and result collector of the last snapshot at or before `at`, with the
    collector's events gathered from the event chunks written up to it (or none)."""
    tick, (engine, collector) = store.load_snapshot(at)
    collector.events = store.load_event_chunks(tick) if events else []
    return tick, engine, collector
