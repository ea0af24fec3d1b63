"""Fixtures for every test: each test keys its audit chains with its own key file, never the
user's own (~/.config/risk-console/audit.key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.audit_key import KEY_ENV


@pytest.fixture(autouse=True)
def audit_key_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    monkeypatch.setenv(KEY_ENV, str(path))
    return path
