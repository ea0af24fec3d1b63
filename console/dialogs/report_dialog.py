"""File > Export incident report: a dialog for the range, filters, format and file, and the export
on a worker thread behind a progress dialog (the report reads the store on its own connection).
The UI thread runs no SQL: the run's range is asked of the engine thread (Bridge.ask)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QWidget,
)
from shiboken6 import isValid

from console.report.export import export
from core.desk.queries import ReportRange, ReportRangeQuery, answer_from_store
from core.model.errors import InputError, WriteError

FORMATS = {
    "PDF (people)": "pdf",
    "JSON (everything)": "json",
    "CSV (liquidations, allocations)": "csv",
}


# Sends a store query and calls back with its answer (Bridge.ask has this shape).
Ask = Callable[[object, Callable[[Any], None]], None]


class Cancelled(Exception):
    """The operator cancelled the export."""


class ReportWorker(QObject):
    """Builds and writes one report on its thread; `progress` carries (step, percent)."""

    progress = Signal(str, int)
    finished = Signal(str)
    failed = Signal(str)

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__()
        self.options = options
        self.cancelled = False

    def _step(self, name: str, percent: int) -> None:
        if self.cancelled:
            raise Cancelled
        self.progress.emit(name, percent)

    @Slot()
    def run(self) -> None:
        try:
            self.finished.emit(export(progress=self._step, **self.options))
        except Cancelled:
            self.failed.emit("cancelled")
        except (InputError, WriteError) as error:
            self.failed.emit(str(error))
        except Exception as error:  # shown to the operator rather than lost on a thread
            self.failed.emit(f"{type(error).__name__}: {error}")


def ask_store(store_path: str | Path) -> Ask:
    """Answer queries from a read-only connection to `store_path` on a thread of their own, for
    a dialog opened without a running engine to ask."""

    def ask(query: object, reply: Callable[[Any], None]) -> None:
        def read() -> None:
            try:
                reply(answer_from_store(store_path, query))
            except Exception as error:  # a missing file or one that is not a store
                reply(InputError("STORE", f"cannot read {store_path}: {error}"))

        threading.Thread(target=read, name="report-range", daemon=True).start()

    return ask


class ReportDialog(QDialog):
    """The options of one export; `export_now` runs it behind a QProgressDialog."""

    done = Signal(str)
    # The run's range (a ReportRange, or the InputError met reading it), delivered on the UI
    # thread whichever thread answered.
    range_ready = Signal(object)

    def __init__(
        self,
        store_path: str | Path,
        parent: QWidget | None = None,
        *,
        ask: Ask | None = None,
        start: str | None = None,
        end: str | None = None,
        accounts: tuple[str, ...] = (),
        symbols: tuple[str, ...] = (),
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export incident report")
        self.store_path = str(store_path)
        self.range: ReportRange | None = None
        self.start = QLineEdit(start or "")
        self.end = QLineEdit(end or "")
        for field in (self.start, self.end):
            field.setPlaceholderText("reading the store…")
        self.accounts = QLineEdit(", ".join(accounts))
        self.accounts.setPlaceholderText("all accounts (or ids separated by commas)")
        self.symbols = QLineEdit(", ".join(symbols))
        self.symbols.setPlaceholderText("all instruments (or symbols separated by commas)")
        self.format = QComboBox()
        self.format.addItems(list(FORMATS))
        self.distributions = QCheckBox("margin-ratio distributions before and after (slower)")
        self.distributions.setChecked(True)
        self.out = QLineEdit(str(Path(self.store_path).with_suffix(".report.pdf")))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.format.currentTextChanged.connect(self._suffix)
        file_row = QHBoxLayout()
        file_row.addWidget(self.out)
        file_row.addWidget(browse)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c0392b")
        self.error.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow(QLabel(f"Store: {self.store_path}"))
        form.addRow("From (UTC)", self.start)
        form.addRow("To (UTC)", self.end)
        form.addRow("Accounts", self.accounts)
        form.addRow("Instruments", self.symbols)
        form.addRow("Format", self.format)
        form.addRow("", self.distributions)
        form.addRow("File", file_row)
        form.addRow(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.export_now)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._thread: QThread | None = None
        self._worker: ReportWorker | None = None
        self.progress: QProgressDialog | None = None
        self.range_ready.connect(self._apply_range)
        (ask or ask_store(self.store_path))(ReportRangeQuery(), self._range_answered)

    def _range_answered(self, answer: object) -> None:
        # The dialog may be gone by the time the store answers.
        if isValid(self):
            self.range_ready.emit(answer)

    @Slot(object)
    def _apply_range(self, answer: object) -> None:
        """Prefill the range fields the operator has not filled."""
        if not isinstance(answer, ReportRange):
            self.error.setText(str(answer))
            return
        self.range = answer
        for field, value in ((self.start, answer.start), (self.end, answer.end)):
            field.setPlaceholderText("")
            if not field.text():
                field.setText(value)

    def options(self) -> dict[str, Any]:
        def items(field: QLineEdit) -> list[str]:
            return [t.strip() for t in field.text().split(",") if t.strip()]

        return {
            "store_path": self.store_path,
            "out": self.out.text().strip(),
            "fmt": FORMATS[self.format.currentText()],
            "start": self.start.text().strip() or None,
            "end": self.end.text().strip() or None,
            "accounts": items(self.accounts),
            "symbols": items(self.symbols),
            "distributions": self.distributions.isChecked(),
        }

    def _browse(self) -> None:
        fmt = FORMATS[self.format.currentText()]
        path, _ = QFileDialog.getSaveFileName(
            self, "Export incident report", self.out.text(), f"{fmt.upper()} (*.{fmt})"
        )
        if path:
            self.out.setText(path)

    def _suffix(self, label: str) -> None:
        path = Path(self.out.text())
        if path.name:
            self.out.setText(str(path.with_suffix(f".{FORMATS[label]}")))

    @Slot()
    def export_now(self) -> None:
        """Start the export on a worker thread; the dialog stays open until it ends."""
        options = self.options()
        if not options["out"]:
            self.error.setText("File: choose where to write the report")
            return
        self.error.clear()
        self._thread = QThread(self)
        self._worker = ReportWorker(options)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self.progress = QProgressDialog("Building the report…", "Cancel", 0, 100, self)
        self.progress.setWindowTitle("Export incident report")
        self.progress.setMinimumDuration(0)
        self.progress.canceled.connect(self._cancel)
        self._worker.progress.connect(self._progress)
        self._worker.finished.connect(self._finished)
        self._worker.failed.connect(self._failed)
        self.setEnabled(False)
        self._thread.start()

    def _cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancelled = True

    def _progress(self, step: str, percent: int) -> None:
        if self.progress is not None:
            self.progress.setLabelText(f"Building the report: {step}")
            self.progress.setValue(percent)

    def _stop(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
        if self.progress is not None:
            self.progress.reset()
        self.setEnabled(True)

    def _finished(self, line: str) -> None:
        self._stop()
        self.done.emit(line)
        self.accept()

    def _failed(self, message: str) -> None:
        self._stop()
        self.error.setText("" if message == "cancelled" else message)

    def closeEvent(self, event: Any) -> None:
        self._cancel()
        self._stop()
        super().closeEvent(event)


def add_report_action(
    menu: QMenu,
    window: QWidget,
    get_store_path: Callable[[], str | Path | None],
    ask: Ask | None = None,
) -> QAction:
    """File > Export incident report…: the dialog for the store `get_store_path` returns; its
    range is read by `ask` (the engine thread's Bridge.ask), else on a thread of its own."""
    action = QAction("Export incident report…", window)
    action.setStatusTip("Write an incident report of a time range of the run (PDF, JSON, CSV)")

    def open_dialog() -> None:
        path = get_store_path()
        if path is None or not Path(path).exists():
            QMessageBox.information(
                window, "Export incident report", "This run has no store to report from yet."
            )
            return
        dialog = ReportDialog(path, window, ask=ask)
        status = getattr(window, "statusBar", None)
        if callable(status):
            dialog.done.connect(lambda line: status().showMessage(line, 10_000))
        dialog.open()

    action.triggered.connect(open_dialog)
    menu.addAction(action)
    return action
