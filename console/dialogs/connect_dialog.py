"""File > Connect to feed…: the URL of a live feed (a NATS stream or a JSONL file), picked from the
recent ones or typed, checked by a Qt-free state before the dialog accepts; and the status bar's
line about a feed's link (connected / reconnecting / behind by N / last message T s ago)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from core.feed.link import LinkStatus
from core.feed.nats_stream import parse_url
from core.feed.transports import is_feed_url, is_nats
from core.model.errors import InputError

RECENT = 8  # URLs remembered


@dataclass
class ConnectState:
    """What the dialog edits: the URL, and the recent URLs it offers (newest first)."""

    url: str = ""
    recent: list[str] = field(default_factory=list)

    def check(self) -> str:
        """The URL to connect to; InputError (field `URL`) when it names no feed."""
        url = self.url.strip()
        if not is_feed_url(url) or url == "-":
            raise InputError("URL", "expected nats://HOST:PORT/STREAM or a FILE.jsonl")
        if is_nats(url):
            parse_url(url)
        return url

    def remember(self, url: str) -> list[str]:
        self.recent = [url, *(u for u in self.recent if u != url)][:RECENT]
        return self.recent


class ConnectDialog(QDialog):
    """Accepted only with a URL that names a feed; `state.url` is then the one to open."""

    def __init__(self, state: ConnectState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connect-dialog")
        self.setWindowTitle("Connect to feed")
        self.state = state
        self.url_edit = QComboBox()
        self.url_edit.setEditable(True)
        self.url_edit.setMinimumWidth(380)
        self.url_edit.addItems(state.recent)
        self.url_edit.setCurrentText(state.url or (state.recent[0] if state.recent else ""))
        self.url_edit.lineEdit().setPlaceholderText("nats://127.0.0.1:4222/DESK")
        self.error = QLabel("")
        self.error.setObjectName("dialog-error")
        form = QFormLayout()
        form.addRow("Feed URL", self.url_edit)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def accept(self) -> None:
        self.state.url = self.url_edit.currentText()
        try:
            self.state.url = self.state.check()
        except InputError as error:
            self.error.setText(f"{error.field}: {error.message}")
            return
        self.state.remember(self.state.url)
        super().accept()


def link_text(status: LinkStatus, feed_time: datetime, silent_after: float) -> tuple[str, bool]:
    """The status bar's line about a feed's link, and whether it warns (red)."""
    parts = [f"feed {status.state}"]
    if status.behind:
        parts.append(f"behind {status.behind:,} msgs")
    if status.silent_seconds is not None:
        parts.append(f"last msg {status.silent_seconds:.1f} s ago")
    wall = datetime.now(UTC).strftime("%H:%M:%S")
    parts.append(f"feed {feed_time.astimezone(UTC):%H:%M:%S} · wall {wall} UTC")
    silent = status.silent_seconds is not None and status.silent_seconds >= silent_after
    warn = status.state in ("reconnecting", "failed") or silent
    return " · ".join(parts), warn
