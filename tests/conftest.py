"""Every test keys its audit chains with a key file of the test session, never the user's own
(~/.config/risk-console/audit.key); `audit_key_file` gives one test a key of its own. The tests
run at the garbage collector's pace of the engine's processes; a test that changes it has it put
back after."""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.desk.audit_key import KEY_ENV
from core.session.collection import pace_for_runs


def pytest_configure(config: pytest.Config) -> None:
    # Set before any fixture runs: module-scoped stores are written before function fixtures,
    # and subprocesses started by tests inherit it.
    os.environ[KEY_ENV] = str(Path(tempfile.mkdtemp(prefix="audit-key-")) / "audit.key")
    # The tests run the engine at the pace its processes collect garbage at.
    pace_for_runs()


@pytest.fixture
def audit_key_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh key file for this test (created with the first audit row written after it)."""
    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    monkeypatch.setenv(KEY_ENV, str(path))
    return path


@pytest.fixture(autouse=True)
def collector_pace_kept() -> Iterator[None]:
    """`main` sets the process's collection pace (core/session/collection.py); tests after it
    run at the pace they started with."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
