"""The vectorized cascade path: the liquidation watch flags exactly what a full revaluation flags,
and a cut of the built-in cascade-2025 runs deterministically with a balanced ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.engine.facade import Engine
from core.engine.ledger import INSURANCE_FUND
from core.model.events import LiquidationFilled, LiquidationStarted
from core.risk.margin import bankruptcy_prices, risk_prices
from core.scenario.parse import parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "assets" / "scenarios"


def cut(name: str, accounts: int) -> dict[str, Any]:
    doc = json.loads((SCENARIOS / f"{name}.json").read_text())
    doc["crowd"]["accounts"] = accounts
    doc.pop("actions", None)
    return doc


@pytest.mark.parametrize(
    ("name", "drift", "spread"),
    [("cascade-2025", -0.001, 0.004), ("okx-2018-btc0928", 0.0, 0.01)],
)
def test_the_watch_flags_what_a_full_revaluation_flags(
    name: str, drift: float, spread: float
) -> None:
    # Random walks of the marks (each instrument on its own), with rows closed and cash moved
    # between ticks as liquidations and settlements do: the flags and each flagged row's own
    # collateral agree with `revalue` and `risk_prices` every tick.
    engine = Engine(parse_scenario(cut(name, 3000)))
    book = engine.book
    watch = book.watch()
    rng = np.random.default_rng(7)
    marks = engine.marks.copy()
    flagged_ticks = 0
    for tick in range(150):
        marks = marks * np.exp(rng.normal(drift, spread, marks.size))
        rows, own = watch.detect(marks)
        valuation = book.revalue(marks)
        assert rows.tolist() == np.flatnonzero(valuation.liquidatable).tolist(), tick
        expected = risk_prices(book, valuation).bankruptcy[rows]
        np.testing.assert_allclose(bankruptcy_prices(book, rows, own), expected, rtol=1e-9)
        flagged_ticks += bool(rows.size)
        if rows.size:
            closed = rows[::2]
            book.contracts[closed] = 0
            book.refresh(closed)
        if tick % 20 == 5:
            accounts = rng.integers(0, len(book.account_ids), 30)
            book.balances[accounts, 0] += 10**6
            book.refresh(np.flatnonzero(np.isin(book.account, accounts)))
    assert flagged_ticks > 10


def test_a_cascade_cut_is_deterministic_and_balanced() -> None:
    doc = cut("cascade-2025", 4000)
    hashes = []
    for _ in range(2):
        engine = Engine(parse_scenario(doc))
        started = filled = 0
        for events in engine.run():
            started += sum(isinstance(e, LiquidationStarted) for e in events)
            filled += sum(isinstance(e, LiquidationFilled) for e in events)
            assert engine.ledger.balance(INSURANCE_FUND, "USDT") >= 0
            assert engine.desk.reserved["USDT"] >= 0
        assert engine.ledger.total("USDT") == 0
        assert filled > 1000 and started > 1000
        # Every position the crash flagged was worked out: nothing open is liquidatable.
        assert not (
            engine.valuation.liquidatable & ~np.isin(np.arange(len(engine.book)), engine.desk.o.row)
        ).any()
        hashes.append(engine.state_hash())
    assert hashes[0] == hashes[1]
