"""The store's WAL checkpoints on a thread of their own: copying committed pages into the file and
syncing it is most of a big snapshot's commit, and SQLite does it without the interpreter lock,
so the engine steps on (on the other core) while it runs."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from core.store.schema import store_uri

# Checkpoint once the WAL holds this much (what SQLite's own wal_autocheckpoint=16000 did), at
# most once a second: a WAL keeps its size when SQLite starts it over, so a steady stream of
# small commits would otherwise sync the file after each.
WAL_BYTES = 16_000 * 4096
SPACING_SECONDS = 1.0
# SQLite's answers that mean another checkpoint or writer had the lock: try at the next commit.
_LOCKED = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class Checkpointer:
    """Checkpoints the WAL of the store at `path` (PASSIVE: never waits for or blocks the
    writer) after a commit leaves it at `threshold` bytes or more, `spacing` seconds apart. A
    checkpoint that fails for another reason than a lock keeps its error in `error`, for the
    store to raise at its next transaction; the WAL then holds what was committed, as it would
    without checkpoints."""

    def __init__(
        self, path: Path, threshold: int = WAL_BYTES, spacing: float = SPACING_SECONDS
    ) -> None:
        self._wal = path.with_name(path.name + "-wal")
        self._threshold = threshold
        self._spacing = spacing
        self._last = -float("inf")
        self._conn = sqlite3.connect(
            store_uri(path, "rw"), uri=True, isolation_level=None, check_same_thread=False
        )
        self._wake = threading.Event()
        self._stopping = False
        self.error: sqlite3.Error | None = None
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Called after each commit: a checkpoint is started if the WAL has grown enough."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (after a checkpoint it is running) and close its connection; the
        store's own connection, closed last, checkpoints what is left and removes the WAL."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        waiting = False  # a checkpoint held back by the spacing: look again when it has passed
        while True:
            self._wake.wait(timeout=self._spacing if waiting else None)
            self._wake.clear()
            if self._stopping:
                return
            try:
                waiting = self._wal.stat().st_size >= self._threshold
            except OSError:
                waiting = False
            if not waiting or time.monotonic() - self._last < self._spacing:
                continue
            waiting = False
            self._last = time.monotonic()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except sqlite3.Error as error:
                if getattr(error, "sqlite_errorcode", None) not in _LOCKED:
                    self.error = error
