"""The accounts table: every position of the book from a snapshot's read-only numpy columns,
sorted by numpy argsort (rows remapped through an order array) and filtered by numpy masks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, QModelRoleDataSpan, Qt, Signal

from console.models.base import (
    Column,
    ExportableModel,
    Index,
    fmt_float,
    fmt_money,
    risk_band,
)
from core.model.operations import FLAG_NAMES
from core.session.snapshot import LIQUIDATING, PositionTable, TableSpec, table_order

# Tables up to this size are sorted and filtered at once on the UI thread (a few ms); larger
# ones keep their old order until the engine thread returns one for the new spec.
LOCAL_ORDER_MAX = 100_000

COLUMNS = (
    Column("account", "Account", "account id", numeric=False),
    Column("symbol", "Instrument", "contract", numeric=False),
    Column("side", "Side", "long or short", numeric=False),
    Column("contracts", "Contracts", "open contracts"),
    Column(
        "equity", "Equity", "account equity (cross) or position equity (isolated), settle currency"
    ),
    Column("notional", "Notional", "position notional at the mark, settle currency"),
    Column("leverage", "Eff. lev.", "effective leverage: notional / equity"),
    Column("margin_ratio", "Margin ratio", "equity / maintenance margin; liquidated at 1"),
    Column("okx_rate", "OKX rate", "OKX margin rate: equity / position margin"),
    Column("liquidation", "Liq. price", "mark price at which the position is liquidated"),
    Column("bankruptcy", "Bankr. price", "mark price at which its equity is zero"),
    Column("distance_pct", "To liq. %", "how far the mark must move to liquidate (negative: past)"),
    Column("upnl", "uPnL", "unrealized PnL at the mark, settle currency"),
    Column("adl", "ADL", "auto-deleveraging queue light (5: first in line)"),
    Column("flags", "Flags", "operator flags and liquidation in progress", numeric=False),
)
SORT_KEYS = tuple(c.key for c in COLUMNS)
UPNL = SORT_KEYS.index("upnl")
DISPLAY = Qt.ItemDataRole.DisplayRole
ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole
BACKGROUND = Qt.ItemDataRole.BackgroundRole
FOREGROUND = Qt.ItemDataRole.ForegroundRole
# The roles `data` answers beyond the four a paint asks; every other role is empty.
ASKED_APART = frozenset({Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.UserRole})
PAGE_ROWS_KEPT = 4096  # rows whose cells are kept: pages scrolled through, not the whole table


def flag_text(flags: int) -> str:
    names = [name for bit, name in FLAG_NAMES.items() if flags & bit]
    if flags & LIQUIDATING:
        names.insert(0, "liquidating")
    return ", ".join(names)


class PositionsModel(ExportableModel):
    """Rows are `order[r]` of the table; `account` pins it to one account's positions."""

    columns = COLUMNS
    spec_changed = Signal(object)

    def __init__(self, parent: Any = None, *, account: int | None = None) -> None:
        super().__init__(parent)
        self.table: PositionTable | None = None
        self.spec = TableSpec()
        self.order = np.zeros(0, dtype=np.int64)
        self.account = account
        # The painted rows' cells, made from the current table, order and palette: dropped
        # whenever one of them changes (in `_set_order` and `set_theme`).
        self._page: dict[int, tuple[tuple[str, ...], Any, Any]] = {}

    # ----- feeding ------------------------------------------------------------------------

    def set_table(self, table: PositionTable) -> None:
        resized = self.table is None or len(self.table) != len(table)
        self.table = table
        if self.account is not None:
            order = table.rows_of_account(self.account)
        elif table.spec == self.spec:
            order = table.order
        elif len(table) <= LOCAL_ORDER_MAX or resized:
            order = table_order(table, self.spec)
        else:
            order = self.order  # rows never move in the book: the old order still names rows
        self._set_order(order)

    def set_theme(self, theme: str) -> None:
        self._page = {}  # the rows' colours are the palette's
        super().set_theme(theme)

    def set_account(self, account: int | None) -> None:
        self.account = account
        if self.table is not None:
            self.set_table(self.table)

    def set_spec(self, spec: TableSpec) -> None:
        """A new sort or filter: applied here when the table is small, and sent on (spec_changed)
        so the engine thread orders the next snapshots by it."""
        if spec == self.spec:
            return
        self.spec = spec
        if self.table is not None and self.account is None and len(self.table) <= LOCAL_ORDER_MAX:
            self._set_order(table_order(self.table, spec))
        self.spec_changed.emit(spec)

    def _set_order(self, order: np.ndarray) -> None:
        """Values only: dataChanged. Same rows rearranged: a layout change. Rows come or go:
        the rows past the shorter length inserted or removed at the end, then every row's values
        changed (a reset would lay out the view and paint its 1M-row viewport twice). A selection
        follows its positions to where they now stand (a layout change then too)."""
        count, before = len(order), len(self.order)
        old = self.order
        self._page = {}  # made again when next painted, from the new table and order
        moved = count != before or not np.array_equal(order, old)
        follow = moved and (count == before or bool(self.persistentIndexList()))
        if count > before:
            self.beginInsertRows(QModelIndex(), before, count - 1)
            self.order = np.concatenate([old, order[before:]])
            self.endInsertRows()
        if follow:
            # Before rows go: an index in the rows removed would be dropped, not followed.
            self.layoutAboutToBeChanged.emit()
            # Read after the signal: a selection model keeps its ranges' cells in answer to it.
            followed = self.persistentIndexList()
            self.order = order if count >= before else np.concatenate([order, old[count:]])
            self._follow(followed, old, order)
            self.layoutChanged.emit()
        if count < before:
            self.beginRemoveRows(QModelIndex(), count, before - 1)
            self.order = self.order[:count]
            self.endRemoveRows()
        self.order = order
        if len(order):
            self.dataChanged.emit(
                self.index(0, 0), self.index(len(order) - 1, len(self.columns) - 1)
            )

    def _follow(self, indexes: list[QModelIndex], old: np.ndarray, new: np.ndarray) -> None:
        """Point the views' kept indexes (selection, current cell) at the rows of `new` that
        show the positions they showed under `old`; a position `new` lacks drops its index.
        One pass over `new` however many rows are selected."""
        positions = old[np.array([i.row() for i in indexes], dtype=np.int64)]
        rows = np.flatnonzero(np.isin(new, positions))
        place = dict(zip(new[rows].tolist(), rows.tolist(), strict=True))
        targets = []
        for index, position in zip(indexes, positions.tolist(), strict=True):
            row = place.get(position)
            targets.append(QModelIndex() if row is None else self.index(row, index.column()))
        self.changePersistentIndexList(indexes, targets)

    # ----- Qt model -----------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.order)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if 0 <= column < len(self.columns):
            descending = order == Qt.SortOrder.DescendingOrder
            self.set_spec(
                replace(self.spec, sort_key=self.columns[column].key, descending=descending)
            )

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.table is None:
            return None
        r, c = index.row(), index.column()
        if not (0 <= r < len(self.order) and 0 <= c < len(self.columns)):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cell_text(r, c)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.align(c)
        row = int(self.order[r])
        if role == Qt.ItemDataRole.ToolTipRole and self.columns[c].key == "symbol":
            k = int(self.table.columns["symbol"][row])
            return f"{self.table.symbols[k]}: margin convention {self.table.convention_of(k)}"
        if role == Qt.ItemDataRole.BackgroundRole:
            band = risk_band(float(self.table.columns["margin_ratio"][row]))
            if band is not None and self.table.columns["contracts"][row] > 0:
                return self.palette[band]
            return None
        if role == Qt.ItemDataRole.ForegroundRole and self.columns[c].key == "upnl":
            value = float(self.table.columns["upnl"][row])
            return (
                self.palette["text_good"]
                if value > 0
                else self.palette["text_critical"]
                if value < 0
                else None
            )
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None

    def multiData(self, index: Index, roleDataSpan: QModelRoleDataSpan) -> None:
        """Every role the delegate asks of a cell, from the row's cells made once per row and
        snapshot: a page of 1M-row table cost 23 ms of Python a paint, asked role by role."""
        if not index.isValid() or self.table is None:
            return
        r, c = index.row(), index.column()
        if not (0 <= r < len(self.order) and 0 <= c < len(self.columns)):
            return
        cells = self._row(r)
        for role_data in roleDataSpan:
            role = role_data.role()
            if role == DISPLAY:
                role_data.setData(cells[0][c])
            elif role == ALIGNMENT:
                role_data.setData(self.align(c))
            elif role == BACKGROUND:
                role_data.setData(cells[1])
            elif role == FOREGROUND:
                role_data.setData(cells[2] if c == UPNL else None)
            elif role in ASKED_APART:
                role_data.setData(self.data(index, role))

    def _row(self, r: int) -> tuple[tuple[str, ...], Any, Any]:
        """Row r's texts, its background and its uPnL colour (what `data` answers for them)."""
        if len(self._page) >= PAGE_ROWS_KEPT:
            self._page = {}
        cells = self._page.get(r)
        if cells is None:
            index = self.index(r, UPNL)
            cells = (
                tuple(self.cell_text(r, c) for c in range(len(self.columns))),
                self.data(index, BACKGROUND),
                self.data(index, FOREGROUND),
            )
            self._page[r] = cells
        return cells

    def cell_text(self, r: int, c: int) -> str:
        table = self.table
        assert table is not None
        row = int(self.order[r])
        key = self.columns[c].key
        value = table.columns[key][row]
        if key == "account":
            return table.account_ids[int(value)]
        if key == "symbol":
            return table.symbols[int(value)]
        if key == "side":
            return "long" if value > 0 else "short"
        if key == "contracts":
            return f"{int(value):,}"
        if key in ("equity", "notional", "upnl"):
            return fmt_money(float(value))
        if key == "leverage":
            return fmt_float(float(value), 1) + ("x" if np.isfinite(value) else "")
        if key in ("margin_ratio", "okx_rate"):
            return fmt_float(float(value), 3)
        if key in ("liquidation", "bankruptcy"):
            return fmt_float(float(value), 2)
        if key == "distance_pct":
            return "—" if not np.isfinite(value) else f"{float(value):+.2f}%"
        if key == "adl":
            n = int(value)
            return "●" * n + "○" * (5 - n) if n else ""
        if key == "flags":
            return flag_text(int(value))
        return str(value)

    def account_name(self, r: int) -> str | None:
        if self.table is None or not 0 <= r < len(self.order):
            return None
        return self.table.account_ids[int(self.table.columns["account"][int(self.order[r])])]
