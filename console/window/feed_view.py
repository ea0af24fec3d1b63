"""The main window on a live feed: File > Connect to feed… (recent URLs remembered in the
settings), the status bar's line about the link and the feed's time beside the wall clock, red
when the link is down or the producer silent, and the replay controls off (the feed plays itself)."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel

from console.dialogs.connect_dialog import ConnectDialog, ConnectState, link_text
from console.worker.pacing import SILENT_SECONDS
from core.session.snapshot import Snapshot

RECENT_KEY = "feeds/recent"


class FeedView:
    """The feed's part of the window `window` (a MainWindow)."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self.silent_after = SILENT_SECONDS
        self.connect_action = QAction("Connect to feed…", window)
        self.connect_action.setShortcut("Ctrl+Shift+F")
        self.connect_action.triggered.connect(self.show_connect)
        self.label = QLabel("")
        self.label.setObjectName("status-feed")
        self.label.hide()
        window.statusBar().addWidget(self.label)
        self.dialog: ConnectDialog | None = None
        self.on_feed = False

    def recent(self) -> list[str]:
        value = self.window.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings gives back a one-item list as a string
            value = [value]
        return [str(v) for v in value or []]

    def show_connect(self) -> None:
        dialog = ConnectDialog(ConnectState(recent=self.recent()), self.window)
        dialog.accepted.connect(lambda: self.connect(dialog.state))
        self.dialog = dialog
        dialog.open()

    def connect(self, state: ConnectState) -> None:
        self.window.settings.setValue(RECENT_KEY, state.recent)
        self.window.open_source(state.url)

    def update(self, snap: Snapshot) -> None:
        """Show the link (or hide the line off a feed) and the replay controls a run allows."""
        status = snap.feed
        on_feed = status is not None
        if on_feed != self.on_feed:
            self.on_feed = on_feed
            self.label.setVisible(on_feed)
            for control in (
                self.window.play_action,
                self.window.step_action,
                self.window.step_many_action,
                self.window.start_action,
                self.window.end_action,
                self.window.slider,
                self.window.speed,
            ):
                control.setEnabled(not on_feed)
        if status is None:
            return
        self.window.status_state.setText("live on the feed" if status.state != "ended" else "ended")
        text, warn = link_text(status, snap.now, self.silent_after)
        self.label.setText(text)
        self.label.setToolTip(status.error or status.url)
        self.label.setProperty("warn", warn)
        self.label.setStyleSheet("color: #c62828; font-weight: bold;" if warn else "")
