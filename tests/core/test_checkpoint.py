"""The store's WAL checkpoints on their own thread: the store's connection never checkpoints in
its commits, the thread copies committed pages into the file, closing leaves no WAL behind, and a
checkpoint's failure reaches the writer at its next transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.scenario.builtin import resolve_scenario
from core.session.session import Session
from core.store.checkpoint import Checkpointer
from core.store.schema import connect_read_only
from core.store.store import Store


def _frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames of it already in the file), asked of a connection of its own
    (a checkpoint with nothing new to copy copies nothing)."""
    conn = sqlite3.connect(path)
    try:
        _busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return log, done
    finally:
        conn.close()


def _started(tmp_path: Path) -> tuple[Path, Session, Store]:
    """A new store's path, its session and the store (with its checkpointer running)."""
    path = tmp_path / "run.sqlite"
    session = Session.start(resolve_scenario("two-traders"), path)
    store = session.store
    assert store is not None and store._checkpointer is not None
    return path, session, store


def _within_seconds(done: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `done()` came true within `seconds` (the checkpoint thread works on its own)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    return done()


def _filler_rows(path: Path) -> int:
    conn = connect_read_only(path)
    try:
        return conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'filler-%'").fetchone()[0]
    finally:
        conn.close()


def _write(store: Store, rows: int) -> None:
    with store.transaction():
        for n in range(rows):
            store.set_meta(f"filler-{n}", "x" * 4000)


def test_the_store_commits_without_checkpointing_and_the_thread_checkpoints(
    tmp_path: Path,
) -> None:
    path, session, store = _started(tmp_path)
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    # The store's own checkpointer waits for 64 MB; one that checkpoints at once stands in.
    assert store._checkpointer is not None
    store._checkpointer.close()
    eager = store._checkpointer = Checkpointer(path, threshold=0, spacing=0.0)
    _write(store, 200)
    assert _within_seconds(lambda: eager.checkpoints >= 1)
    log, done = _frames(path)
    assert log > 0 and done == log
    session.close()
    assert not path.with_name(path.name + "-wal").exists()
    assert _filler_rows(path) == 200


def test_a_small_wal_waits_for_the_threshold(tmp_path: Path) -> None:
    path, session, store = _started(tmp_path)
    assert store._checkpointer is not None
    _write(store, 20)
    time.sleep(0.2)
    log, _copied = _frames(path)  # the WAL holds the commits; the thread copied none
    assert store._checkpointer.checkpoints == 0 and log > 0
    session.close()


def test_a_failed_checkpoint_is_raised_at_the_next_transaction(tmp_path: Path) -> None:
    path, session, store = _started(tmp_path)
    assert store._checkpointer is not None
    store._checkpointer.close()
    broken = Checkpointer(path, threshold=0, spacing=0.0)
    broken._conn.close()  # its connection gone: the next checkpoint fails
    store._checkpointer = broken
    _write(store, 5)
    assert _within_seconds(lambda: broken.error is not None)
    with pytest.raises(sqlite3.Error), store.transaction():
        store.set_meta("after", "1")
    assert store.meta("after") is None
    with pytest.raises(sqlite3.Error):  # closing records the hash in a transaction: refused too
        session.close()
    assert _filler_rows(path) == 5  # what was committed before the failure is all there
