"""A thread that commits the store's plain ticks while the engine computes the next one: SQLite
releases the interpreter lock while it writes, so on two cores the journal overlaps the engine."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

# Writes waiting together commit as one transaction (a group commit): one BEGIN/COMMIT and one
# WAL append instead of one per tick. Bounded so that a transaction stays short.
GROUP_LIMIT = 64


class StoreWriter:
    """Runs queued writes in order on one thread, those waiting together in one transaction of
    `begin()`. `flush()` waits until all are committed and raises the first error one of them
    met (its whole transaction was rolled back). After an error no later write runs, and every
    call raises it again: a tick after a failed one would leave a gap in the journal."""

    def __init__(self, begin: Callable[[], AbstractContextManager[object]]) -> None:
        self._begin = begin
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=GROUP_LIMIT)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def put(self, write: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(write)

    def flush(self) -> None:
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.join()
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _waiting(self) -> list[Callable[[], None] | None]:
        group = [self._queue.get()]
        while group[-1] is not None and len(group) < GROUP_LIMIT:
            try:
                group.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return group

    def _run(self) -> None:
        while True:
            group = self._waiting()
            writes = [write for write in group if write is not None]
            try:
                if writes and self._error is None:
                    with self._begin():
                        for write in writes:
                            write()
            except BaseException as error:  # reported to the engine thread by flush()
                self._error = error
            finally:
                for _ in group:
                    self._queue.task_done()
            if len(writes) < len(group):
                return
