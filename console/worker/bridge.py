"""The UI side of the engine's thread (console/worker/engine_worker.py): commands to the worker by
queued signals, and its snapshots, outcomes and answers re-emitted on the UI thread; one bridge
per window."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from console.worker.engine_worker import EngineWorker
from console.worker.pacing import PAINT_TURNS, SWITCH_INTERVAL
from core.session.snapshot import Snapshot, TableSpec


class Bridge(QObject):
    """The UI side: sends commands to the worker and re-emits its snapshots on the UI thread,
    keeping only the latest when several arrive before the UI gets to them."""

    snapshot_ready = Signal(object)
    painted = Signal()  # the views have shown the last snapshot delivered
    failed = Signal(str, str)
    accepted = Signal(str)
    refused = Signal(str, str)
    outcome = Signal(object)
    operations_ready = Signal(object)
    context_ready = Signal(object, str)
    preview_ready = Signal(object, object)
    store_failed = Signal(str)

    _open = Signal(object, object)
    _play = Signal()
    _pause = Signal()
    _step = Signal(int)
    _speed = Signal(float)
    _seek = Signal(int)
    _spec = Signal(object)
    _watch = Signal(object)
    _submit = Signal(object, object, int)
    _thresholds = Signal(object, str, str, int)
    _operations = Signal(bool)
    _family = Signal(object)
    _context = Signal(str, str, object, str)
    _preview = Signal(str, str, str)
    _ask = Signal(int, object)
    _shutdown = Signal()
    _release = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.latest: Snapshot | None = None
        self.operations: Any = None  # the latest OperationsState
        self.received = 0
        self._tokens = 0
        self._replies: dict[int, Callable[[Any], None]] = {}
        self._thread = QThread()
        self._thread.setObjectName("engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self._thread)
        for signal, slot in (
            (self._open, self.worker.open),
            (self._play, self.worker.play),
            (self._pause, self.worker.pause),
            (self._step, self.worker.step),
            (self._speed, self.worker.set_speed),
            (self._seek, self.worker.seek),
            (self._spec, self.worker.set_spec),
            (self._watch, self.worker.watch),
            (self._submit, self.worker.submit),
            (self._thresholds, self.worker.set_thresholds),
            (self._operations, self.worker.set_operations),
            (self._family, self.worker.set_family),
            (self._context, self.worker.request_context),
            (self._preview, self.worker.request_preview),
            (self._ask, self.worker.answer),
            (self.painted, self.worker.ui_ready),
            (self._shutdown, self.worker.shutdown),
            (self._release, self.worker.release_dropped),
        ):
            signal.connect(slot)
        self.worker.snapshot.connect(self._on_snapshot)
        self.worker.failed.connect(self.failed)
        self.worker.accepted.connect(self.accepted)
        self.worker.refused.connect(self.refused)
        self.worker.outcome.connect(self.outcome)
        self.worker.operations.connect(self._on_operations)
        self.worker.context_ready.connect(self.context_ready)
        self.worker.preview_ready.connect(self.preview_ready)
        self.worker.answered.connect(self._on_answer)
        self.worker.store_failed.connect(self.store_failed)
        self._pending: Snapshot | None = None
        # The window's answer to "still showing the last snapshot?" (it may take several turns).
        self.ui_busy: Callable[[], bool] = lambda: False
        # The engine thread runs Python between numpy calls; at the default 5 ms switch interval
        # the UI thread waits up to 5 ms for the GIL after every Qt call that released it.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread.start()

    # ----- commands -----------------------------------------------------------------------

    def open(
        self, source: str | Path | dict[str, Any], store_path: str | Path | None = None
    ) -> None:
        self._open.emit(source, store_path)

    def play(self) -> None:
        self._play.emit()

    def pause(self) -> None:
        self._pause.emit()

    def step(self, ticks: int = 1) -> None:
        self._step.emit(ticks)

    def set_speed(self, speed: float) -> None:
        self._speed.emit(float(speed))

    def seek(self, tick: int) -> None:
        self._seek.emit(int(tick))

    def release_dropped(self) -> None:
        """Have the engine thread reclaim what a finished what-if branch dropped (its engines
        were frozen out of the collector with everything else while they ran)."""
        self._release.emit()

    def set_spec(self, spec: TableSpec) -> None:
        self._spec.emit(spec)

    def watch(self, account: str | None) -> None:
        self._watch.emit(account)

    def _token(self) -> int:
        self._tokens += 1
        return self._tokens

    def submit(self, raw: dict[str, Any], role: str | None = None) -> int:
        """Send an operator command; the Outcome with the returned token answers it."""
        token = self._token()
        self._submit.emit(raw, role, token)
        return token

    def set_thresholds(self, changes: dict[str, object], operator: str, reason: str) -> int:
        token = self._token()
        self._thresholds.emit(changes, operator, reason, token)
        return token

    def set_operations(self, on: bool) -> None:
        self._operations.emit(bool(on))

    def set_family(self, family: str | None) -> None:
        self._family.emit(family)

    def request_context(
        self, operator: str, role: str, account: str | None, action: str = "warn"
    ) -> None:
        """Ask for an ActionContext; it arrives by `context_ready`."""
        self._context.emit(operator, role, account, action)

    def request_preview(self, family: str, currency: str, price: str) -> None:
        self._preview.emit(family, currency, price)

    def ask(self, query: object, reply: Callable[[Any], None]) -> None:
        """Send a store query (core.desk.queries) to the engine thread; `reply` gets its answer
        (a value, or the InputError or Refusal it met) on the UI thread."""
        token = self._token()
        self._replies[token] = reply
        self._ask.emit(token, query)

    @property
    def answers_due(self) -> int:
        """Store queries sent and not yet answered."""
        return len(self._replies)

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop the worker and its thread; True when the thread ended in time."""
        if not self._thread.isRunning():
            return True
        self.worker.ui_idle.set()
        self._shutdown.emit()
        done = self._thread.wait(timeout_ms)
        if done:
            self.worker.deleteLater()
        return done

    # ----- snapshots ----------------------------------------------------------------------

    @Slot(int, object)
    def _on_answer(self, token: int, answer: object) -> None:
        reply = self._replies.pop(token, None)
        if reply is not None:
            reply(answer)

    @Slot(object)
    def _on_operations(self, state: object) -> None:
        self.operations = state
        self.operations_ready.emit(state)

    @Slot(object)
    def _on_snapshot(self, snap: Snapshot) -> None:
        first = self._pending is None
        self._pending = snap
        if first:
            QTimer.singleShot(0, self, self._deliver)

    def _deliver(self) -> None:
        snap, self._pending = self._pending, None
        if snap is None:
            return
        self.worker.ui_idle.clear()
        self.latest = snap
        self.received += 1
        try:
            self.snapshot_ready.emit(snap)
        finally:
            # After the repaints the views posted: they run before this zero-time timer.
            QTimer.singleShot(0, self, self._painted)

    def _painted(self, turns: int = PAINT_TURNS) -> None:
        # A view's repaint can post another (a plot whose range moved): a few turns of the event
        # loop see them done before the engine thread runs again.
        if turns > 1 or self.ui_busy():
            QTimer.singleShot(0, self, lambda: self._painted(max(1, turns - 1)))
            return
        self.worker.ui_idle.set()
        self.painted.emit()
