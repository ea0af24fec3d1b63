"""What-if branches run for the console on a thread of their own (a branch takes seconds to
minutes; the engine's thread and the UI go on meanwhile): progress, cancel, and the comparison
or the bad input (naming the field) back on the UI thread by queued signals (docs/whatif.md)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.model.errors import InputError
from core.whatif import runs
from core.whatif.branch import Fork, list_branches, parse_policy, read_actions
from core.whatif.compare import MAX_RUNS

PROGRESS_SECONDS = 0.1  # at most ten progress reports a second


@dataclass(frozen=True, slots=True)
class BranchRequest:
    """A branch as the dock asks for it: the moment (a tick or an ISO UTC time), actions as JSON
    text (one risk-scenario/1 action or a list; empty: none), policy changes KEY -> VALUE."""

    store: str
    at: str
    actions: str = ""
    policy: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    # Earlier branches to show beside it; None: the latest beside the store (as many as fit).
    with_names: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class BranchProgress:
    name: str
    done: int  # ticks run
    total: int  # ticks from the branch point to the end


def field_name(option: str) -> str:
    """The core's option names (`--action[0].account`) as the dock's fields (`action[0].account`)."""
    return option.removeprefix("--")


def parse_request(request: BranchRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The actions and policy of `request`, or InputError naming the dock's field."""
    text = request.actions.strip()
    if text and not text.startswith(("{", "[")):
        raise InputError("action", "expected a JSON object (an action) or a list of them")
    actions = read_actions(text) if text else []
    pairs = [f"{k}={v}" for k, v in request.policy.items()]
    return actions, parse_policy(pairs)


def earlier_branches(store: Path, limit: int = MAX_RUNS - 2) -> tuple[str, ...]:
    """The latest branches beside `store` (by when they were written), oldest first."""
    found = sorted(list_branches(store), key=lambda b: b.path.stat().st_mtime)
    return tuple(b.name for b in found[-limit:]) if limit > 0 else ()


class WhatIfRunner(QObject):
    """One branch at a time; its signals arrive on the thread this object lives on (the UI's)."""

    started = Signal(str)  # the branch's name, once its input passed
    progress = Signal(object)  # BranchProgress
    finished = Signal(object)  # the comparison (risk-whatif/1 document)
    failed = Signal(str, str)  # field, message: bad input, a refused store, a failed run
    cancelled = Signal(str)  # the branch's name (its store removed)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, request: BranchRequest) -> bool:
        """Run `request` on a new thread; False while another branch runs."""
        if self.running:
            return False
        self._cancel.clear()
        self._thread = threading.Thread(
            target=self._run, args=(request,), name="whatif", daemon=True
        )
        self._thread.start()
        return True

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, seconds: float = 30.0) -> bool:
        """Wait for the thread to end (at close); True when it did."""
        if self._thread is not None:
            self._thread.join(seconds)
        return not self.running

    def _run(self, request: BranchRequest) -> None:
        name = request.name or "branch"
        state = {"last": 0.0, "start": -1, "total": 0}

        def checked(fork: Fork) -> None:
            nonlocal name
            name = fork.name
            state["start"] = fork.tick
            state["total"] = max(1, fork.engine.ticks_total - 1 - fork.tick)
            self.started.emit(name)
            self.progress.emit(BranchProgress(name, 0, state["total"]))

        def on_step(engine: Any, _events: list[Any]) -> None:
            done = min(state["total"], engine.tick - state["start"])
            now = time.perf_counter()
            # The last tick always: the comparison follows, and the dock says it is under way.
            if done == state["total"] or now - state["last"] >= PROGRESS_SECONDS:
                state["last"] = now
                self.progress.emit(BranchProgress(name, done, state["total"]))

        try:
            actions, policy = parse_request(request)
            store = Path(request.store)
            others = request.with_names
            if others is None:
                others = earlier_branches(store)
            doc = runs.branch(
                store,
                request.at,
                actions,
                policy,
                name=request.name,
                with_names=others,
                on_step=on_step,
                checked=checked,
                cancelled=self._cancel.is_set,
            )
        except runs.Cancelled:
            self.cancelled.emit(name)
        except InputError as error:
            self.failed.emit(field_name(error.field), error.message)
        except Exception as error:  # a failed run: said in the dock; its store was removed
            self.failed.emit("run", f"{type(error).__name__}: {error}")
        else:
            self.progress.emit(BranchProgress(name, state["total"], state["total"]))
            self.finished.emit(doc)
