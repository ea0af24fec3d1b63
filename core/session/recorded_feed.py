"""A feed's store stepped behind its head: each tick from its recorded messages (the marks and
trades they brought), as the live run applied them, never from the engine's own price paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from core.engine.facade import Engine
from core.feed.consumer import FeedRun
from core.feed.wire import Unreadable, decoded
from core.model.events import Event
from core.store.store import Store


def decoded_message(text: str) -> Any:
    """A recorded message as the run applies it (one that is not JSON as the text it was)."""
    message = decoded(text)
    return f"not JSON: {message.text}" if isinstance(message, Unreadable) else message


def tick_of(message: Any, engine: Engine) -> int | None:
    """The tick a `tick` or `end` message steps the engine to (None for a message that steps
    none, or one the run will refuse)."""
    if not isinstance(message, dict) or message.get("type") not in ("tick", "end"):
        return None
    try:
        moment = datetime.fromisoformat(str(message.get("time")))
    except ValueError:
        return None
    if moment.utcoffset() != timedelta(0):
        return None
    seconds = (moment.replace(tzinfo=UTC) - engine.scenario.start).total_seconds()
    return int(seconds // engine.scenario.tick_seconds)


class RecordedFeed:
    """The recorded messages after the snapshot the engine was loaded from, applied a tick at a
    time: `advance()` applies every message that leaves the engine at or before the next tick
    (commands and trades on the way included) and steps on to that tick with the prices held
    when the next message lies beyond it, as `feed_session.replay(until=...)` does."""

    def __init__(self, store: Store, engine: Engine, step: Callable[[], list[Event]]) -> None:
        last_seq, state = store.feed_state(engine.tick)
        self.engine = engine
        self.run = FeedRun(step=step)
        self.run.restore(engine, state)
        self._messages: Iterator[tuple[int, str]] = iter(list(store.feed_messages(last_seq)))
        self._refused = store.refused_feed_seqs(last_seq)
        self._next: tuple[int, Any] | None = None
        self._pull()

    def _pull(self) -> None:
        item = next(self._messages, None)
        self._next = None if item is None else (item[0], decoded_message(item[1]))

    def _steps_to(self) -> int:
        """The tick the next message leaves the engine at (0: none; a refused one moved
        nothing when it was applied live, whatever time it names)."""
        assert self._next is not None
        seq, message = self._next
        return 0 if seq in self._refused else tick_of(message, self.engine) or 0

    def drain(self) -> list[Event]:
        """Apply the messages that leave the engine where it is (trades, commands, transfers
        recorded after its tick's prices)."""
        return self._apply_until(self.engine.tick)

    def advance(self) -> list[Event]:
        target = self.engine.tick + 1
        events = self._apply_until(target)
        if self.engine.tick < target:
            events += self.run.step_to(target)
        return events

    def _apply_until(self, tick: int) -> list[Event]:
        events: list[Event] = []
        while self._next is not None and self._steps_to() <= tick:
            seq, message = self._next
            events += self.run.apply(seq, message)
            self._pull()
        return events
