"""The What-if dock on the two-traders scenario: a branch run on its own thread with progress,
its comparison beside the original (deficit = fund + injection + clawback + ADL + uncovered),
cancel leaving no branch store (during the run or the comparison after it), bad input shown
inline naming the field, and "Branch here" on an alert and on the timeline filling the dock."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import TWO_TRADERS, wait_snapshot

from core.whatif.branch import branch_dir

RUN_SECONDS = 120_000  # ms: a branch of the whole hour on a busy machine


@pytest.fixture
def finished_window(qtbot: Any, settings: Any) -> Any:
    """The window on two-traders run to its end (its store is the original)."""
    from console.window.main_window import MainWindow

    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    w.open_source(TWO_TRADERS)
    wait_snapshot(qtbot, w.bridge)
    w.bridge.step(5000)
    snap = wait_snapshot(qtbot, w.bridge, lambda s: s.finished, timeout=60_000)
    qtbot.waitUntil(lambda: w.snapshot is snap)
    yield w
    w.close()


def test_whatif_dock_runs_a_branch_with_progress_and_shows_a_consistent_comparison(
    qtbot: Any, finished_window: Any
) -> None:
    w = finished_window
    dock, view = w.whatif, w.whatif.view
    store = Path(w.snapshot.store_path)
    head = w.snapshot.head
    seen: list[Any] = []
    dock.runner.progress.connect(seen.append)
    view.current_requested.emit()
    assert view.at.text() == str(w.snapshot.tick)
    view.at.setText("0")
    view.name.setText("adl")
    view.policy["deficit"].setCurrentText("adl")
    with qtbot.waitSignal(dock.runner.finished, timeout=RUN_SECONDS) as done:
        view.run_button.click()
        assert not view.run_button.isEnabled() and view.cancel_button.isEnabled()
    doc = done.args[0]
    assert view.run_button.isEnabled() and not view.cancel_button.isEnabled()
    assert not view.error.isVisible()
    # Progress counted up to every tick of the branch.
    assert seen and seen[-1].done == seen[-1].total == w.snapshot.ticks_total - 1
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert (branch_dir(store) / "adl.db").exists()
    assert w.snapshot.head == head  # the original was only read
    names = [r["name"] for r in doc["runs"]]
    assert names == ["original", "adl"]
    for run in doc["runs"]:
        d = run["currencies"]["BTC"]["deficit"]
        parts = sum(Decimal(d[k]) for k in ("fund", "injection", "clawback", "adl", "uncovered"))
        assert Decimal(d["total"]) == parts == 8
    original, adl = (r["currencies"]["BTC"]["deficit"] for r in doc["runs"])
    assert Decimal(original["clawback"]) == 8 and Decimal(adl["adl"]) == 8
    # The table shows the same figures, a row per run.
    model = view.runs_model
    titles = [c.title for c in model.columns]
    cell = {(model.cell_text(r, 0), t): model.cell_text(r, c) for r in range(model.rowCount())
            for c, t in enumerate(titles)}  # fmt: skip
    assert model.rowCount() == 2
    assert cell[("original", "Deficit")] == cell[("adl", "Deficit")] == "8.00000000"
    assert cell[("original", "Clawback")] == "8.00000000" and cell[("adl", "ADL")] == "8.00000000"
    assert cell[("adl", "Changes")].endswith("deficit=adl")
    assert cell[("original", "Clawback ratio")].startswith("88.8889%")
    assert view.accounts_model.rowCount() >= 2  # B paid in both runs
    assert len(view.fund_plot.getPlotItem().listDataItems()) == 2


def test_a_finished_branch_leaves_no_engine_behind(
    qtbot: Any, finished_window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine thread freezes whatever lives, a branch's engines too while they run; when the
    branch ends the engine thread thaws and collects them, or they would never be freed."""
    import gc
    import weakref

    from core.whatif import runs

    w = finished_window
    engines: list[Any] = []
    branch = runs.branch

    def spied(*args: Any, checked: Any, **kwargs: Any) -> Any:
        def check(fork: Any) -> None:
            engines.append(weakref.ref(fork.engine))
            gc.freeze()  # as the engine thread's periodic freeze would, mid-branch
            checked(fork)

        return branch(*args, checked=check, **kwargs)

    monkeypatch.setattr(runs, "branch", spied)
    w.whatif.view.at.setText("0")
    w.whatif.view.name.setText("freed")
    with qtbot.waitSignal(w.whatif.runner.finished, timeout=RUN_SECONDS):
        w.whatif.view.run_button.click()
    assert engines
    qtbot.waitUntil(lambda: all(engine() is None for engine in engines), timeout=10_000)


def test_whatif_cancel_stops_the_run_and_leaves_no_branch_store(
    qtbot: Any, finished_window: Any
) -> None:
    w = finished_window
    dock, view = w.whatif, w.whatif.view
    store = Path(w.snapshot.store_path)
    dock.runner.progress.connect(lambda p: p.done > 0 and view.cancel_button.click())
    view.at.setText("0")
    view.name.setText("cut")
    with qtbot.waitSignal(dock.runner.cancelled, timeout=RUN_SECONDS) as cancelled:
        view.run_button.click()
    assert cancelled.args == ["cut"]
    qtbot.waitUntil(lambda: not dock.runner.running)
    assert list(branch_dir(store).glob("cut.db*")) == []
    assert "cancelled" in view.status.text() and view.run_button.isEnabled()


def test_whatif_bad_action_is_shown_inline_naming_the_field(
    qtbot: Any, finished_window: Any
) -> None:
    w = finished_window
    dock, view = w.whatif, w.whatif.view
    store = Path(w.snapshot.store_path)
    view.at.setText("10")
    bad = {"operator": "alice", "action": "freeze", "account": "Z", "reason": "what-if"}
    view.actions.setPlainText(json.dumps(bad))
    with qtbot.waitSignal(dock.runner.failed, timeout=RUN_SECONDS):
        view.run_button.click()
    assert view.error.isVisible()
    assert view.error.text().startswith("action[0].account: expected an id of accounts (A, B)")
    view.actions.setPlainText("freeze A please")
    with qtbot.waitSignal(dock.runner.failed, timeout=RUN_SECONDS):
        view.run_button.click()
    assert view.error.text().startswith("action: expected a JSON object")
    view.actions.setPlainText("")
    view.at.setText("99999")
    with qtbot.waitSignal(dock.runner.failed, timeout=RUN_SECONDS):
        view.run_button.click()
    assert view.error.text().startswith("at: 99999 is at or beyond the run's end")
    assert not branch_dir(store).exists() or list(branch_dir(store).glob("*.db")) == []


def test_whatif_action_templates_fill_from_the_snapshot(qtbot: Any, bridge: Any) -> None:
    from console.window.whatif_dock import action_template

    bridge.open(TWO_TRADERS)
    snap = wait_snapshot(qtbot, bridge)
    reduce = action_template("force_reduce", "alice", "B", snap)
    assert reduce == {
        "operator": "alice", "action": "force_reduce", "account": "B",
        "symbol": "DEMO-USD-180731", "contracts": 5, "reason": "what-if: force reduce",
    }  # fmt: skip
    assert action_template("inject", "carol", None, snap)["currency"] == "BTC"


def test_whatif_cancel_during_the_comparison_keeps_no_branch(
    qtbot: Any, finished_window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel pressed once the branch has run to its end, while the original's outcome is read:
    the comparison stops, the dock says no branch is kept, and the branch's store is gone."""
    from core.whatif import runs

    w = finished_window
    dock, view = w.whatif, w.whatif.view
    store = Path(w.snapshot.store_path)
    read = runs.original_outcome
    ran_to_end: list[bool] = []

    def original_then_cancel(parent: Path, **kw: Any) -> Any:
        ran_to_end.append((branch_dir(store) / "late.db").exists())
        dock.runner.cancel()  # the Cancel button's effect (an Event: safe off the UI thread)
        return read(parent, **kw)

    monkeypatch.setattr(runs, "original_outcome", original_then_cancel)
    finished: list[Any] = []
    dock.runner.finished.connect(finished.append)
    view.at.setText("3000")
    view.name.setText("late")
    with qtbot.waitSignal(dock.runner.cancelled, timeout=RUN_SECONDS) as cancelled:
        view.run_button.click()
    assert cancelled.args == ["late"] and ran_to_end == [True]
    qtbot.waitUntil(lambda: not dock.runner.running)
    assert finished == []
    assert list(branch_dir(store).iterdir()) == []
    assert view.status.text() == "late cancelled: no branch kept" and view.run_button.isEnabled()


def test_branch_here_on_an_alert_fills_the_whatif_dock_and_brings_it_forward(
    qtbot: Any, finished_window: Any
) -> None:
    from PySide6.QtGui import QAction

    w = finished_window
    desk, dock = w.desk, w.whatif
    desk.log_in("carol", "carol-demo")
    qtbot.waitUntil(lambda: desk.alerts is not None)
    desk.show_dock("Alerts")
    alerts = desk.alerts
    qtbot.waitUntil(lambda: any(a.account and a.tick for a in alerts.shown), timeout=10_000)
    row, alert = next((i, a) for i, a in enumerate(alerts.shown) if a.account and a.tick)
    assert dock.dock.visibleRegion().isEmpty()  # behind the Alerts tab
    pos = alerts.table.visualRect(alerts.model.index(row, 1)).center()
    branch = alerts.alert_menu(pos).findChild(QAction, "alert-branch-here")
    assert branch.isEnabled()
    assert branch.text() == f"Branch here (tick {alert.tick:,}, freeze {alert.account})…"
    branch.trigger()
    assert dock.view.at.text() == str(alert.tick)
    assert json.loads(dock.view.actions.toPlainText()) == {
        "operator": "carol", "action": "freeze", "account": alert.account,
        "reason": "what-if: freeze",
    }  # fmt: skip
    assert alerts.selected() == alert
    qtbot.waitUntil(lambda: not dock.dock.visibleRegion().isEmpty())
    # Off the rows there is no alert to branch at.
    below = alerts.table.viewport().rect().bottomLeft()
    assert not alerts.alert_menu(below).findChild(QAction, "alert-branch-here").isEnabled()


def test_branch_here_on_the_timeline_sets_the_moment_to_the_tick_under_the_cursor(
    qtbot: Any, finished_window: Any
) -> None:
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QAction

    from console.widgets.charts import branch_tick

    w = finished_window
    snap, dock = w.snapshot, w.whatif
    # Snapped to the nearest tick; never past the last tick the store holds nor the run's last.
    assert branch_tick(snap, snap.epoch(1234) + 0.4) == 1234
    assert branch_tick(snap, snap.epoch(1234) + 0.6) == 1235
    assert branch_tick(snap, snap.start_epoch - 60) == 0
    assert branch_tick(snap, snap.epoch(99_999)) == snap.ticks_total - 2 == 3600
    typed = '{"operator": "carol", "action": "warn", "account": "A", "reason": "r"}'
    dock.view.actions.setPlainText(typed)
    fund = w.charts.fund
    box = fund.getPlotItem().getViewBox()
    pos = fund.mapFromScene(box.mapViewToScene(QPointF(float(snap.epoch(1800)), 0.0)))
    branch = fund.context_menu(pos).findChild(QAction, "branch-here")
    tick = branch_tick(snap, fund.x_at(pos))
    seconds_per_pixel = box.viewPixelSize()[0] / snap.tick_seconds
    assert tick is not None and abs(tick - 1800) <= seconds_per_pixel + 1
    assert branch.text().endswith(f"UTC (tick {tick:,})…") and branch.isEnabled()
    branch.trigger()
    assert dock.view.at.text() == str(tick)
    assert dock.view.actions.toPlainText() == typed  # the actions are left as typed
    qtbot.waitUntil(lambda: not dock.dock.visibleRegion().isEmpty())
    assert w.charts.prices.context_menu(pos).findChild(QAction, "branch-here") is not None
