"""The compiled valuation pass (core/risk/kernels.py) against the numpy reference, to the bit:
the same books at marks that move, re-tier rows, and liquidate, for every field of the valuation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from core.risk import kernels
from core.risk.positions import _VALUATION_FIELDS, PositionBook
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="the compiled pass is off")


def _book(name: str, accounts: int | None, ticks: int) -> tuple[PositionBook, np.ndarray]:
    doc: dict[str, Any] = json.loads(builtin_scenarios()[name].read_text())
    if accounts is not None:
        doc["crowd"]["accounts"] = accounts
    session = Session.start(doc)
    for _ in range(ticks):
        session.step()
    return session.engine.book, np.asarray(session.engine.marks, dtype=np.float64)


def _same(book: PositionBook, marks: np.ndarray) -> None:
    compiled, reference = book.revalue(marks), book.revalue_numpy(marks)
    for name in _VALUATION_FIELDS:
        a, b = getattr(compiled, name), getattr(reference, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), f"{name} differs in {np.sum(a != b)} rows"


@pytest.mark.parametrize(
    ("scenario", "accounts", "ticks", "retiers"),
    [
        ("cascade-2025", 5000, 300, True),
        ("binance-xrp-2021-11", 300, 500, True),
        ("okx-2018-btc0928", None, 40, False),  # tiers by contracts: they never move with price
    ],
)
def test_the_compiled_valuation_is_the_numpy_one_to_the_bit(
    scenario: str, accounts: int | None, ticks: int, retiers: bool
) -> None:
    book, marks = _book(scenario, accounts, ticks)
    _same(book, marks)
    before = book.tier.copy()
    # Marks far enough to re-tier rows and make others liquidatable: both paths see the same.
    for factor in (1.002, 0.93, 1.11, 0.5):
        _same(book, marks * factor)
    assert np.array_equal(book.tier, before) != retiers
    assert book.revalue_numpy(marks * 0.5).liquidatable.any()


def test_a_run_on_the_numpy_path_reaches_the_same_state_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc: dict[str, Any] = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = 2000
    hashes = []
    for enabled in (True, False):
        monkeypatch.setattr(kernels, "ENABLED", enabled)
        session = Session.start(doc)
        session.run_to_end()
        hashes.append(session.result()["state_hash"])
    assert hashes[0] == hashes[1]
