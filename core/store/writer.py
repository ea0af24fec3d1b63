"""Group commits of the store's plain ticks, on the engine's own thread: ticks arriving fast are
held and committed together, a few SQLite calls for many ticks; a tick arriving alone commits at
once. (A writer thread was slower here: its GIL hand-offs cost the engine more than it saved.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

GROUP_LIMIT = 64  # ticks held at most
GROUP_SECONDS = 0.2  # the oldest held tick waits at most this long (while ticks keep coming)
ALONE_SECONDS = 0.05  # a tick this long after the one before is not held: it commits at once


class StoreWriter:
    """Runs writes in order, those held together in one transaction of `begin()`. `flush()`
    commits what is held and raises the first error a commit met (its whole transaction was
    rolled back). After an error no later write runs, and every call raises it again: a tick
    after a failed one would leave a gap in the journal. What is held and not yet committed
    when the process dies is lost, as a tick never stepped would be: the inputs that made it
    (the journal's commands, the scenario or the feed) replay it."""

    def __init__(self, begin: Callable[[], AbstractContextManager[object]]) -> None:
        self._begin = begin
        self._held: list[Callable[[], None]] = []
        self._first_at = 0.0
        self._last_at = -float("inf")
        self._error: BaseException | None = None

    def put(self, write: Callable[[], None]) -> None:
        self._raise()
        now = time.perf_counter()
        alone = now - self._last_at >= ALONE_SECONDS
        self._last_at = now
        if not self._held:
            self._first_at = now
        self._held.append(write)
        if alone or len(self._held) >= GROUP_LIMIT or now - self._first_at >= GROUP_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._raise()
        held, self._held = self._held, []
        if not held:
            return
        try:
            with self._begin():
                for write in held:
                    write()
        except BaseException as error:
            self._error = error
            raise

    def close(self) -> None:
        self.flush()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
