"""The built-in scenarios reach their recorded state hashes: a refactoring that changes no rule
changes no hash. A change of the engine's rules that moves a hash on purpose records the new one
here, in the same commit, and says why in its message."""

from __future__ import annotations

import pytest

from core.engine.facade import Engine
from core.scenario.builtin import builtin_scenarios
from core.scenario.parse import load_scenario

RECORDED = {
    "two-traders": "b97ff5f55a2df7760eddabfa3993d353c3b7cfae093a41cb98708630268b1b18",
    "okx-2018-btc0928": "6e01b7c8e239c95c9d2cf5aaac39283ee3bc8b6c8b3526f805ec1285b14e84f4",
    "cascade-2025": "ecfaadb685ce76b2a1b6735ba2ab91d888905e3f6b8bea6e0385c9b6f1a6bd99",
    # checked where its run already is (tests/core/test_exchange_data.py, slow tier)
    "binance-xrp-2021-11": "49b5c47327a01aa6c8cdacbf9f482edfacf0823e037885886ee46aba0396949c",
}


def _final_hash(name: str) -> str:
    engine = Engine(load_scenario(builtin_scenarios()[name]))
    for _ in engine.run():
        pass
    return engine.state_hash()


def test_every_built_in_scenario_has_a_recorded_hash() -> None:
    assert set(RECORDED) == set(builtin_scenarios())


def test_two_traders_reaches_its_recorded_state_hash() -> None:
    # okx-2018-btc0928 is checked where its run already is (tests/core/test_okx_2018.py).
    assert _final_hash("two-traders") == RECORDED["two-traders"]


@pytest.mark.slow
def test_the_cascade_reaches_its_recorded_state_hash() -> None:
    assert _final_hash("cascade-2025") == RECORDED["cascade-2025"]
