"""The engine worker on a live feed (a part of EngineWorker, kept apart): the feed's arrivals
applied between the worker's own work, the link's state in each snapshot, commands signed and sent
into the stream, and the operator's signing key unlocked at login."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from console.worker.feed_driver import FeedDriver
from console.worker.operations import Outcome, failure
from console.worker.pacing import FEED_PULL_MS, STEP_BUDGET_SECONDS, UI_WAIT_SECONDS
from core.desk.queries import Login
from core.feed.link import Sent
from core.model.errors import InputError
from core.model.operations import Refusal
from core.session.snapshot_builder import SnapshotBuilder


class FeedSide:
    """EngineWorker's methods for a feed; `self` is the EngineWorker (a mixin, so that the
    worker's module does not import this one both ways)."""

    def _open_feed(self, url: str, store_path: object) -> None:
        path = Path(str(store_path)) if store_path is not None else self._temp_store()
        try:
            self.feed = FeedDriver(url, path, self._after_feed_tick, self._feed_header)
        except (InputError, OSError, ValueError) as error:
            field = error.field if isinstance(error, InputError) else "feed"
            message = error.message if isinstance(error, InputError) else str(error)
            self.failed.emit(field, message)
            return
        self.feed.link.on_sent = self._sent.emit
        self._feed_failed = False
        self.playing, self.speed = True, 1.0
        self._rate.clear()
        self._feed_timer.start(FEED_PULL_MS)
        self._pull()

    def _pull(self) -> None:
        """Apply what the feed link read since the last look, within the step budget, and say
        how the link is (a snapshot at least once a second, for the silence counter)."""
        feed = self.feed
        if feed is None or self._stopped():
            return
        self.ui_idle.wait(UI_WAIT_SECONDS)
        with self._store_writes():
            applied = feed.pull(STEP_BUDGET_SECONDS)
        if self.session is None and feed.session is not None:  # a store reopened
            self._feed_header()
        status = feed.status()
        if status.state == "failed" and not self._feed_failed:
            self._feed_failed = True
            self.failed.emit("feed", status.error or "the feed link failed")
        self.notice = self._feed_notice(status)
        stale = time.perf_counter() - self._last_publish >= 1.0
        if applied or stale:
            self._publish(force=stale and not applied, fresh=False)

    def _feed_notice(self, status: Any) -> str | None:
        if status.state == "failed":
            return f"Feed stopped: {status.error}"
        if status.state == "ended":
            return "The feed has ended"
        if status.silent_seconds is not None and status.silent_seconds >= self.silent_seconds:
            return f"Producer silent for {status.silent_seconds:.0f} s"
        return self.notice if self.notice and not self.notice.startswith("Producer") else None

    def _feed_header(self) -> None:
        """The header made the desk's session: the views start from it."""
        assert self.feed is not None and self.feed.session is not None
        self.session = self.feed.session
        self.builder = SnapshotBuilder(self.feed.session)
        self._publish(force=True, fresh=True)

    def _after_feed_tick(self, events: list[Any]) -> None:
        if self.builder is not None:
            self._after_tick(events, pause_on_pending=False)

    def _on_sent(self, sent: object) -> None:
        if not isinstance(sent, Sent):
            return
        operator = self._sending.pop(sent.token, None)
        if sent.seq is None:
            self.outcome.emit(
                failure(Refusal("feed", sent.error or "not sent"), operator, sent.token)
            )
        else:
            text = f"sent as message {sent.seq}; it applies when the stream brings it back"
            self.outcome.emit(Outcome(True, text, operator, sent.token))

    def _send(
        self, raw: dict[str, Any], operator: str | None, token: int, kind: str | None
    ) -> None:
        """On a feed a command goes into the stream, signed; it applies when it comes back."""
        assert self.feed is not None
        try:
            message = self.feed.command(raw)
            self.feed.link.send(token, message)
        except (InputError, Refusal) as error:
            self.outcome.emit(failure(error, operator, token, kind))
            return
        self._sending[token] = operator

    def _unlock_key(self, login: Login) -> None:
        """On a feed, the operator's signing key is unlocked with the password of the login."""
        assert self.feed is not None
        try:
            self.feed.unlock(login.name, login.password)
        except InputError as error:
            self.outcome.emit(failure(error, login.name))
