"""The What-if dock's view: a moment, operator actions (JSON) and policy changes for a branch of
the run's store; Run with progress and Cancel; the original and its branches side by side (the
comparison, per-account differences, the fund's path and the deficit's cover overlaid). It shows
values; the branch runs on the what-if thread (console/worker/whatif_runner.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.models.base import Column
from console.models.records import RecordsModel
from console.widgets.plots import Plot, colours
from console.widgets.table import DataTable
from core.model.units import format_minor

UNCHANGED = "unchanged"
COVER = (  # the deficit's parts, in the order they pay, with their colour in the theme
    ("fund", "Fund", "fund"),
    ("injection", "Injection", "reserved"),
    ("clawback", "Clawback", "last"),
    ("adl", "ADL", "short"),
    ("uncovered", "Uncovered", "line"),
)
RUN_COLOURS = ("index", "mark", "last", "short", "reserved")  # original first

RUN_COLUMNS = (
    Column("run", "Run", "the original, then each branch", numeric=False),
    Column("changes", "Changes", "where the branch leaves and what it changes", numeric=False),
    Column("currency", "Cur.", "settle currency", numeric=False),
    Column("liquidations", "Liquidations", "liquidation fills"),
    Column("contracts", "Contracts", "contracts liquidated"),
    Column("fund_end", "Fund end", "the insurance fund at the end"),
    Column("fund_min", "Fund min", "the fund's lowest balance"),
    Column("deficit", "Deficit", "= fund + injection + clawback + ADL + uncovered"),
    Column("fund", "Fund paid", "what the fund's own money paid"),
    Column("injection", "Injection", "what an injection paid"),
    Column("clawback", "Clawback", "the clawback's allocations (pending ones included)"),
    Column("adl", "ADL", "what ADL's counterparties gave up against the mark"),
    Column("uncovered", "Uncovered", "what nobody paid"),
    Column("ratio", "Clawback ratio", "the last clawback's ratio and status", numeric=False),
    Column("adl_contracts", "ADL contracts", "contracts closed by ADL"),
)
ACCOUNT_COLUMNS = (
    Column("account", "Account", "the accounts that paid or ended differently", numeric=False),
    Column("currency", "Cur.", "settle currency", numeric=False),
    Column("run", "Run", "the run", numeric=False),
    Column("clawback", "Clawback", "paid by clawback"),
    Column("adl", "ADL", "given up to ADL"),
    Column("paid", "Paid", "clawback plus ADL"),
    Column("equity_end", "Equity end", "ledger balance plus upnl at the last mark"),
    Column("difference", "Difference", "equity at the end less the original's"),
)


@dataclass(frozen=True, slots=True)
class WhatIfForm:
    """What the operator asked for: the moment, the actions as typed, the policy changes."""

    at: str
    actions: str
    policy: dict[str, str] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RunLine:
    cells: tuple[str, ...]


def changes_text(changes: Mapping[str, Any]) -> str:
    """A branch's changes in one line: `at 00:30:14 (tick 181): freeze 2051247; deficit=adl`."""
    if not changes:
        return "as stored"
    at = changes.get("at", {})
    parts = []
    for a in changes.get("actions", []):
        subject = a.get("account") or a.get("request") or a.get("currency") or ""
        parts.append(f"{a.get('action')} {subject}".strip())
    parts += [f"{k}={str(v).lower()}" for k, v in changes.get("policy", {}).items()]
    when = str(at.get("time", "")).replace("T", " ").removesuffix("Z")
    return f"at {when} (tick {at.get('tick')}): " + ("; ".join(parts) or "no change")


def to_minor(text: str, decimals: int) -> int:
    return int(Decimal(text).scaleb(decimals))


def run_lines(doc: Mapping[str, Any], decimals: Mapping[str, int]) -> list[RunLine]:
    """A line per run and currency of a comparison (risk-whatif/1)."""
    out = []
    for run in doc["runs"]:
        for code, c in run["currencies"].items():
            d = decimals.get(code, 8)
            money = lambda text, d=d: format_minor(to_minor(text, d), d, display=True)  # noqa: E731
            last = c["clawbacks"][-1] if c["clawbacks"] else None
            ratio = f"{float(last['ratio']):.4%} {last['status']}" if last else "—"
            cover = c["deficit"]
            out.append(
                RunLine(
                    (
                        run["name"],
                        changes_text(run["changes"]),
                        code,
                        f"{c['liquidations']['count']:,}",
                        f"{c['liquidations']['contracts']:,}",
                        money(c["fund"]["end"]),
                        money(c["fund"]["min"]),
                        money(cover["total"]),
                        *(money(cover[k]) for k in ("fund", "injection", "clawback", "adl")),
                        money(cover["uncovered"]),
                        ratio,
                        f"{c['adl_contracts']:,}",
                    )
                )
            )
    return out


def account_lines(doc: Mapping[str, Any], decimals: Mapping[str, int]) -> list[RunLine]:
    out = []
    for row in doc["accounts"]:
        d = decimals.get(row["currency"], 8)
        money = lambda text, d=d: format_minor(to_minor(text, d), d, display=True)  # noqa: E731
        for name, r in row["runs"].items():
            difference = "—" if r["difference"] is None else money(r["difference"])
            out.append(
                RunLine(
                    (
                        row["account"],
                        row["currency"],
                        name,
                        money(r["clawback"]),
                        money(r["adl"]),
                        money(r["paid"]),
                        money(r["equity_end"]),
                        difference,
                    )
                )
            )
    return out


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class WhatIfView(QWidget):
    """Emits `run_requested(WhatIfForm)` and `cancel_requested()`; shown what comes back."""

    run_requested = Signal(object)
    cancel_requested = Signal()
    current_requested = Signal()  # fill the moment with the current tick
    alert_requested = Signal()  # fill the moment (and a freeze) from the selected alert
    template_requested = Signal(str)  # an action kind: answered by `add_action`

    def __init__(
        self,
        policy_choices: Mapping[str, tuple[str, ...]],
        kinds: tuple[str, ...],
        theme: str = "light",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("whatif")
        self.theme = theme
        self.decimals: dict[str, int] = {}
        self.span = (0.0, 1.0)  # the run's first and last tick, epoch seconds
        self.doc: dict[str, Any] | None = None

        self.at = QLineEdit()
        self.at.setObjectName("whatif-at")
        self.at.setPlaceholderText("tick number or ISO UTC time (2018-07-31T00:30:14Z)")
        self.current_button = QPushButton("Current tick")
        self.current_button.clicked.connect(self.current_requested)
        self.alert_button = QPushButton("From selected alert")
        self.alert_button.setToolTip("branch at the selected alert's tick, freezing its account")
        self.alert_button.clicked.connect(self.alert_requested)
        self.name = QLineEdit()
        self.name.setObjectName("whatif-name")
        self.name.setPlaceholderText("whatif-N")
        moment = QHBoxLayout()
        moment.addWidget(self.at, 2)
        moment.addWidget(self.current_button)
        moment.addWidget(self.alert_button)
        moment.addWidget(QLabel("Name"))
        moment.addWidget(self.name, 1)

        self.policy: dict[str, QComboBox] = {}
        policies = QHBoxLayout()
        for key, choices in policy_choices.items():
            box = QComboBox()
            box.setObjectName(f"whatif-policy-{key}")
            box.addItems([UNCHANGED, *choices])
            policies.addWidget(QLabel(key.replace("_", " ")))
            policies.addWidget(box)
            self.policy[key] = box
        policies.addStretch(1)

        self.template = QComboBox()
        self.template.setObjectName("whatif-template")
        self.template.addItems(["Add action…", *kinds])
        self.template.activated.connect(self._add_template)
        self.actions = QPlainTextEdit()
        self.actions.setObjectName("whatif-actions")
        self.actions.setPlaceholderText(
            'risk-scenario/1 actions as JSON: {"operator": "alice", "action": "freeze", '
            '"account": "A", "reason": "..."} or a list; without "at" at the next tick'
        )
        self.actions.setMaximumHeight(90)

        self.run_button = QPushButton("Run branch")
        self.run_button.setObjectName("whatif-run")
        self.run_button.clicked.connect(self.request_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("whatif-cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setObjectName("whatif-progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setObjectName("whatif-status")
        self.error = QLabel("")
        self.error.setObjectName("whatif-error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828; font-weight: bold;")
        self.error.hide()
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)
        run_row.addWidget(self.status, 1)

        form = QFormLayout()
        form.addRow("Branch at", moment)
        form.addRow("Policy", policies)
        form.addRow(self.template, self.actions)
        form.addRow(run_row)
        form.addRow(self.error)

        self.runs_model: RecordsModel[RunLine] = RecordsModel(RUN_COLUMNS, lambda r: r.cells)
        self.runs_table = DataTable(self.runs_model, "whatif-runs")
        self.accounts_model: RecordsModel[RunLine] = RecordsModel(
            ACCOUNT_COLUMNS, lambda r: r.cells
        )
        self.accounts_table = DataTable(self.accounts_model, "whatif-accounts")
        tables = QTabWidget()
        tables.addTab(self.runs_table, "Runs side by side")
        tables.addTab(self.accounts_table, "Accounts")
        self.fund_plot = Plot("Insurance fund, each run", "Balance", "Time (UTC)", time_axis=True)
        self.fund_plot.addLegend(offset=(8, 8))
        self.deficit_plot = Plot("Deficit and what covered it", "Amount", "")
        self.deficit_plot.addLegend(offset=(-8, 8))  # top right: the bars start at the left
        self.deficit_plot.getPlotItem().setMouseEnabled(False, False)
        self.currency = QComboBox()
        self.currency.setObjectName("whatif-currency")
        self.currency.currentTextChanged.connect(lambda _: self._draw())
        charts = QWidget()
        chart_column = QVBoxLayout(charts)
        chart_column.setContentsMargins(0, 0, 0, 0)
        chart_column.addWidget(self.currency)
        plots = QSplitter()
        plots.addWidget(self.fund_plot)
        plots.addWidget(self.deficit_plot)
        chart_column.addWidget(plots, 1)
        results = QSplitter()
        results.addWidget(tables)
        results.addWidget(charts)
        results.setSizes([700, 600])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(results, 1)
        self.apply_theme(theme)

    # ----- the form -----------------------------------------------------------------------

    def form(self) -> WhatIfForm:
        policy = {k: box.currentText() for k, box in self.policy.items()}
        return WhatIfForm(
            at=self.at.text().strip(),
            actions=self.actions.toPlainText(),
            policy={k: v for k, v in policy.items() if v != UNCHANGED},
            name=self.name.text().strip() or None,
        )

    def request_run(self) -> None:
        form = self.form()
        if not form.at:
            self.show_error("at", "expected the tick or ISO UTC time to branch at")
            return
        self.show_error("", "")
        self.run_requested.emit(form)

    def set_context(self, decimals: Mapping[str, int], span: tuple[float, float]) -> None:
        """The run's currencies (their decimals) and time span, from the snapshot."""
        self.decimals, self.span = dict(decimals), span

    def add_action(self, action: dict[str, Any]) -> None:
        """Append `action` to the actions typed so far (a list once there are two)."""
        text = self.actions.toPlainText().strip()
        try:
            so_far = json.loads(text) if text else []
        except json.JSONDecodeError:
            so_far = None
        if so_far is None:  # not JSON yet: leave what is typed, add beneath it
            self.actions.setPlainText(text + "\n" + json.dumps(action))
            return
        items = so_far if isinstance(so_far, list) else [so_far]
        items.append(action)
        one = len(items) == 1
        self.actions.setPlainText(json.dumps(items[0] if one else items, indent=None if one else 1))

    def _add_template(self, index: int) -> None:
        if index > 0:
            self.template_requested.emit(self.template.itemText(index))
        self.template.setCurrentIndex(0)

    # ----- what comes back ----------------------------------------------------------------

    def show_error(self, field: str, message: str) -> None:
        """Inline, naming the field (`action[0].account: ...`); empty hides it."""
        text = f"{field}: {message}" if field else message
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def set_running(self, running: bool, text: str = "") -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)  # busy until the branch's first tick is counted
        self.status.setText(text)

    def set_progress(self, name: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        if done >= total:  # the run is over; comparing it takes seconds at a million accounts
            self.status.setText(f"{name}: {total:,} ticks run, comparing with the original…")
        else:
            self.status.setText(f"{name}: {done:,} of {total:,} ticks")

    def show_comparison(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.runs_model.set_records(run_lines(doc, self.decimals))
        self.accounts_model.set_records(account_lines(doc, self.decimals))
        self.runs_table.size_columns(sample_rows=self.runs_model.rowCount())
        self.accounts_table.size_columns(sample_rows=50)
        codes = list(doc["runs"][0]["currencies"]) if doc["runs"] else []
        if [self.currency.itemText(i) for i in range(self.currency.count())] != codes:
            self.currency.blockSignals(True)
            self.currency.clear()
            self.currency.addItems(codes)
            self.currency.blockSignals(False)
        self._draw()

    def apply_theme(self, theme: str) -> None:
        self.theme = theme
        self.fund_plot.apply_theme(theme)
        self.deficit_plot.apply_theme(theme)
        self._draw()

    def _draw(self) -> None:
        doc, code = self.doc, self.currency.currentText()
        if doc is None or not code:
            return
        c = colours(self.theme)
        d = self.decimals.get(code, 8)
        scale = 10.0**d
        fund = self.fund_plot.getPlotItem()
        fund.clear()
        fund.setLabel("left", f"Balance ({code})")
        bars = self.deficit_plot.getPlotItem()
        bars.clear()
        bars.setLabel("left", f"Amount ({code})")
        names = []
        bottoms = np.zeros(len(doc["runs"]))
        parts = {key: np.zeros(len(doc["runs"])) for key, _, _ in COVER}
        for n, run in enumerate(doc["runs"]):
            names.append(run["name"])
            cur = run["currencies"][code]
            times = [self.span[0], *(_epoch(t) for t, _ in cur["fund"]["path"]), self.span[1]]
            values = [to_minor(cur["fund"]["start"], d) / scale]
            values += [to_minor(b, d) / scale for _, b in cur["fund"]["path"]]
            values.append(values[-1])
            # A step line: the balance holds until the next posting.
            x = np.repeat(np.asarray(times), 2)[1:-1]
            y = np.repeat(np.asarray(values[:-1]), 2)
            pen = pg.mkPen(c[RUN_COLOURS[n % len(RUN_COLOURS)]], width=2 if n else 1.5)
            fund.plot(x, y, pen=pen, name=run["name"])
            for key, _, _ in COVER:
                parts[key][n] = to_minor(cur["deficit"][key], d) / scale
        x = np.arange(len(names), dtype=np.float64)
        for key, title, colour in COVER:
            height = parts[key]
            item = pg.BarGraphItem(
                x=x, y0=bottoms.copy(), height=height, width=0.6, brush=c[colour], pen=None
            )
            bars.addItem(item)
            if bars.legend is not None:
                bars.legend.addItem(item, title)
            bottoms = bottoms + height
        bars.getAxis("bottom").setTicks([list(enumerate(names))])
        bars.setXRange(-0.6, len(names) - 0.4)
        bars.setYRange(0, max(float(bottoms.max(initial=0.0)) * 1.25, 1e-8))
