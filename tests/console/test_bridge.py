"""The engine worker thread: snapshots arrive on the UI thread; play, pause, step, seek, the
pending-clawback pause, commands, errors, and a clean close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from conftest import TWO_TRADERS, two_traders_doc, wait_snapshot
from PySide6.QtCore import QThread


def test_snapshots_arrive_from_the_worker_thread(qtbot: Any, bridge: Any) -> None:
    bridge.open(TWO_TRADERS)
    snap = wait_snapshot(qtbot, bridge)
    assert bridge.worker.thread() is not QThread.currentThread()
    assert snap.tick == 0 and snap.ticks_total == 3602 and not snap.playing
    assert snap.store_path is not None and snap.store_path.endswith(".sqlite")
    assert [o.code for o in snap.overview] == ["BTC"]
    assert len(snap.table) == 2
    # Immutable: the arrays handed to the UI cannot be written.
    assert not snap.table.columns["equity"].flags.writeable
    assert not snap.series["fund:BTC"].flags.writeable


def test_step_then_seek_back_and_forward(qtbot: Any, bridge: Any) -> None:
    bridge.open(TWO_TRADERS)
    wait_snapshot(qtbot, bridge)
    bridge.step(1)
    snap = wait_snapshot(qtbot, bridge, lambda s: s.tick == 1)
    assert len(snap.liquidations) == 1  # A is liquidated on the gap
    assert snap.overview[0].deficit_uncovered == 800_000_000
    bridge.step(20)
    snap = wait_snapshot(qtbot, bridge, lambda s: s.tick == 21)
    assert snap.head == 21 and snap.live
    bridge.seek(0)
    snap = wait_snapshot(qtbot, bridge, lambda s: s.tick == 0)
    assert not snap.live and snap.head == 21
    assert len(snap.liquidations) == 0 and len(snap.events) == 0
    assert np.isnan(snap.series["mark:DEMO-USD-180731"]).sum() == 0  # only tick 0 is shown
    bridge.seek(30)  # past the head: steps on, live again
    snap = wait_snapshot(qtbot, bridge, lambda s: s.tick == 30)
    assert snap.live and snap.head == 30 and len(snap.liquidations) == 1


def test_an_engine_dropped_by_a_seek_or_a_new_source_is_freed(qtbot: Any, bridge: Any) -> None:
    """The worker freezes what lives out of the cyclic collector; an engine a seek back replaced,
    or the session of a source closed for another, is still reclaimed (an engine's objects refer
    to each other: frozen, nothing would free a 1M-position book)."""
    import gc
    import weakref

    bridge.open(TWO_TRADERS)
    wait_snapshot(qtbot, bridge)
    bridge.step(5)
    wait_snapshot(qtbot, bridge, lambda s: s.tick == 5)
    assert gc.get_freeze_count() > 0  # the worker froze what lives, the engine with it
    engine = weakref.ref(bridge.worker.session.engine)
    bridge.seek(1)
    wait_snapshot(qtbot, bridge, lambda s: s.tick == 1)
    assert engine() is None
    session = weakref.ref(bridge.worker.session)
    bridge.open(TWO_TRADERS)
    wait_snapshot(qtbot, bridge, lambda s: s.tick == 0)
    assert session() is None


def test_play_pause_and_the_pending_clawback_stop(qtbot: Any, bridge: Any) -> None:
    bridge.open(two_traders_doc(clawback_approval="required"))
    wait_snapshot(qtbot, bridge)
    bridge.set_speed(0.0)
    bridge.play()
    playing = wait_snapshot(qtbot, bridge, lambda s: s.playing and s.tick > 0)
    assert playing.tick < playing.ticks_total - 1
    # The run ends at the settlement with the clawback pending: play stops and says why.
    done = wait_snapshot(qtbot, bridge, lambda s: not s.playing, timeout=60_000)
    assert done.notice is not None and "pending" in done.notice
    assert done.overview[0].clawback_pending == 800_000_000


def test_pause_stops_the_clock(qtbot: Any, bridge: Any) -> None:
    bridge.open(TWO_TRADERS)
    wait_snapshot(qtbot, bridge)
    bridge.set_speed(1.0)  # one simulated second per second: stays far from the end
    bridge.play()
    wait_snapshot(qtbot, bridge, lambda s: s.playing)
    bridge.pause()
    paused = wait_snapshot(qtbot, bridge, lambda s: not s.playing)
    qtbot.wait(300)
    assert bridge.latest.tick == paused.tick
    assert paused.speed == 1.0


def test_snapshots_are_rate_limited_while_playing(qtbot: Any, bridge: Any) -> None:
    bridge.open(TWO_TRADERS)
    wait_snapshot(qtbot, bridge)
    before = bridge.received
    bridge.play()
    qtbot.wait(1000)
    ticks = bridge.latest.tick
    bridge.pause()
    # Hundreds of ticks went by, coalesced into about ten snapshots a second.
    assert ticks > 50
    assert bridge.received - before <= 14


def test_bad_scenario_reports_the_field(qtbot: Any, bridge: Any) -> None:
    doc = two_traders_doc()
    doc["accounts"][0]["positions"][0]["contracts"] = "ten"
    with qtbot.waitSignal(bridge.failed, timeout=10_000) as blocker:
        bridge.open(doc)
    field, message = blocker.args
    assert field.startswith("accounts[0].positions[0].contracts")
    assert message


def log_in_alice(path: Path) -> None:
    """Alice logged in to the bridge's store, as the login dialog does: commands need a login."""
    from core.store.schema import connect
    from tests.core.conftest import log_in

    db = connect(path)
    log_in(db, "alice")
    db.conn.close()


def test_a_store_whose_snapshot_is_a_pickle_is_refused_and_runs_nothing(
    qtbot: Any, bridge: Any, tmp_path: Path
) -> None:
    import hashlib
    import sqlite3

    from core.session.session import Session

    store, marker = tmp_path / "s.sqlite", tmp_path / "ran"
    Session.start(two_traders_doc(), store).close()
    # os.system(f"touch {marker}") named through core.desk.operators, which imports os.
    command = f"touch {marker}".encode()
    attack = (
        b"P\x80\x04\x8c\x0ecore.operators\x8c\tos.system\x93\x8c"
        + bytes([len(command)])
        + command
        + b"\x85R."
    )
    with sqlite3.connect(store) as conn:
        conn.execute(
            "UPDATE snapshots SET state = ?, digest = ?",
            (attack, hashlib.sha256(attack).hexdigest()),
        )
    with qtbot.waitSignal(bridge.failed, timeout=10_000) as blocker:
        bridge.open(str(store), None)
    field, message = blocker.args
    assert field == "STORE" and "snapshot" in message
    assert not marker.exists()


def test_commands_are_taken_live_and_refused_behind(
    qtbot: Any, bridge: Any, tmp_path: Path
) -> None:
    bridge.open(TWO_TRADERS, tmp_path / "run.sqlite")
    wait_snapshot(qtbot, bridge)
    log_in_alice(tmp_path / "run.sqlite")
    command = {"operator": "alice", "action": "warn", "account": "B", "message": "m", "reason": "r"}
    with qtbot.waitSignal(bridge.accepted, timeout=10_000):
        bridge.submit(command, "operator")
    bridge.step(2)
    snap = wait_snapshot(qtbot, bridge, lambda s: s.tick == 2)
    b_rows = snap.table.rows_of_account(snap.table.account_ids.index("B"))
    assert snap.table.columns["flags"][b_rows].any()  # warned
    bridge.seek(0)
    wait_snapshot(qtbot, bridge, lambda s: s.tick == 0)
    with qtbot.waitSignal(bridge.refused, timeout=10_000) as blocker:
        bridge.submit(command, "operator")
    assert blocker.args[0] == "not_live"


def test_close_leaves_no_thread_running(qtbot: Any) -> None:
    from console.worker.bridge import Bridge

    b = Bridge()
    b.open(TWO_TRADERS)
    b.play()
    qtbot.wait(200)
    assert b.shutdown()
    assert not b.running
    assert b.worker.session is None  # the store was closed on the engine thread


def test_reads_for_the_operations_docks_are_answered_by_signal(qtbot: Any, bridge: Any) -> None:
    from console.dialogs.action_dialog import ActionContext
    from core.model.errors import InputError
    from core.model.settlement import ClawbackPreview

    bridge.open(two_traders_doc(clawback_approval="required"))
    wait_snapshot(qtbot, bridge)
    bridge.step(2)  # 8 BTC of deficit wait for the settlement
    wait_snapshot(qtbot, bridge, lambda s: s.tick == 2)
    with qtbot.waitSignal(bridge.preview_ready, timeout=10_000) as answer:
        bridge.request_preview("DEMO-USD", "BTC", "7000")
    key, preview = answer.args
    assert key == ("DEMO-USD", "BTC", "7000")
    assert isinstance(preview, ClawbackPreview) and preview.deficit == 800_000_000
    with qtbot.waitSignal(bridge.preview_ready, timeout=10_000) as answer:
        bridge.request_preview("DEMO-USD", "BTC", "seven")
    assert isinstance(answer.args[1], InputError) and answer.args[1].field == "price"
    with qtbot.waitSignal(bridge.context_ready, timeout=10_000) as answer:
        bridge.request_context("alice", "operator", "B", "freeze")
    context, action = answer.args
    assert isinstance(context, ActionContext) and action == "freeze"
    assert (context.account, [p.contracts for p in context.positions]) == ("B", [10])
    with qtbot.waitSignal(bridge.outcome, timeout=10_000) as answer:
        bridge.request_context("alice", "operator", "nobody", "warn")
    assert not answer.args[0].ok and answer.args[0].field == "account"
    bridge.set_operations(True)
    with qtbot.waitSignal(bridge.operations_ready, timeout=10_000) as answer:
        bridge.step(1)
    state = answer.args[0]
    assert state.families == ("DEMO-USD",) and state.settlement is not None
    assert state.settlement.review.pending_deficit == {"BTC": 800_000_000}


def test_a_command_after_the_end_applies_at_once(qtbot: Any, bridge: Any, tmp_path: Path) -> None:
    bridge.open(TWO_TRADERS, tmp_path / "run.sqlite")
    wait_snapshot(qtbot, bridge)
    log_in_alice(tmp_path / "run.sqlite")
    bridge.seek(3601)
    end = wait_snapshot(qtbot, bridge, lambda s: s.tick == 3601)
    assert end.finished
    command = {"operator": "alice", "action": "warn", "account": "B", "message": "m", "reason": "r"}
    with qtbot.waitSignal(bridge.outcome, timeout=10_000) as answer:
        bridge.submit(command, "operator")
    assert answer.args[0].ok and answer.args[0].text == "warn sent; it applies now"
    qtbot.waitUntil(lambda: bridge.latest.tick == 3602)  # its snapshot may come with it
    snap = bridge.latest
    assert snap.ticks_total == 3603 and snap.times.size == 3603
    b_rows = snap.table.rows_of_account(snap.table.account_ids.index("B"))
    assert snap.table.columns["flags"][b_rows].any()
