"""Screenshots of the What-if dock and the Overview's stress ladder on a stored run of the demo:
`python docs/screenshots/whatif_shots.py STORE OUTDIR` under xvfb-run (docs/whatif.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from console.widgets.theme import apply_theme
from console.window.main_window import MainWindow


def wait(app: QApplication, signal: object, seconds: float) -> list[object]:
    """Run the event loop until `signal` fires (its arguments) or `seconds` pass."""
    loop, got = QEventLoop(), []
    signal.connect(lambda *a: (got.extend(a), loop.quit()))  # type: ignore[attr-defined]
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    return got


def main(store: str, out: str) -> int:
    app = QApplication(["risk-console"])
    apply_theme(app, "light")
    settings = QSettings(str(Path(out) / "shots.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1600, 1000)
    window.show()
    window.open_source(store)
    wait(app, window.bridge.snapshot_ready, 60)
    window.bridge.seek(25000)  # in the cascade: the ladder has something to say
    while window.snapshot is None or window.snapshot.tick != 25000:
        wait(app, window.bridge.snapshot_ready, 60)
    window.docks["Overview"].raise_()
    wait(app, window.bridge.snapshot_ready, 2)
    window.grab().save(str(Path(out) / "stress-ladder.png"))
    dock, view = window.whatif, window.whatif.view
    window.docks["What-if"].raise_()
    for name, policy, freeze in (("freeze", {}, True), ("adl", {"deficit": "adl"}, False)):
        view.at.setText("181")  # the first accumulation alert for 2051247 (00:30:14)
        view.name.setText(name)
        view.actions.setPlainText("")
        if freeze:
            view.add_action(dock._template("freeze", "2051247"))
        for key, box in view.policy.items():
            box.setCurrentText(policy.get(key, "unchanged"))
        view.run_button.click()
        got = wait(app, dock.runner.finished, 900)
        if not got:
            print(f"branch {name} did not finish: {view.error.text()}", file=sys.stderr)
            return 1
    window.grab().save(str(Path(out) / "whatif-dock.png"))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
