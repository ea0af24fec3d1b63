"""Table models over the append-only logs of a snapshot (liquidations, events), newest first.
Filters are numpy masks applied to new rows only as the log grows; a filter change rescans."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt

from console.models.base import Column, ExportableModel, Index, fmt_float
from core.model.arrays import distinct
from core.model.units import format_minor
from core.session.snapshot import Log


class LogModel(ExportableModel):
    """Rows are the matching log rows, the newest at the top."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.log: Log | None = None
        self.account_ids: tuple[str, ...] = ()
        self.symbols: tuple[str, ...] = ()
        self.currencies: tuple[str, ...] = ()
        self.decimals: dict[str, int] = {}
        self.start_epoch = 0.0
        self.tick_seconds = 1
        self.matched = np.zeros(0, dtype=np.int64)
        self._scanned = 0

    def set_log(
        self,
        log: Log,
        *,
        account_ids: tuple[str, ...],
        symbols: tuple[str, ...] = (),
        currencies: tuple[str, ...] = (),
        decimals: dict[str, int] | None = None,
        start_epoch: float = 0.0,
        tick_seconds: int = 1,
    ) -> None:
        self.account_ids, self.symbols, self.currencies = account_ids, symbols, currencies
        self.decimals = decimals or {}
        self.start_epoch, self.tick_seconds = start_epoch, tick_seconds
        shrunk = self.log is not None and len(log) < self._scanned
        self.log = log
        if shrunk:
            self.rescan()
            return
        new = np.flatnonzero(self.matches(log, self._scanned, len(log))) + self._scanned
        self._scanned = len(log)
        if new.size:
            # Newest first: the new rows go in at the top.
            self.beginInsertRows(QModelIndex(), 0, new.size - 1)
            self.matched = np.concatenate((self.matched, new))
            self.endInsertRows()

    def rescan(self) -> None:
        self.beginResetModel()
        log = self.log
        self.matched = (
            np.flatnonzero(self.matches(log, 0, len(log)))
            if log is not None
            else np.zeros(0, np.int64)
        )
        self._scanned = len(log) if log is not None else 0
        self.endResetModel()

    def matches(self, log: Log, start: int, stop: int) -> np.ndarray:
        return np.ones(stop - start, dtype=bool)

    def accounts_matching(self, text: str) -> np.ndarray:
        """A mask over account indices whose id contains `text` (checks only ids in the log)."""
        mask = np.zeros(len(self.account_ids) + 1, dtype=bool)
        if self.log is not None and len(self.log):
            needle = text.lower()
            for a in distinct(self.log.columns["account"]).tolist():
                if a >= 0 and needle in self.account_ids[a].lower():
                    mask[a] = True
        return mask

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.matched)

    def log_row(self, r: int) -> int:
        return int(self.matched[len(self.matched) - 1 - r])

    def time_text(self, tick: int) -> str:
        from datetime import UTC, datetime

        moment = datetime.fromtimestamp(self.start_epoch + tick * self.tick_seconds, UTC)
        return moment.strftime("%m-%d %H:%M:%S")

    def account_text(self, index: int) -> str:
        return self.account_ids[index] if 0 <= index < len(self.account_ids) else ""


class LiquidationsModel(LogModel):
    """Finished liquidations; filter by text (account or instrument), side, size, deficit."""

    columns = (
        Column("time", "Time (UTC)", "when the liquidation finished", numeric=False),
        Column("account", "Account", "liquidated account", numeric=False),
        Column("symbol", "Instrument", "contract", numeric=False),
        Column("side", "Side", "side of the liquidated position", numeric=False),
        Column("contracts", "Contracts", "contracts liquidated"),
        Column("fill_price", "Fill price", "average fill price"),
        Column("bankruptcy", "Bankr. price", "bankruptcy price of the position"),
        Column("surplus", "Surplus", "fill better than bankruptcy: paid into the fund"),
        Column("deficit", "Deficit", "fill worse than bankruptcy"),
        Column("covered", "Fund paid", "part of the deficit the insurance fund covered"),
        Column("partial", "Partial", "a partial (tier) reduction", numeric=False),
    )

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.text = ""
        self.side = 0
        self.min_contracts = 0
        self.deficit_only = False
        self._text_mask: np.ndarray | None = None

    def set_filter(
        self, *, text: str = "", side: int = 0, min_contracts: int = 0, deficit_only: bool = False
    ) -> None:
        self.text, self.side = text.strip(), side
        self.min_contracts, self.deficit_only = min_contracts, deficit_only
        self._text_mask = None
        self.rescan()

    def matches(self, log: Log, start: int, stop: int) -> np.ndarray:
        cols = log.columns
        mask = np.ones(stop - start, dtype=bool)
        if self.side:
            mask &= cols["side"][start:stop] == self.side
        if self.min_contracts:
            mask &= cols["contracts"][start:stop] >= self.min_contracts
        if self.deficit_only:
            mask &= cols["deficit"][start:stop] > 0
        if self.text:
            needle = self.text.lower()
            symbols = np.array([needle in s.lower() for s in self.symbols] + [False], dtype=bool)
            accounts = self.accounts_matching(self.text)
            mask &= accounts[cols["account"][start:stop]] | symbols[cols["symbol"][start:stop]]
        return mask

    def cell_text(self, r: int, c: int) -> str:
        assert self.log is not None
        row, key = self.log_row(r), self.columns[c].key
        cols = self.log.columns
        currency = self.currencies[int(cols["currency"][row])] if self.currencies else ""
        places = self.decimals.get(currency, 8)
        if key == "time":
            return self.time_text(int(cols["tick"][row]))
        if key == "account":
            return self.account_text(int(cols["account"][row]))
        if key == "symbol":
            k = int(cols["symbol"][row])
            return self.symbols[k] if 0 <= k < len(self.symbols) else ""
        if key == "side":
            return "long" if cols["side"][row] > 0 else "short"
        if key == "contracts":
            return f"{int(cols['contracts'][row]):,}"
        if key in ("fill_price", "bankruptcy"):
            return fmt_float(float(cols[key][row]), 2)
        if key in ("surplus", "deficit", "covered"):
            return format_minor(int(cols[key][row]), places, display=True)
        if key == "partial":
            return "yes" if cols["partial"][row] else ""
        return ""

    def extra(self, index: Index, role: int) -> Any:
        if role == Qt.ItemDataRole.ForegroundRole and self.log is not None:
            row = self.log_row(index.row())
            key = self.columns[index.column()].key
            if key == "deficit" and self.log.columns["deficit"][row] > 0:
                return self.palette["text_critical"]
            if key == "surplus" and self.log.columns["surplus"][row] > 0:
                return self.palette["text_good"]
        return None


class EventsModel(LogModel):
    """Every engine event as one line; filter by kind, text, or (account detail) one account."""

    columns = (
        Column("time", "Time (UTC)", "simulated time", numeric=False),
        Column("kind", "Event", "event type", numeric=False),
        Column("account", "Account", "account concerned", numeric=False),
        Column("text", "Detail", "what happened (amounts in the currency's units)", numeric=False),
    )

    def __init__(self, parent: Any = None, *, account: int | None = None) -> None:
        super().__init__(parent)
        self.kind = ""
        self.text = ""
        self.account = account

    def set_filter(self, *, kind: str = "", text: str = "") -> None:
        self.kind, self.text = kind, text.strip().lower()
        self.rescan()

    def set_account(self, account: int | None) -> None:
        self.account = account
        self.rescan()

    def matches(self, log: Log, start: int, stop: int) -> np.ndarray:
        mask = np.ones(stop - start, dtype=bool)
        if self.account is not None:
            mask &= log.columns["account"][start:stop] == self.account
        if self.kind or self.text:
            kinds, texts = log.text["kind"], log.text["text"]
            for i in np.flatnonzero(mask).tolist():
                row = start + i
                if (self.kind and kinds[row] != self.kind) or (
                    self.text and self.text not in texts[row].lower()
                ):
                    mask[i] = False
        return mask

    def cell_text(self, r: int, c: int) -> str:
        assert self.log is not None
        row, key = self.log_row(r), self.columns[c].key
        if key == "time":
            return self.time_text(int(self.log.columns["tick"][row]))
        if key == "account":
            return self.account_text(int(self.log.columns["account"][row]))
        return self.log.text[key][row]

    def extra(self, index: Index, role: int) -> Any:
        if role == Qt.ItemDataRole.ForegroundRole and self.log is not None:
            kind = self.log.text["kind"][self.log_row(index.row())]
            if kind in ("DeficitUncovered", "ClawbackComputed", "AlertRaised", "ActionRefused"):
                return self.palette["text_critical"]
        return None
