"""A feed consumed through a session, with or without a store: every message applied is recorded
by its sequence number, snapshots fall between whole messages with the feed run's own state beside
them, and a reopened store replays its messages and reconnects after the last one it recorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from core.desk import audit
from core.desk.authority import audit_after
from core.desk.requests import action_subject, audit_kind
from core.engine.facade import Engine
from core.feed.consumer import FeedRun
from core.feed.run import feed_result
from core.feed.wire import Unreadable
from core.model.errors import InputError
from core.model.events import Event
from core.session import commands
from core.session.recorded_feed import decoded_message, tick_of
from core.session.session import BIG_BOOK, HASH_EVERY, Session, StoreSettings
from core.store.schema import create_feed_tables
from core.store.store import Store

# A feed has no known end: snapshots by ticks and events passed, not by a share of the run.
FEED_SNAPSHOT_TICKS = 1_000
FEED_SNAPSHOT_EVENTS = 200_000
BIG_BOOK_SNAPSHOT_TICKS = 20_000


def is_feed_store(path: str | Path) -> bool:
    """Whether the store at `path` was written from a feed (`resume` then reconnects to it)."""
    store = Store.open(path)
    try:
        return store.feed_url is not None
    finally:
        store.close()


class FeedSession:
    """One consumer of one feed: the feed run (core/feed/consumer.py) stepping a session."""

    def __init__(self, url: str, store_path: str | Path | None = None) -> None:
        self.url = url
        self.store_path = store_path
        self.session: Session | None = None
        self.run = FeedRun(start=self._start, step=self._step)
        self._text = ""
        # Told each tick's events (a desk records them for its charts, tick by tick).
        self.on_step: Callable[[list[Event]], None] | None = None

    # ----- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, store_path: str | Path) -> FeedSession:
        """Reopen a feed's store: its last snapshot, then the messages it recorded after it
        (replayed, writing nothing again); the feed continues after `recorded`."""
        session = Session.open(store_path, step=False)
        store = session.store
        assert store is not None
        url = store.feed_url
        if url is None or store.branch_of is not None:
            session.close()
            if url is None:
                raise InputError("STORE", f"{store_path} is a scenario's store, not a feed's")
            raise InputError(
                "STORE",
                f"{store_path} is a what-if branch of a feed's store: it holds the original's "
                "messages, replayed, and never follows the feed",
            )
        feed = cls(url, store_path)
        feed._adopt(session)
        try:
            last_seq, state = store.feed_state(session.engine.tick)
            feed.run.restore(session.engine, state)
            for seq, text in list(store.feed_messages(last_seq)):
                feed.run.apply(seq, decoded_message(text))
        except BaseException:
            session.close()
            raise
        return feed

    @classmethod
    def continuing(cls, session: Session, url: str, state: dict[str, Any]) -> FeedSession:
        """The feed run of `url` going on in `session` (a what-if branch's, at its fork) from the
        run's state `state`: the messages applied next are recorded in its store."""
        feed = cls(url, session.store.path if session.store is not None else None)
        feed._adopt(session)
        feed.run.restore(session.engine, state)
        return feed

    def _adopt(self, session: Session) -> None:
        self.session = session
        session.snapshots_by_caller = session.store is not None
        # Rows a desk writes of the commands (requests, audit) carry the exchange's time, the
        # same on every desk of the stream.
        session.clock = lambda: session.engine.now

    def _start(self, doc: dict[str, Any]) -> Engine:
        """The session of the header's exchange; its store's first transaction holds the header
        and the feed run's state at tick 0."""

        def first(store: Store) -> None:
            create_feed_tables(store.db)
            store.set_meta("feed", self.url)
            store.write_feed_messages([(self.run.last_seq, self._text, None)])
            store.write_feed_state(0, self.run.last_seq, self.run.state_doc())

        session = Session.start(doc, self.store_path, first=first, settings_for=_settings)
        self._adopt(session)
        return session.engine

    def _step(self) -> list[Event]:
        assert self.session is not None
        events = self.session.step()
        if self.on_step is not None:
            self.on_step(events)
        return events

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def result(self) -> dict[str, Any]:
        """The run's `risk-result/1`, the feed's refused messages in its `refused`."""
        assert self.session is not None
        return feed_result(self.run, self.session.collector)

    # ----- messages -----------------------------------------------------------------------

    @property
    def recorded(self) -> int:
        """The sequence number of the last message applied (the feed resumes after it)."""
        return self.run.last_seq

    @property
    def ended(self) -> bool:
        return self.run.ended

    def apply(self, seq: int, message: Any) -> list[Event]:
        """Apply the message at `seq`, and record it (and any refusal it brought) in the store."""
        self._text = _text(message)
        if isinstance(message, Unreadable):
            message = f"not JSON: {message.text}"
        refused_before = len(self.run.refused)
        had_session = self.session is not None
        events = self.run.apply(seq, message)
        session = self.session
        if session is None or session.store is None or not had_session:
            return events
        refusals = {
            r.seq: json.dumps({"field": r.field, "reason": r.reason, "kind": r.kind})
            for r in self.run.refused[refused_before:]
        }
        row = (seq, self._text, refusals.pop(seq, None))
        late = list(refusals.items())  # transfers refused at the tick they came due
        entry = self._audit_entry(seq, message)

        def record(store: Store) -> None:
            store.write_feed_messages([row])
            if entry is not None:
                audit.append(store.db, **entry)
            for earlier, refusal in late:
                store.conn.execute(
                    "UPDATE feed_messages SET refused = ? WHERE seq = ?", (refusal, earlier)
                )

        if self.run.ended or session.snapshot_wanted:
            session.snapshot(lambda store: (record(store), self._write_state(store)))
        else:
            session.write_later(record)
        return events

    def _audit_entry(self, seq: int, message: Any) -> dict[str, Any] | None:
        """The audit row of an operator command the stream brought, as a desk's own command
        gets when it is given (taken now: the state before is the engine's now)."""
        action, session = self.run.accepted, self.session
        if action is None or session is None:
            return None
        return {
            "at": session.clock(),
            "operator": action.operator,
            "kind": audit_kind(action.action),
            "subject": action_subject(action),
            "reason": action.reason,
            "before": commands.state_before(session.engine, action),
            "after": audit_after(message["command"], seq),
        }

    def _write_state(self, store: Store) -> None:
        assert self.session is not None
        store.write_feed_state(self.session.engine.tick, self.run.last_seq, self.run.state_doc())

    def consume(self, messages: Iterable[tuple[int, Any]]) -> None:
        """Apply every (sequence, message) until the feed's `end`; an error when it stops first."""
        for seq, message in messages:
            self.apply(seq, message)
            if self.run.ended:
                return
        if self.session is None:
            raise InputError("feed", "no header: the feed holds no exchange to watch")
        raise InputError("feed", f"the feed stopped at message {self.run.last_seq} before its end")


def replay(
    store_path: str | Path,
    *,
    start: int | None = None,
    until: int | None = None,
    events: bool = True,
    on_step: Callable[[Engine, list[Event]], None] | None = None,
) -> tuple[Session, FeedRun]:
    """A feed's store read-only, writing nothing: its snapshot at or before tick `start` (or
    `until`, or its last), then its recorded messages replayed up to the last one that leaves the
    engine at or before tick `until` (or all of them), then on to `until` itself when the next
    message steps past it (its ticks before its own time hold the prices). The session (which
    the caller closes) and the feed run there; `on_step` sees each tick replayed. `events` as in
    `Session.open`."""
    session = Session.open(
        store_path,
        at=until if start is None else start,
        step=False,
        read_only=True,
        events=events,
    )
    store = session.store
    assert store is not None

    def step() -> list[Event]:
        stepped = session.step()
        if on_step is not None:
            on_step(session.engine, stepped)
        return stepped

    run = FeedRun(step=step)
    try:
        if store.feed_url is None:
            raise InputError("STORE", f"{store_path} is a scenario's store, not a feed's")
        last_seq, state = store.feed_state(session.engine.tick)
        run.restore(session.engine, state)
        # Never past the last committed tick: a message recorded beyond it would step live.
        limit = session.head if until is None else min(until, session.head)
        refused = store.refused_feed_seqs(last_seq)
        for seq, text in list(store.feed_messages(last_seq)):
            message = decoded_message(text)
            # A message refused live moved nothing, whatever time it names.
            if seq not in refused and (tick_of(message, session.engine) or 0) > limit:
                if until is not None and session.engine.tick < limit:
                    run.step_to(limit)
                break
            run.apply(seq, message)
    except BaseException:
        session.close()
        raise
    return session, run


def _settings(engine: Engine) -> StoreSettings:
    big = len(engine.book) > BIG_BOOK
    return StoreSettings(
        snapshot_ticks=BIG_BOOK_SNAPSHOT_TICKS if big else FEED_SNAPSHOT_TICKS,
        snapshot_events=1_000_000 if big else FEED_SNAPSHOT_EVENTS,
        hash_every=0 if big else HASH_EVERY,
        price_every=1,
    )


def _text(message: Any) -> str:
    if isinstance(message, Unreadable):
        return message.text
    try:
        return orjson.dumps(message).decode()
    except TypeError:
        return repr(message)[:80]
