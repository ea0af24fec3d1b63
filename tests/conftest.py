"""Every test keys its audit chains with a key file of the test session, never the user's own
(~/.config/risk-console/audit.key); `audit_key_file` gives one test a key of its own."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from core.desk.audit_key import KEY_ENV


def pytest_configure(config: pytest.Config) -> None:
    # Set before any fixture runs: module-scoped stores are written before function fixtures,
    # and subprocesses started by tests inherit it.
    os.environ[KEY_ENV] = str(Path(tempfile.mkdtemp(prefix="audit-key-")) / "audit.key")


@pytest.fixture
def audit_key_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh key file for this test (created with the first audit row written after it)."""
    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    monkeypatch.setenv(KEY_ENV, str(path))
    return path
