"""The main window: the charts in the middle, docked views around them (layout kept in QSettings),
menus, the replay toolbar (play, pause, step, speed, time slider), the status bar, and the
operations docks of the logged-in operator (console/window/operator_desk.py).

One module past 500 lines: the menus, docks and status bar are wired to each other here, once."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSlider,
    QStyle,
    QToolBar,
    QWidget,
)

from console.dialogs.report_dialog import add_report_action
from console.widgets.account_detail import AccountDetailPanel
from console.widgets.accounts import AccountsPanel
from console.widgets.charts import ChartsPanel
from console.widgets.events import EventsPanel
from console.widgets.liquidations import LiquidationsPanel
from console.widgets.overview import OverviewPanel
from console.widgets.table import DataTable
from console.window.feed_view import FeedView
from console.window.operator_desk import COLOURS, OperatorDesk
from console.window.whatif_dock import WhatIfDock
from console.worker.bridge import Bridge
from console.worker.operations import Outcome
from console.worker.pacing import SPEEDS, STAGE_MS, STAGED_ROWS
from core.session.snapshot import Snapshot

LAYOUT_VERSION = 3  # 2: the operations docks; 3: the what-if dock


def speed_label(speed: float) -> str:
    return "max" if speed <= 0 else f"{speed:g}x"


class MainWindow(QMainWindow):
    theme_changed = Signal(str)

    def __init__(
        self,
        bridge: Bridge | None = None,
        *,
        settings: QSettings | None = None,
        theme: str = "light",
        login: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        """`login`: ask for an operator (dialog) each time a run or store opens."""
        super().__init__(parent)
        self.setObjectName("main-window")
        self.setWindowTitle("Risk console")
        self.settings = settings or QSettings("risk-console", "risk-console")
        self.bridge = bridge or Bridge(self)
        self.theme = theme
        self.snapshot: Snapshot | None = None
        self.updates = 0
        self._stages: deque[Callable[[], object]] = deque()
        # One timer: a timer, not a zero-time call (a posted event, run in the same batch as
        # what came before it), and past the 5 ms after which Qt paints what a stage changed.
        self._stage_timer = QTimer(self)
        self._stage_timer.setSingleShot(True)
        self._stage_timer.setInterval(STAGE_MS)
        self._stage_timer.timeout.connect(self._next_stage)

        self.charts = ChartsPanel(theme)
        self.setCentralWidget(self.charts)
        self.overview = OverviewPanel(theme)
        self.accounts = AccountsPanel()
        self.detail = AccountDetailPanel(theme)
        self.liquidations = LiquidationsPanel(theme)
        self.events = EventsPanel()
        self.docks: dict[str, QDockWidget] = {}
        area = Qt.DockWidgetArea
        self.add_dock("Overview", self.overview, area.TopDockWidgetArea)
        self.add_dock("Accounts", self.accounts, area.BottomDockWidgetArea)
        self.add_dock("Liquidations", self.liquidations, area.BottomDockWidgetArea)
        self.add_dock("Events", self.events, area.BottomDockWidgetArea)
        self.add_dock("Account detail", self.detail, area.RightDockWidgetArea)
        self.desk = OperatorDesk(self)
        self.desk.ask_login = login
        self.whatif = WhatIfDock(self)
        tabs = ("Accounts", "Liquidations", "Events", "Alerts", "Approvals", "Settlement review",
                "Audit log", "What-if")  # fmt: skip
        for left, right in itertools.pairwise(tabs):
            self.tabifyDockWidget(self.docks[left], self.docks[right])
        self.docks["Accounts"].raise_()
        self._default_state = self.saveState(LAYOUT_VERSION)

        self._build_actions()
        self._build_toolbar()
        self._build_status()
        self.feed_view = FeedView(self)
        self._build_menus()

        self.bridge.snapshot_ready.connect(self.apply_snapshot)
        self.bridge.ui_busy = self.showing
        self.bridge.failed.connect(self._failed)
        self.bridge.store_failed.connect(self._store_failed)
        self.store_failure_box: QMessageBox | None = None
        self.accounts.model.spec_changed.connect(self.bridge.set_spec)
        self.accounts.account_chosen.connect(self.choose_account)
        self.detail.watch_requested.connect(self.bridge.watch)
        self.desk.install_menu(self.accounts.table, self._account_at)
        self.desk.install_menu(self.detail.positions_table, lambda _: self.detail.account)
        self.apply_theme(theme)
        self.resize(1500, 950)
        self._restore_layout()

    # ----- building -----------------------------------------------------------------------

    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{widget.objectName()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock

    def _action(self, text: str, slot: Any, shortcut: Any = None, icon: Any = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        pixmap = QStyle.StandardPixmap
        self.open_scenario_action = self._action(
            "Open scenario…",
            self.open_scenario_dialog,
            QKeySequence.StandardKey.Open,
            pixmap.SP_DialogOpenButton,
        )
        self.open_store_action = self._action("Open store…", self.open_store_dialog, "Ctrl+Shift+O")
        self.play_action = self._action("Play", self.toggle_play, "Space", pixmap.SP_MediaPlay)
        self.step_action = self._action(
            "Step", lambda: self.bridge.step(1), "Right", pixmap.SP_MediaSeekForward
        )
        self.step_many_action = self._action(
            "Step 100 ticks", lambda: self.bridge.step(100), "Shift+Right"
        )
        self.start_action = self._action(
            "Jump to start", lambda: self.bridge.seek(0), "Home", pixmap.SP_MediaSkipBackward
        )
        self.end_action = self._action(
            "Jump to live end", self._jump_live, "End", pixmap.SP_MediaSkipForward
        )
        self.faster_action = self._action("Faster", lambda: self._nudge_speed(1), "Ctrl+Up")
        self.slower_action = self._action("Slower", lambda: self._nudge_speed(-1), "Ctrl+Down")
        self.export_action = self._action(
            "Export current table as CSV…", self.export_current_table, "Ctrl+E"
        )
        self.save_charts_action = self._action(
            "Save charts as PNG…", self.save_charts_dialog, "Ctrl+Shift+S"
        )
        self.screenshot_action = self._action("Save window screenshot…", self.screenshot_dialog)
        self.quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.reset_layout_action = self._action("Reset layout", self.reset_layout)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Replay", self)
        bar.setObjectName("toolbar-replay")
        bar.addAction(self.open_scenario_action)
        bar.addSeparator()
        bar.addAction(self.start_action)
        bar.addAction(self.play_action)
        bar.addAction(self.step_action)
        bar.addAction(self.end_action)
        self.speed = QComboBox()
        self.speed.setObjectName("speed")
        self.speed.setToolTip("simulated seconds per real second")
        for speed in SPEEDS:
            self.speed.addItem(speed_label(speed), speed)
        self.speed.setCurrentIndex(len(SPEEDS) - 1)
        self.speed.currentIndexChanged.connect(
            lambda i: self.bridge.set_speed(self.speed.itemData(i))
        )
        bar.addWidget(QLabel(" Speed "))
        bar.addWidget(self.speed)
        bar.addSeparator()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("time-slider")
        self.slider.setMinimumWidth(360)
        self.slider.setToolTip("drag to jump in time (from the store's snapshots)")
        self.slider.sliderReleased.connect(lambda: self.bridge.seek(self.slider.value()))
        self.slider.sliderMoved.connect(self._slider_preview)
        bar.addWidget(self.slider)
        self.time_label = QLabel("—")
        self.time_label.setObjectName("toolbar-time")
        self.time_label.setMinimumWidth(170)
        bar.addWidget(self.time_label)
        self.addToolBar(bar)
        self.toolbar = bar

    def _build_menus(self) -> None:
        menus = self.menuBar()
        file = menus.addMenu("&File")
        file.addAction(self.open_scenario_action)
        builtin = file.addMenu("Open built-in scenario")
        from core.scenario.builtin import builtin_scenarios

        for name, path in builtin_scenarios().items():
            builtin.addAction(name, lambda p=path: self.open_source(p))
        file.addAction(self.open_store_action)
        file.addAction(self.feed_view.connect_action)
        file.addSeparator()
        file.addAction(self.export_action)
        file.addAction(self.save_charts_action)
        file.addAction(self.screenshot_action)
        add_report_action(
            file,
            self,
            lambda: self.snapshot.store_path if self.snapshot is not None else None,
            self.bridge.ask,
        )
        file.addSeparator()
        file.addAction(self.quit_action)
        replay = menus.addMenu("&Replay")
        for action in (self.play_action, self.step_action, self.step_many_action, self.start_action,
                       self.end_action, self.faster_action, self.slower_action):  # fmt: skip
            replay.addAction(action)
        view = menus.addMenu("&View")
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        themes = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for name in ("light", "dark"):
            action = QAction(f"{name.title()} theme", self, checkable=True)
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            themes.addAction(action)
            view.addAction(action)
            self.theme_actions[name] = action
        view.addSeparator()
        view.addAction(self.reset_layout_action)
        operations = menus.addMenu("&Operations")
        self.operation_actions: dict[str, QAction] = {}
        for action in self.desk.build_actions():
            if action is self.desk.act_action:
                operations.addSeparator()
            if action is self.desk.login_action:
                operations.addSeparator()
            operations.addAction(action)
            self.operation_actions[action.text()] = action
        help_menu = menus.addMenu("&Help")
        help_menu.addAction("About", self._about)

    def _build_status(self) -> None:
        status = self.statusBar()
        self.status_time = QLabel("—")
        self.status_state = QLabel("stopped")
        self.status_rate = QLabel("")
        self.status_store = QLabel("")
        self.status_notice = QLabel("")
        self.status_notice.setObjectName("notice")
        self.status_operator = QLabel("not logged in")
        self.status_operator.setObjectName("status-operator")
        self.status_outcome = QLabel("")
        self.status_outcome.setObjectName("status-outcome")
        for name, label in (("status-time", self.status_time), ("status-state", self.status_state),
                            ("status-rate", self.status_rate), ("status-store", self.status_store)):  # fmt: skip
            label.setObjectName(name)
            status.addWidget(label)
        status.addPermanentWidget(self.status_outcome)
        status.addPermanentWidget(self.status_notice)
        status.addPermanentWidget(self.status_operator)

    # ----- commands -----------------------------------------------------------------------

    def open_source(
        self,
        source: str | Path | dict[str, Any],
        store: str | Path | None = None,
        *,
        play: bool = False,
    ) -> None:
        self.snapshot = None
        self.bridge.open(source, store)
        if play:
            self.bridge.play()
        name = (
            source.get("name", "scenario") if isinstance(source, dict) else Path(str(source)).name
        )
        self.setWindowTitle(f"Risk console — {name}")

    def open_scenario_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open scenario", "", "Scenario (*.json)")
        if path:
            self.open_source(path)

    def open_store_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open store", "", "Store (*.sqlite *.db)")
        if path:
            self.open_source(path)

    def toggle_play(self) -> None:
        snap = self.snapshot
        if snap is not None and snap.playing:
            self.bridge.pause()
        else:
            self.bridge.set_speed(self.speed.currentData())
            self.bridge.play()

    def _jump_live(self) -> None:
        if self.snapshot is not None:
            self.bridge.seek(self.snapshot.head)

    def _nudge_speed(self, by: int) -> None:
        self.speed.setCurrentIndex(
            max(0, min(self.speed.count() - 1, self.speed.currentIndex() + by))
        )

    def _account_at(self, pos: Any) -> str | None:
        """The account of the Accounts row under `pos` (None off the rows)."""
        index = self.accounts.table.indexAt(pos)
        return self.accounts.model.cell_text(index.row(), 0) if index.isValid() else None

    def show_outcome(self, outcome: Outcome) -> None:
        """What became of the operator's last command, in the status bar (red when refused)."""
        text = outcome.text if len(outcome.text) <= 90 else outcome.text[:89] + "…"
        self.status_outcome.setText(text)
        self.status_outcome.setToolTip(outcome.text)
        self.status_outcome.setStyleSheet(f"color: {COLOURS[self.theme][outcome.ok]};")

    def choose_account(self, account: str) -> None:
        self.detail.show_account(account)
        self.docks["Account detail"].show()
        self.docks["Account detail"].raise_()

    def current_table(self) -> DataTable | None:
        focus = QApplication.focusWidget()
        while focus is not None and not isinstance(focus, DataTable):
            focus = focus.parentWidget()
        if focus is not None:
            return focus
        for title in ("Accounts", "Liquidations", "Events"):
            dock = self.docks[title]
            if dock.isVisible() and not dock.visibleRegion().isEmpty():
                return dock.widget().table  # type: ignore[attr-defined]
        return self.accounts.table

    def export_current_table(self) -> None:
        table = self.current_table()
        if table is not None:
            table.export_dialog()

    def save_charts(self, folder: str | Path) -> list[Path]:
        out = []
        for plot in (*self.charts.plots, self.liquidations.waterfall, self.detail.ratio):
            path = (
                Path(folder) / f"{plot.plot_title.replace(' ', '-').replace(',', '').lower()}.png"
            )
            if plot.save_png(path):
                out.append(path)
        return out

    def save_charts_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save charts into")
        if folder:
            self.save_charts(folder)

    def screenshot(self, path: str | Path) -> bool:
        return self.grab().save(str(path), "PNG")

    def screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save screenshot", "risk-console.png", "PNG (*.png)"
        )
        if path:
            self.screenshot(path)

    def set_theme(self, theme: str) -> None:
        from console.widgets.theme import apply_theme

        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, theme)
        self.apply_theme(theme)
        self.settings.setValue("theme", theme)

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        for panel in (self.charts, self.overview, self.detail, self.liquidations):
            panel.apply_theme(theme)
        self.accounts.model.set_theme(theme)
        self.events.model.set_theme(theme)
        if hasattr(self, "desk"):
            self.desk.apply_theme(theme)
        if theme in getattr(self, "theme_actions", {}):
            self.theme_actions[theme].setChecked(True)
        self.theme_changed.emit(theme)

    # ----- snapshots ----------------------------------------------------------------------

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Show a snapshot: every view takes what it needs; nothing here waits on the engine.
        A book of STAGED_ROWS positions or more is shown a group of views per event-loop turn,
        each group painted before the next is fed, so that input and timers run in between."""
        self.snapshot = snap
        self.updates += 1
        stages = [
            lambda: (self.desk.on_snapshot(snap), self.overview.update_snapshot(snap)),
            lambda: self.accounts.update_snapshot(snap),
            lambda: self.charts.update_prices(snap),
            lambda: self.charts.update_fund(snap),
            lambda: self.charts.update_distributions(snap),
            lambda: (self.liquidations.update_snapshot(snap), self.events.update_snapshot(snap)),
            lambda: self._detail_and_status(snap),
        ]
        if len(snap.table) < STAGED_ROWS:
            self._stages.clear()
            for stage in stages:
                stage()
            return
        self._stages = deque(stages)  # a newer snapshot replaces what an older one left
        self._stage_timer.stop()
        self._next_stage()

    def showing(self) -> bool:
        """True while a snapshot's views are still being fed, a group per turn."""
        return bool(self._stages)

    def _next_stage(self) -> None:
        try:
            if self._stages:
                self._stages.popleft()()
        finally:
            # Even after a view failed: the others are shown and the engine is not left waiting.
            if self._stages:
                self._stage_timer.start()

    def _detail_and_status(self, snap: Snapshot) -> None:
        if self.detail.account is None and len(snap.table):
            self.detail.show_account(_largest_account(snap))
        self.detail.update_snapshot(snap)
        self._status(snap)

    def _status(self, snap: Snapshot) -> None:
        when = snap.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.status_time.setText(f"{when}  tick {snap.tick:,}/{snap.ticks_total - 1:,}")
        state = "playing" if snap.playing else "finished" if snap.finished else "paused"
        if not snap.live:
            state += " (replaying history)"
        self.status_state.setText(f"{state}  speed {speed_label(snap.speed)}")
        self.status_rate.setText(f"{snap.ticks_per_second:,.0f} ticks/s")
        # The file name only: the status bar also carries the notice, outcome and operator.
        store = Path(snap.store_path).name if snap.store_path else None
        self.status_store.setText(f"store {store}" if store else "no store")
        self.status_store.setToolTip(snap.store_path or "")
        self.status_notice.setText(snap.notice or "")
        self.feed_view.update(snap)
        self.time_label.setText(when)
        style = QStyle.StandardPixmap
        self.play_action.setText("Pause" if snap.playing else "Play")
        self.play_action.setIcon(
            self.style().standardIcon(style.SP_MediaPause if snap.playing else style.SP_MediaPlay)
        )
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setRange(0, snap.ticks_total - 1)
            self.slider.setValue(snap.tick)
            self.slider.blockSignals(False)

    def _slider_preview(self, tick: int) -> None:
        if self.snapshot is not None:
            when = datetime.fromtimestamp(self.snapshot.epoch(tick), UTC)
            self.time_label.setText(f"→ {when:%Y-%m-%d %H:%M:%S} UTC")

    def _failed(self, field: str, message: str) -> None:
        self.status_notice.setText(f"{field}: {message}")

    def _store_failed(self, line: str) -> None:
        """A store write failed and the run stopped: the line in the status bar and in a message
        box that does not block the window (the views still show the run)."""
        self.status_notice.setText(line)
        box = QMessageBox(QMessageBox.Icon.Critical, "Store write failed", line, parent=self)
        box.setInformativeText(
            "Nothing committed is lost. Once there is room, open the store again here "
            "(File > Open store…) or resume it with the command shown."
        )
        box.setModal(False)
        self.store_failure_box = box
        box.open()

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "Risk console",
            "A risk-operator console for crypto-derivatives exchanges: liquidations, the insurance "
            "fund, clawback and auto-deleveraging, replayed from risk-scenario/1 files.",
        )

    # ----- layout -------------------------------------------------------------------------

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        state = self.settings.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state, LAYOUT_VERSION)

    def save_layout(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.show()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        self.whatif.close()
        self.bridge.shutdown()
        self.desk.close()
        super().closeEvent(event)

    def stop_after(self, seconds: float, callback: Any) -> None:
        QTimer.singleShot(int(seconds * 1000), callback)


def _largest_account(snap: Snapshot) -> str:
    """The account with the largest open notional: what the detail view shows first."""
    import numpy as np

    cols = snap.table.columns
    open_notional = np.where(cols["contracts"] > 0, cols["notional"], 0.0)
    total = np.bincount(
        cols["account"], weights=open_notional, minlength=len(snap.table.account_ids)
    )
    return snap.table.account_ids[int(np.argmax(total))]
