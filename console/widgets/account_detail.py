"""Account detail: one account's positions with liquidation and bankruptcy prices, its lowest
margin ratio over time (from when it was chosen), and its events."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QSplitter, QVBoxLayout, QWidget

from console.models.base import fmt_money
from console.models.logs import EventsModel
from console.models.positions import PositionsModel, flag_text
from console.widgets.plots import Plot, colours
from console.widgets.table import DataTable
from core.model.arrays import distinct
from core.session.snapshot import Snapshot


class AccountDetailPanel(QWidget):
    watch_requested = Signal(object)  # the account id, or None

    def __init__(self, theme: str = "light", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("account-detail")
        self.theme = theme
        self.account: str | None = None
        self.entry = QLineEdit()
        self.entry.setObjectName("account-entry")
        self.entry.setPlaceholderText("account id (or double-click a row in Accounts)")
        self.entry.returnPressed.connect(
            lambda: self.show_account(self.entry.text().strip() or None)
        )
        self.summary = QLabel("No account chosen")
        self.summary.setObjectName("account-summary")
        self.summary.setWordWrap(True)
        # Four lines always: a summary that wrapped to another count of lines would resize the
        # dock and with it every view in the window, a whole-window repaint while playing.
        self.summary.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.summary.setFixedHeight(4 * self.summary.fontMetrics().lineSpacing() + 4)
        self.positions = PositionsModel(self, account=-1)
        self.positions_table = DataTable(self.positions, "account-positions")
        self.events = EventsModel(self, account=-1)
        self.events_table = DataTable(self.events, "account-events")
        self.ratio = Plot(
            "Margin ratio over time", "Lowest margin ratio", "Time (UTC)", time_axis=True
        )
        self.ratio_curve = self.ratio.curve("mark", theme, "margin ratio")
        self.ratio_line = pg.InfiniteLine(pos=1.0, angle=0, label="liquidation (1)")
        self.ratio.addItem(self.ratio_line)
        top = QHBoxLayout()
        top.addWidget(QLabel("Account"))
        top.addWidget(self.entry, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.positions_table)
        splitter.addWidget(self.ratio)
        splitter.addWidget(self.events_table)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)
        self.snapshot: Snapshot | None = None
        self.apply_theme(theme)

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        self.positions.set_theme(theme)
        self.events.set_theme(theme)
        self.ratio.apply_theme(theme)
        c = colours(theme)
        self.ratio_line.setPen(pg.mkPen(c["line"], style=Qt.PenStyle.DashLine))
        self.ratio_line.label.setColor(c["foreground"])

    def show_account(self, account: str | None) -> None:
        """Choose the account to show; the engine thread starts tracking its margin ratio."""
        self.account = account
        self.entry.setText(account or "")
        self.watch_requested.emit(account)
        if self.snapshot is not None:
            self.update_snapshot(self.snapshot)

    def update_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        ids = snap.table.account_ids
        index = -1
        if self.account is not None:
            try:
                index = ids.index(self.account)
            except ValueError:
                index = -1
        if self.positions.account != index:
            self.positions.set_account(index)
            self.events.set_account(index)
        self.positions.set_table(snap.table)
        self.events.set_log(
            snap.events,
            account_ids=ids,
            start_epoch=snap.start_epoch,
            tick_seconds=snap.tick_seconds,
        )
        if self.account is None:
            self.summary.setText("No account chosen")
        elif index < 0:
            self.summary.setText(f"No account {self.account!r} in this run")
        else:
            self.summary.setText(self._summary(snap, index))
        if snap.watched == self.account and snap.watched_ratio.size:
            ticks, ratios = snap.watched_ratio[:, 0], snap.watched_ratio[:, 1]
            keep = np.isfinite(ratios)
            self.ratio_curve.setData(snap.epoch(ticks[keep]), ratios[keep])
        else:
            self.ratio_curve.setData([], [])

    def _summary(self, snap: Snapshot, index: int) -> str:
        cols = snap.table.columns
        rows = snap.table.rows_of_account(index)
        open_rows = rows[cols["contracts"][rows] > 0]
        flags = int(np.bitwise_or.reduce(cols["flags"][rows])) if rows.size else 0
        worst = float(cols["margin_ratio"][open_rows].min()) if open_rows.size else float("nan")
        notional = float(cols["notional"][open_rows].sum())
        table = snap.table
        # Which convention each of its instruments values margin by: the prices shown follow it.
        conventions = "; ".join(
            f"{table.symbols[k]}: {table.convention_of(k)}"
            for k in distinct(cols["symbol"][rows]).tolist()
        )
        return (
            f"<b>{self.account}</b> — {open_rows.size} open of {rows.size} positions, notional "
            f"{fmt_money(notional)}, lowest margin ratio {worst:.3f}"
            + (f", flags: {flag_text(flags)}" if flags else "")
            + (f"<br>margin convention — {conventions}" if conventions else "")
        )
