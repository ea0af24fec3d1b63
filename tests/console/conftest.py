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
