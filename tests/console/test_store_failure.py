"""A store write the disk refuses during the console's live run: the run stops, the status bar and a
message box say in one line what failed, the engine thread lives on, and the store resumes to the
state of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import two_traders_doc, wait_snapshot

from core.session.session import Session
from core.store.schema import connect

# Enough logins, each audited, that some arrive while the writer thread commits a tick (the
# race shows in most runs without the flush; it cannot be forced from outside).
LOGINS = 200


def test_a_full_store_mid_run_stops_the_run_and_leaves_the_store_resumable(
    qtbot: Any, settings: Any, tmp_path: Path
) -> None:
    from console.window.main_window import MainWindow

    path = tmp_path / "run.sqlite"
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    window.open_source(two_traders_doc(), path)
    wait_snapshot(qtbot, window.bridge)
    window.bridge.step(5)
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 5)
    session = window.bridge.worker.session
    session.flush()  # the writer thread is idle: the connection is the test's for one pragma
    pages = session.store.conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own size limit on this connection: a write past it fails with SQLITE_FULL, as on
    # a full disk, a few ticks into the play.
    session.store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    with qtbot.waitSignal(window.bridge.store_failed, timeout=30_000) as failed:
        window.bridge.play()
    line = failed.args[0]
    assert "\n" not in line and line.startswith(f"Run stopped: {path}: cannot write the store")
    assert "disk is full" in line and f"risk-console resume {path}" in line
    box = window.store_failure_box
    assert box is not None and box.isVisible() and box.text() == line
    # The stopped run's snapshot may be shown already: wait on what the window holds.
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.notice == line)
    snap = window.snapshot
    assert not snap.playing and 5 < snap.tick < snap.ticks_total - 1
    qtbot.waitUntil(lambda: window.status_notice.text() == line)
    window.bridge.step(1)  # refused with the same line; the engine thread still answers
    assert wait_snapshot(qtbot, window.bridge).tick == snap.tick
    assert window.bridge.running
    box.close()
    window.close()
    assert not window.bridge.running

    resumed = Session.open(path)
    assert resumed.store is not None and resumed.store.journal_gaps() == []
    assert 5 < resumed.tick < snap.tick + 1
    resumed.run_to_end()
    whole = Session.start(two_traders_doc(), tmp_path / "whole.sqlite")
    whole.run_to_end()
    assert resumed.result()["state_hash"] == whole.result()["state_hash"]
    resumed.close()
    whole.close()


# A race: 200 scrypt logins (~30 s) against the writer thread; the slow tier runs it.
@pytest.mark.slow
def test_logins_while_playing_do_not_write_inside_the_writers_tick(
    qtbot: Any, settings: Any, tmp_path: Path
) -> None:
    from console.window.main_window import MainWindow
    from core.desk.operators import Operator
    from core.desk.queries import Login

    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    window.open_source(two_traders_doc(), tmp_path / "run.sqlite")
    wait_snapshot(qtbot, window.bridge)
    failures: list[str] = []
    window.bridge.store_failed.connect(failures.append)
    answers: list[object] = []
    window.bridge.play()
    for _ in range(LOGINS):
        window.bridge.ask(Login("carol", "carol-demo", demo=True), answers.append)
        qtbot.wait(2)
    qtbot.waitUntil(lambda: len(answers) == LOGINS, timeout=180_000)
    window.close()
    assert failures == []
    assert all(isinstance(a, Operator) and a.name == "carol" for a in answers), answers[:3]
    db = connect(tmp_path / "run.sqlite")
    logins = db.conn.execute("SELECT count(*) FROM audit_log WHERE kind = 'login'").fetchone()[0]
    db.conn.close()
    assert logins == LOGINS
