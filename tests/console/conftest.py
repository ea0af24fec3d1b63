"""Console tests run Qt offscreen; each gets its own settings file and a bridge that is shut down
(thread stopped) when the test ends."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from core.scenario.builtin import resolve_scenario

TWO_TRADERS = resolve_scenario("two-traders")


def two_traders_doc(**policy: Any) -> dict[str, Any]:
    doc = json.loads(Path(TWO_TRADERS).read_text())
    doc["policy"].update(policy)
    return doc


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def bridge(qtbot: Any) -> Iterator[Any]:
    from console.worker.bridge import Bridge

    b = Bridge()
    yield b
    assert b.shutdown(), "the engine thread did not stop"
    assert not b.running


def wait_snapshot(qtbot: Any, bridge: Any, test: Any = None, timeout: int = 20_000) -> Any:
    """The next snapshot (that passes `test`), delivered on the UI thread."""
    seen: list[Any] = []

    def check(snap: Any) -> bool:
        seen.append(snap)
        return test is None or bool(test(snap))

    with qtbot.waitSignal(bridge.snapshot_ready, timeout=timeout, check_params_cb=check):
        pass
    return seen[-1]


def assert_copies_and_exports(qtbot: Any, table: Any, tmp_path: Path, row: int = 0) -> None:
    """`table` (a DataTable with rows) copies the selected row as tab-separated text under its
    header, and exports every shown row to CSV exactly as displayed, header first."""
    import csv

    model = table.table_model()
    assert model.rowCount() > row, f"{table.objectName()}: no row to copy"
    shown = [model.cell_text(row, c) for c in range(len(model.columns))]
    table.clearSelection()
    table.selectRow(row)
    lines = table.copy_selection().splitlines()
    assert lines[0].split("\t") == [c.title for c in model.columns]
    assert lines[1:] == ["\t".join(shown)]
    path = tmp_path / f"{table.export_name}.csv"
    assert table.export_csv(path) == model.rowCount()
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [c.title for c in model.columns]
    assert rows[1 + row] == shown and len(rows) == model.rowCount() + 1
