"""The main window's What-if dock: the view (console/widgets/whatif_view.py) wired to a runner
of branches on a thread of its own, against the store of the run the window shows (its path is
in the snapshot), and filled by "Branch here" on an alert or a timeline. The original is only
read; a branch goes to STORE.whatif/NAME.db."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt

from console.widgets.whatif_view import WhatIfForm, WhatIfView
from console.worker.whatif_runner import BranchProgress, BranchRequest, WhatIfRunner
from core.desk.alerts import Alert
from core.session.snapshot import Snapshot
from core.whatif.branch import POLICY_CHOICES

# The operator actions a branch may add from the menu (any risk-scenario/1 action may be typed).
KINDS = ("freeze", "force_reduce", "restrict", "warn", "unfreeze", "cancel_orders", "inject")


def action_template(kind: str, operator: str, account: str | None, snap: Snapshot | None) -> dict:
    """A `kind` action filled from what the window shows: the operator at the desk, the account
    in detail (its largest open position for a force-reduce), the first currency."""
    action: dict[str, Any] = {"operator": operator, "action": kind}
    if kind == "inject":
        currency = snap.overview[0].code if snap is not None and snap.overview else "BTC"
        action.update(currency=currency, amount="1")
    else:
        action["account"] = account or "ACCOUNT"
    if kind == "warn":
        action["message"] = "what-if: warned"
    if kind == "force_reduce":
        symbol, contracts = "SYMBOL", 1
        if snap is not None and account in snap.table.account_ids:
            cols = snap.table.columns
            rows = snap.table.rows_of_account(snap.table.account_ids.index(account))
            rows = rows[cols["contracts"][rows] > 0]
            if rows.size:
                row = int(rows[np.argmax(cols["contracts"][rows])])
                symbol = snap.table.symbols[int(cols["symbol"][row])]
                contracts = max(1, int(cols["contracts"][row]) // 2)
        action.update(symbol=symbol, contracts=contracts)
    action["reason"] = f"what-if: {kind.replace('_', ' ')}"
    return action


class WhatIfDock:
    """The What-if part of `window` (a MainWindow): docked beside the operations docks."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self.view = WhatIfView(POLICY_CHOICES, KINDS, window.theme)
        self.runner = WhatIfRunner(window)
        window.add_dock("What-if", self.view, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.dock = window.docks["What-if"]
        view, runner = self.view, self.runner
        view.run_requested.connect(self.run)
        view.cancel_requested.connect(self.cancel)
        view.current_requested.connect(self.at_current_tick)
        view.alert_requested.connect(self.at_selected_alert)
        view.template_requested.connect(self.add_template)
        window.desk.branch_requested.connect(self.at_alert)
        window.charts.branch_requested.connect(self.at_tick)
        runner.started.connect(lambda name: view.set_running(True, f"{name}: running"))
        runner.progress.connect(self._progress)
        runner.finished.connect(self._finished)
        runner.failed.connect(self._failed)
        runner.cancelled.connect(self._cancelled)
        for ended in (runner.finished, runner.failed, runner.cancelled):
            ended.connect(lambda *_: window.bridge.release_dropped())
        window.bridge.snapshot_ready.connect(self.on_snapshot)
        window.theme_changed.connect(view.apply_theme)

    def on_snapshot(self, snap: Snapshot) -> None:
        end = snap.epoch(snap.ticks_total - 1)
        self.view.set_context({o.code: o.decimals for o in snap.overview}, (snap.start_epoch, end))

    def run(self, form: WhatIfForm) -> bool:
        snap = self.window.snapshot
        if snap is None or not snap.store_path:
            self.view.show_error("store", "no run is open: open a scenario or a store first")
            return False
        request = BranchRequest(snap.store_path, form.at, form.actions, form.policy, form.name)
        if not self.runner.start(request):
            self.view.show_error("run", "a branch is running: wait for it or cancel it")
            return False
        self.view.set_running(True, "reading the store at the branch point…")
        return True

    def cancel(self) -> None:
        self.runner.cancel()
        self.view.status.setText("cancelling…")

    def at_current_tick(self) -> None:
        snap = self.window.snapshot
        if snap is not None:
            self.view.at.setText(str(snap.tick))

    def at_selected_alert(self) -> None:
        """The dock's "From selected alert": as "Branch here…" on that alert."""
        alerts = getattr(self.window.desk, "alerts", None)
        self.at_alert(alerts.selected() if alerts is not None else None)

    def at_alert(self, alert: Alert | None) -> None:
        """Branch here: the alert's tick, and a freeze of its account; the dock brought forward."""
        if alert is None or alert.tick is None:
            self.view.show_error("at", "select an alert in the Alerts dock first")
            return
        self.at_tick(alert.tick)
        if alert.account:
            self.view.add_action(self._template("freeze", alert.account))

    def at_tick(self, tick: int) -> None:
        """Branch here on a timeline: the moment set to `tick`, the actions left as typed."""
        self.view.show_error("", "")
        self.view.at.setText(str(tick))
        self.dock.show()
        self.dock.raise_()

    def add_template(self, kind: str) -> None:
        self.view.add_action(self._template(kind, self.window.detail.account))

    def _template(self, kind: str, account: str | None) -> dict:
        operator = self.window.desk.operator
        name = operator.name if operator is not None else "alice"
        return action_template(kind, name, account, self.window.snapshot)

    def _progress(self, p: BranchProgress) -> None:
        self.view.set_progress(p.name, p.done, p.total)

    def _finished(self, doc: dict[str, Any]) -> None:
        names = ", ".join(r["name"] for r in doc["runs"][1:])
        self.view.set_running(False, f"compared: the original and {names}")
        self.view.show_comparison(doc)

    def _failed(self, field: str, message: str) -> None:
        self.view.set_running(False, "")
        self.view.progress.setRange(0, 1)
        self.view.progress.setValue(0)
        self.view.show_error(field, message)

    def _cancelled(self, name: str) -> None:
        self.view.set_running(False, f"{name} cancelled: no branch kept")
        self.view.progress.setRange(0, 1)
        self.view.progress.setValue(0)

    def close(self) -> None:
        """At the window's close: stop a running branch (its store is removed)."""
        self.runner.cancel()
        self.runner.wait()
