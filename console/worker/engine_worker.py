"""The engine's worker thread: a session stepped at the chosen speed, commands taken between ticks,
immutable snapshots out at most about ten times a second (ticks coalesced, and none built while
the UI still digests the last), the operations docks' state, answers to their store queries
(core.desk.queries: the UI thread runs no SQL) and the outcome of each command. A store write the
disk refuses stops the run and is said in one line (`store_failed`); the store stays resumable."""

from __future__ import annotations

import gc
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from console.worker.feed_driver import FeedDriver
from console.worker.feed_side import FeedSide
from console.worker.operations import Outcome, engine_outcomes, failure, operations_state
from console.worker.pacing import (
    FREEZE_SECONDS,
    OPERATIONS_SECONDS,
    PUBLISH_SECONDS,
    SILENT_SECONDS,
    STEP_BUDGET_SECONDS,
    UI_WAIT_SECONDS,
    averaged_build_cost,
)
from console.worker.readers import action_context
from core.desk.alerts import AlertDesk
from core.desk.operators import Operator
from core.desk.queries import DeskAnswer, DeskQueries, Login
from core.feed.transports import is_feed_url
from core.model.errors import InputError, WriteError
from core.model.events import ClawbackComputed
from core.model.operations import Refusal
from core.session.session import Session
from core.session.snapshot import TableSpec
from core.session.snapshot_builder import SnapshotBuilder
from core.store.schema import store_write_error


class EngineWorker(FeedSide, QObject):
    """Owns the Session (and so its SQLite connection): lives and runs on the worker thread."""

    snapshot = Signal(object)
    failed = Signal(str, str)  # field, message
    accepted = Signal(str)
    refused = Signal(str, str)  # code, reason
    outcome = Signal(object)  # Outcome
    operations = Signal(object)  # OperationsState
    context_ready = Signal(object, str)  # ActionContext, the action to open the dialog on
    preview_ready = Signal(object, object)  # (family, currency, price), preview or InputError
    answered = Signal(int, object)  # token, DeskAnswer
    store_failed = Signal(str)  # the one line saying what failed; the run stopped
    _sent = Signal(object)  # Sent, from the feed link's sender thread

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        # Set when a store write failed: the session writes nothing more and steps no further.
        self.write_failure: str | None = None
        self.publish_operations = False
        self.family: str | None = None
        self._last_operations = 0.0
        self.builder: SnapshotBuilder | None = None
        self.spec = TableSpec()
        self.playing = False
        self.speed = 0.0
        self.notice: str | None = None
        self.awaiting_ui = False
        self._dirty = False
        self._fresh = False
        self._last_publish = 0.0
        self._build_seconds = 0.0  # what recent snapshots took to build, on average
        self._frozen_at = 0.0
        self._play_origin = (0.0, 0)
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        # Set while the UI is idle; the play loop waits on it before each tick so that the
        # engine does not compete for the GIL while the UI applies and paints a snapshot.
        self.ui_idle = threading.Event()
        self.ui_idle.set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._run)
        # On a live feed: the link's arrivals applied as they come, commands sent into the
        # stream (their outcome comes back from the sender thread through `_sent`).
        self.feed: FeedDriver | None = None
        self.silent_seconds = SILENT_SECONDS
        self._feed_timer = QTimer(self)
        self._feed_timer.timeout.connect(self._pull)
        self._sent.connect(self._on_sent)
        self._sending: dict[int, str | None] = {}
        self._feed_failed = False

    # ----- commands (queued from the UI) ---------------------------------------------------

    @Slot(object, object)
    def open(self, source: object, store_path: object) -> None:
        """Open a scenario (path or document) into a store, reopen a store (`.sqlite`), or
        connect to a feed (nats://, .jsonl) with a store of this desk's."""
        self._close_session()
        self.write_failure = None
        if isinstance(source, str) and is_feed_url(source):
            self._open_feed(source, store_path)
            return
        try:
            self.session = _open_session(source, store_path, self._temp_store)
        except (InputError, OSError, ValueError) as error:
            field = error.field if isinstance(error, InputError) else "source"
            message = error.message if isinstance(error, InputError) else str(error)
            self.failed.emit(field, message)
            return
        self.builder = SnapshotBuilder(self.session)
        self.notice = None
        self._rate.clear()
        self._publish(force=True, fresh=True)

    @Slot()
    def play(self) -> None:
        if self.feed is not None:
            return
        if self.session is None or self.session.finished or self._stopped():
            return
        self.playing = True
        self.notice = None
        self._play_origin = (time.perf_counter(), self.session.tick)
        self._dirty = True
        self._timer.start(0)

    @Slot()
    def pause(self) -> None:
        if self.feed is not None:
            return
        self.playing = False
        self._timer.stop()
        self._publish(force=True, fresh=True)

    @Slot(int)
    def step(self, ticks: int) -> None:
        if self.session is None or self.feed is not None or self._stopped():
            return
        self.playing = False
        with self._store_writes():
            for _ in range(max(1, ticks)):
                if self.session.finished:
                    break
                self._step_once()
        self._publish(force=True, fresh=True)

    @Slot(float)
    def set_speed(self, speed: float) -> None:
        self.speed = max(0.0, float(speed))
        if self.session is not None:
            self._play_origin = (time.perf_counter(), self.session.tick)
        self._dirty = True

    @Slot(int)
    def seek(self, tick: int) -> None:
        session = self.session
        if session is None or self.builder is None or self.feed is not None or self._stopped():
            return
        target = max(0, min(int(tick), session.engine.ticks_total - 1))
        with self._store_writes():
            self._seek(session, target)
        self._play_origin = (time.perf_counter(), session.tick)
        self._publish(force=True, fresh=True)

    def _seek(self, session: Session, target: int) -> None:
        assert self.builder is not None
        try:
            if target < session.tick:
                session.seek(target)
                self.builder.rewind()
                self.release_dropped()
            else:
                while session.tick < target:
                    self._step_once(pause_on_pending=False)
        except InputError as error:
            self.failed.emit(error.field, error.message)

    @Slot(object)
    def set_spec(self, spec: object) -> None:
        if isinstance(spec, TableSpec):
            self.spec = spec
            self._publish(force=True)

    @Slot(object)
    def watch(self, account: object) -> None:
        if self.builder is not None:
            self.builder.watch(account if isinstance(account, str) and account else None)
            self._publish(force=True)

    @Slot()
    def release_dropped(self) -> None:
        """Let the collector reclaim what was frozen and has since been dropped: an engine
        replaced by a seek back, a closed session, a finished what-if branch (an engine's objects
        refer to each other, so only the collector frees them, and frozen it never looks). One
        full pass (0.12-0.14 s at 1M positions), then what lives is frozen again. Only this
        thread freezes, so no freeze can fall between the thaw and the pass."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._frozen_at = time.perf_counter()

    @Slot(object, object, int)
    def submit(self, raw: object, role: object, token: int = 0) -> None:
        """Journal and audit an operator command; it applies at the next tick (at once when the
        run is over: the session steps once more to apply it)."""
        if self.session is None or not isinstance(raw, dict):
            return
        operator = str(raw.get("operator", "")) or None
        kind = str(raw.get("action", "")) or None
        if self.write_failure is not None:
            self.outcome.emit(failure(Refusal("store", self.write_failure), operator, token, kind))
            return
        if self.feed is not None:
            self._send(raw, operator, token, kind)
            return
        try:
            with self._store_writes(reraise=True):
                action = self.session.submit(raw, role=role if isinstance(role, str) else None)
        except InputError as error:
            self.failed.emit(error.field, error.message)
            self.outcome.emit(failure(error, operator, token, kind))
            return
        except Refusal as refusal:
            self.refused.emit(refusal.code, refusal.reason)
            self.outcome.emit(failure(refusal, operator, token, kind))
            return
        except (WriteError, sqlite3.Error):
            assert self.write_failure is not None
            self.outcome.emit(failure(Refusal("store", self.write_failure), operator, token, kind))
            return
        self.accepted.emit(action.action)
        subject = action.id or action.action
        when = "now" if self.session.finished else "at the next tick"
        text = f"{subject} sent; it applies {when}"
        self.outcome.emit(Outcome(True, text, operator, token, action=action.action))
        if self.session.finished and self.builder is not None:
            with self._store_writes():
                self._after_tick(self.session.apply_pending())
        self._publish(force=True, fresh=True)

    @Slot(object, str, str, int)
    def set_thresholds(self, changes: object, operator: str, reason: str, token: int = 0) -> None:
        """Surveillance thresholds changed by `operator`: checked, applied and journaled by the
        session, recorded and audited in the store (core.desk.alerts.AlertDesk)."""
        session = self.session
        if session is None or session.store is None or not isinstance(changes, dict):
            return
        desk = AlertDesk(
            session.store.db, operator, session.clock, apply_thresholds=session.set_thresholds
        )
        if self.write_failure is not None:
            self.outcome.emit(failure(Refusal("store", self.write_failure), operator, token))
            return
        try:
            with self._store_writes(reraise=True):
                # The writer thread shares the connection: its tick transaction must be over
                # before this one begins (or the audit row would join the tick's).
                session.flush()
                changed = desk.set_thresholds(changes, reason)
        except (WriteError, sqlite3.Error):
            assert self.write_failure is not None
            self.outcome.emit(failure(Refusal("store", self.write_failure), operator, token))
            return
        except (InputError, Refusal) as error:
            self.outcome.emit(failure(error, operator, token))
            return
        listed = ", ".join(f"{k} = {v}" for k, v in changed.items()) or "nothing"
        self.outcome.emit(Outcome(True, f"thresholds changed: {listed}", operator, token))
        self._publish(force=True)

    @Slot(bool)
    def set_operations(self, on: bool) -> None:
        """Publish the operations docks' state (someone is logged in) or stop."""
        self.publish_operations = bool(on)
        if on:
            self._send_operations()

    @Slot(object)
    def set_family(self, family: object) -> None:
        self.family = family if isinstance(family, str) else None
        self._send_operations()

    @Slot(str, str, object, str)
    def request_context(self, operator: str, role: str, account: object, action: str) -> None:
        """What the action dialog needs about `account` (None: the fund), read here."""
        if self.session is None:
            return
        try:
            context = action_context(
                self.session.engine, operator, role, account if isinstance(account, str) else None
            )
        except InputError as error:
            self.outcome.emit(failure(error, operator))
            return
        self.context_ready.emit(context, action)

    @Slot(str, str, str)
    def request_preview(self, family: str, currency: str, price: str) -> None:
        """A clawback preview at a typed price, computed on the engine."""
        if self.session is None:
            return
        key = (family, currency, price)
        try:
            preview: object = self.session.engine.settlements.preview(
                family, currency, Decimal(price)
            )
        except InputError as error:
            preview = error
        except (InvalidOperation, KeyError, ValueError) as error:
            preview = InputError("price", f"no preview at {price}: {error}")
        self.preview_ready.emit(key, preview)

    @Slot(int, object)
    def answer(self, token: int, query: object) -> None:
        """A store query of the operator views (core.desk.queries), run on this thread's
        connection between ticks."""
        session = self.session
        if session is None or session.store is None:
            result: DeskAnswer = InputError("store", "no run is open")
        else:
            try:
                with self._store_writes(reraise=True):
                    session.flush()  # as in set_thresholds: no write inside the writer's tick
                    result = DeskQueries(session.store.db).answer(query)
            except (WriteError, sqlite3.Error):
                result = InputError("store", str(self.write_failure))
        if self.feed is not None and isinstance(query, Login) and isinstance(result, Operator):
            self._unlock_key(query)
        self.answered.emit(token, result)

    @Slot()
    def ui_ready(self) -> None:
        """The UI applied the last snapshot: publish a pending one now if it is due."""
        self.awaiting_ui = False
        if self._dirty and not self.playing:
            self._publish(force=True)

    @Slot()
    def shutdown(self) -> None:
        self.playing = False
        self._timer.stop()
        self._close_session()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
        thread = self.thread()
        if thread is not None:
            thread.quit()

    # ----- the play loop -------------------------------------------------------------------

    def _temp_store(self) -> Path:
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="risk-console-")
        return Path(self._tempdir.name) / f"run-{time.time_ns()}.sqlite"

    def _close_session(self) -> None:
        session, self.session = self.session, None
        self.builder = None
        feed, self.feed = self.feed, None
        if feed is not None:
            self._feed_timer.stop()
            self.playing = False
            feed.link.close()
        if session is not None:
            # A failed write is raised again here; the store is closed all the same.
            with self._store_writes(session):
                session.close()
        if session is not None or feed is not None:
            del session, feed
            self.release_dropped()

    def _stopped(self) -> bool:
        """A store write failed: say so again rather than step on."""
        if self.write_failure is None:
            return False
        self.notice = self.write_failure
        self._publish(force=True)
        return True

    @contextmanager
    def _store_writes(
        self, session: Session | None = None, *, reraise: bool = False
    ) -> Iterator[None]:
        """Stop the run when a store write fails inside the block, say in one line what failed
        and that the store is kept at its last committed tick, and go on (or re-raise, for a
        caller that also answers the command). The ticks stepped inside commit at its end
        (together: one group commit per burst of stepping)."""
        try:
            yield
            chosen = session or self.session
            if chosen is not None:
                chosen.flush()
        except (WriteError, sqlite3.Error) as error:
            self._write_failed(error, session or self.session)
            if reraise:
                raise

    def _write_failed(self, error: WriteError | sqlite3.Error, session: Session | None) -> None:
        store = session.store if session is not None else None
        path = str(store.path) if store is not None else "the store"
        described = error if isinstance(error, WriteError) else store_write_error(path, error)
        if described is None:  # an SQLite error of no disk: the tick was rolled back all the same
            described = WriteError(path, f"cannot use the store ({error})")
        self.playing = False
        self._timer.stop()
        if self.write_failure is None:
            self.write_failure = f"Run stopped: {described}"
            self.store_failed.emit(self.write_failure)
        self.notice = self.write_failure

    def _step_once(self, *, pause_on_pending: bool = True) -> None:
        assert self.session is not None and self.builder is not None
        events = self.session.step()
        self._after_tick(events, pause_on_pending=pause_on_pending)

    def _after_tick(self, events: list[Any], *, pause_on_pending: bool = True) -> None:
        assert self.session is not None and self.builder is not None
        self.builder.record_tick(events)
        for outcome in engine_outcomes(events):
            self.outcome.emit(outcome)
        self._dirty = True
        self._rate.append((time.perf_counter(), self.session.tick))
        for event in events:
            if isinstance(event, ClawbackComputed) and event.status == "pending":
                self.notice = (
                    f"Clawback pending approval: {event.family} {event.currency}, "
                    f"ratio {float(event.ratio):.2%}; play paused"
                )
                if pause_on_pending:
                    self.playing = False
            elif isinstance(event, ClawbackComputed):
                self.notice = (
                    f"Clawback applied: {event.family} {event.currency}, "
                    f"ratio {float(event.ratio):.2%}"
                )

    def _due_tick(self) -> int | None:
        """The tick the clock says play should have reached (None: as fast as possible)."""
        if self.speed <= 0 or self.session is None:
            return None
        began, first = self._play_origin
        seconds = (time.perf_counter() - began) * self.speed
        return first + int(seconds // self.session.engine.scenario.tick_seconds)

    @Slot()
    def _run(self) -> None:
        session = self.session
        if session is None or not self.playing:
            return
        deadline = time.perf_counter() + STEP_BUDGET_SECONDS
        with self._store_writes():
            while self.playing and not session.finished and time.perf_counter() < deadline:
                due = self._due_tick()
                if due is not None and session.tick >= due:
                    break
                self.ui_idle.wait(UI_WAIT_SECONDS)
                self._step_once()
        if session.finished:
            self.playing = False
        self._publish(force=not self.playing, fresh=not self.playing)
        if self.playing:
            self._timer.start(self._wait_ms())

    def _wait_ms(self) -> int:
        due = self._due_tick()
        if due is None or self.session is None or self.session.tick < due:
            return 0
        tick_seconds = self.session.engine.scenario.tick_seconds
        return min(100, max(1, int(1000 * tick_seconds / self.speed)))

    def _ticks_per_second(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        (t0, k0), (t1, k1) = self._rate[0], self._rate[-1]
        if time.perf_counter() - t1 > 1.0 or t1 <= t0:
            return 0.0
        return (k1 - k0) / (t1 - t0)

    def _publish(self, *, force: bool = False, fresh: bool = False) -> None:
        if self.builder is None:
            return
        now = time.perf_counter()
        # A snapshot of a million positions costs a tenth of a second or more to build: space
        # them so that building takes at most a third of the engine thread's time (on average).
        interval = max(PUBLISH_SECONDS, 3 * self._build_seconds)
        if not force and (self.awaiting_ui or now - self._last_publish < interval):
            return
        self._fresh = self._fresh or fresh
        snap = self.builder.build(
            self.spec,
            playing=self.playing,
            speed=self.speed,
            ticks_per_second=self._ticks_per_second(),
            notice=self.notice,
            fresh=self._fresh,
            feed=self.feed.status() if self.feed is not None else None,
        )
        self._fresh = False
        self._dirty = False
        self._last_publish = now
        self._build_seconds = averaged_build_cost(self._build_seconds, time.perf_counter() - now)
        self.awaiting_ui = True
        # Cleared here, not when the UI thread gets to it: the next tick would otherwise start
        # first and contend with the UI's paint for the interpreter lock (each of the paint's
        # entries into Python waits out one of the engine's numpy calls).
        self.ui_idle.clear()
        self.snapshot.emit(snap)
        if now - self._frozen_at >= FREEZE_SECONDS:
            # A full collection walks every object the run made (a million positions' events):
            # 80-160 ms with the interpreter lock held, a frozen screen. What lives this long
            # lives on; frozen, the collector no longer walks it.
            gc.freeze()
            self._frozen_at = now
        if force or now - self._last_operations >= OPERATIONS_SECONDS:
            self._send_operations()

    def _send_operations(self) -> None:
        if not self.publish_operations or self.session is None:
            return
        self._last_operations = time.perf_counter()
        self.operations.emit(operations_state(self.session, self.family, playing=self.playing))


def _open_session(source: object, store_path: object, temp: Any) -> Session:
    if isinstance(source, (str, Path)) and str(source).endswith((".sqlite", ".db")):
        return Session.open(source)
    path = None if store_path is None else Path(str(store_path))
    return Session.start(source if isinstance(source, dict) else Path(str(source)), path or temp())
