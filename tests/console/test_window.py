"""The main window: views fill from snapshots, replay controls, themes, layout kept in
QSettings, CSV and PNG export, the screenshot command line, and a clean close."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TWO_TRADERS, wait_snapshot
from PySide6.QtGui import QImage

from console.app import parse
from console.cli.launch import wants_gui, window_option_before
from console.cli.main import command_names

COMMANDS = command_names()


@pytest.fixture
def window(qtbot: Any, settings: Any) -> Any:
    from console.window.main_window import MainWindow

    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    w.open_source(TWO_TRADERS)
    wait_snapshot(qtbot, w.bridge)
    yield w
    w.close()
    assert not w.bridge.running


def not_blank(path: Path) -> bool:
    image = QImage(str(path))
    if image.isNull():
        return False
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    return len(colours) > 20


def test_views_fill_from_snapshots(qtbot: Any, window: Any) -> None:
    window.bridge.step(5)
    snap = wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 5)
    qtbot.waitUntil(lambda: window.snapshot is snap)
    assert window.accounts.model.rowCount() == 1  # A was liquidated; B's short is open
    assert window.accounts.model.cell_text(0, 0) == "B"
    assert window.liquidations.model.rowCount() == 1
    assert window.events.model.rowCount() == len(snap.events)
    card = window.overview.cards["BTC"]
    assert card.values["uncovered"].text().startswith("8.00000000 BTC")
    assert "tick 5/" in window.status_time.text()
    assert "paused" in window.status_state.text()
    assert window.slider.value() == 5
    assert window.charts.mark_curve.getData()[0].size == 6


def test_play_pause_buttons_and_seek_by_slider(qtbot: Any, window: Any) -> None:
    window.speed.setCurrentIndex(0)  # 1x: it will not reach the end
    window.toggle_play()
    wait_snapshot(qtbot, window.bridge, lambda s: s.playing)
    qtbot.waitUntil(lambda: window.play_action.text() == "Pause")
    window.toggle_play()
    wait_snapshot(qtbot, window.bridge, lambda s: not s.playing)
    window.bridge.step(40)
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick >= 40)
    window.slider.setValue(3)
    window.slider.sliderReleased.emit()
    snap = wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 3)
    assert not snap.live
    qtbot.waitUntil(lambda: "replaying history" in window.status_state.text())


def test_account_detail_follows_a_double_click(qtbot: Any, window: Any) -> None:
    window.choose_account("B")
    window.bridge.step(3)
    snap = wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 3 and s.watched == "B")
    qtbot.waitUntil(lambda: window.snapshot is snap)
    assert window.detail.positions.rowCount() == 1
    assert "B" in window.detail.summary.text()
    # The built-in scenario names no convention: its instruments follow the mark.
    assert ": mark" in window.detail.summary.text().split("margin convention")[1]
    assert snap.watched_ratio.shape[1] == 2 and snap.watched_ratio.shape[0] >= 1


def test_theme_switch_and_layout_persist(qtbot: Any, window: Any, settings: Any) -> None:
    from PySide6.QtWidgets import QApplication

    from console.window.main_window import MainWindow

    def ladder_title() -> str:
        return str(window.charts.ladder.getPlotItem().titleLabel.text)

    symbol = window.charts.symbol
    assert symbol and symbol in ladder_title()
    window.set_theme("dark")
    assert "#15181c" in QApplication.instance().styleSheet()
    assert window.accounts.model.palette["critical"].name() == "#6b1f24"
    # Labels are set only when they change; a theme sets the titles again and keeps the symbol.
    assert symbol in ladder_title()
    window.bridge.step(1)
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 1)
    assert symbol in ladder_title()
    window.docks["Events"].hide()
    window.save_layout()
    assert settings.value("theme") == "dark"
    again = MainWindow(bridge=window.bridge, settings=settings)
    qtbot.addWidget(again)
    again.show()
    assert not again.docks["Events"].isVisible()
    assert again.docks["Overview"].isVisible()
    window.set_theme("light")


def test_csv_and_png_export(qtbot: Any, window: Any, tmp_path: Path) -> None:
    window.bridge.step(2)
    wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 2)
    assert window.liquidations.table.export_csv(tmp_path / "liq.csv") == 1
    assert (tmp_path / "liq.csv").read_text().splitlines()[0].startswith("Time (UTC),Account")
    saved = window.save_charts(tmp_path)
    assert len(saved) == 6
    assert all(not_blank(p) for p in saved[:2])
    assert window.screenshot(tmp_path / "window.png") and not_blank(tmp_path / "window.png")


def test_command_lines_that_open_the_window() -> None:
    assert wants_gui([], COMMANDS)
    assert wants_gui(["open", "x.json"], COMMANDS)
    assert wants_gui(["--screenshot", "a.png", "--quit-after", "2"], COMMANDS)
    assert not wants_gui(["run", "two-traders", "--out", "r.json"], COMMANDS)
    assert not wants_gui(["scenarios"], COMMANDS)
    assert not wants_gui(["--help"], COMMANDS)


def test_window_options_are_accepted_in_any_order() -> None:
    groups = [["--operator", "carol"], ["--screenshot", "X.png"], ["--db", "S.sqlite"],
              ["two-traders"], ["--paused"], ["--theme=dark"], ["--quit-after", "2"]]  # fmt: skip
    expected = {"operator": "carol", "screenshot": "X.png", "store": "S.sqlite",
                "path": "two-traders", "verb": None, "paused": True, "theme": "dark",
                "quit_after": 2.0}  # fmt: skip
    orders = list(itertools.permutations(groups))[::97]
    assert len(orders) > 40
    for order in orders:
        argv = [word for group in order for word in group]
        assert wants_gui(argv, COMMANDS), argv
        parsed = vars(parse(argv))
        assert {k: parsed[k] for k in expected} == expected, argv
    assert wants_gui(["--operator", "carol", "--screenshot", "X.png"], COMMANDS)
    assert parse(["--operator", "carol", "--screenshot", "X.png"]).path is None
    opened = parse(["--paused", "open", "--store", "run", "x.sqlite", "--views"])
    assert (opened.verb, opened.path, opened.store, opened.views) == (
        "open",
        "x.sqlite",
        "run",
        True,
    )
    for bad in (["open"], ["a.json", "b.json"]):
        with pytest.raises(SystemExit) as exited:
            parse(bad)
        assert exited.value.code == 2


def test_subcommands_still_run_headless_after_window_words() -> None:
    headless = [["run", "two-traders", "--out", "r.json", "--db", "S"], ["replay", "S"],
                ["resume", "S", "--out", "r.json"], ["action", "S", "warn", "--as", "carol"],
                ["operators", "list", "S"], ["report", "S", "--out", "r.pdf"], ["scenarios"],
                ["audit", "verify", "S"], ["--help"], ["-h"]]  # fmt: skip
    commands = command_names()
    assert {"run", "replay", "resume", "export", "action", "operators", "report"} <= commands
    for argv in headless:
        assert not wants_gui(argv, COMMANDS), argv
    # A command's word as a window option's value is that value, not the command.
    assert wants_gui(["--store", "run", "--screenshot", "replay"], COMMANDS)
    assert wants_gui(["--paused", "--help"], COMMANDS)  # the window's own help
    assert window_option_before(["--theme", "dark", "run", "x"], commands) == "--theme"
    assert window_option_before(["run", "x", "--out", "r.json"], commands) is None


def test_screenshot_command_line(tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    code = (
        "import sys; from console.app import main; "
        f"sys.exit(main(['open', {str(TWO_TRADERS)!r}, '--screenshot', {str(shot)!r}, "
        f"'--quit-after', '1', '--settings', {str(tmp_path / 's.ini')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert not_blank(shot)


def test_open_needs_a_path_and_a_display(tmp_path: Path) -> None:
    from console.app import main

    assert main(["open"]) == 2
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")
    }
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from console.app import main; sys.exit(main([]))"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "no display" in done.stderr
