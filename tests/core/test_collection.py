"""The collector's pace: the command line sets it for the runs it makes, and keeps the rest."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from console.cli.main import main
from core.session.collection import YOUNG_THRESHOLD, pace_for_runs

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "scenarios"


@pytest.fixture
def default_pace() -> None:
    gc.set_threshold(700, 10, 10)  # put back after the test by tests/conftest.py


@pytest.mark.usefixtures("default_pace")
def test_pace_for_runs_raises_the_young_threshold_only() -> None:
    pace_for_runs()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("default_pace")
def test_the_command_line_runs_at_that_pace(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["run", str(ASSETS / "two-traders.json"), "--out", str(out), "--quiet"]) == 0
    assert out.exists()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
