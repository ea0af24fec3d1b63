"""A thread that commits the store's plain ticks while the engine computes the next one: SQLite
releases the interpreter lock while it writes, so on two cores the journal overlaps the engine."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class StoreWriter:
    """Runs queued writes in order on one thread. `flush()` waits until all are committed and
    raises the first error one of them met (that write's transaction was rolled back). After an
    error no later write runs, and every call raises it again: a tick after a failed one would
    leave a gap in the journal."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=64)
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

    def _run(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if write is None:
                    return
                if self._error is None:
                    write()
            except BaseException as error:  # reported to the engine thread by flush()
                self._error = error
            finally:
                self._queue.task_done()
