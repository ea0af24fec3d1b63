"""What the engine's collaborators see of it: the state they share (book, ledger, clock, prices,
the fund) and the few calls they make on each other, as protocols. The facade satisfies them;
no collaborator imports the facade, so the engine's modules import in a line, not a ring."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

import numpy as np

from core.engine.ledger import Ledger
from core.engine.liquidation_orders import Order
from core.market.depth import LiquidityModel
from core.market.prices import SettlementWindow
from core.model.events import Event
from core.model.instruments import Instrument
from core.model.operations import Request
from core.model.scenario_values import ActionSpec, Scenario
from core.risk.positions import PositionBook, Valuation


class LiquidationPort(Protocol):
    """The liquidation desk, as controls, settlement, trading and surveillance call it."""

    @property
    def orders(self) -> list[Order]: ...

    def force_reduce(self, row: int, contracts: int) -> None: ...

    def close_at(self, instrument: int, price_units: int) -> None: ...

    def fund_free(self, currency: str) -> int: ...


class SettlementPort(Protocol):
    """Settlement, as an operator's action reaches it."""

    def check_price(self, family: str, price: Decimal) -> Decimal: ...

    def approve_clawback(self, action: ActionSpec) -> str: ...

    def reject_clawback(self, action: ActionSpec) -> str: ...


class ControlsPort(Protocol):
    """The operator controls, as trading and settlement consult them."""

    requests: dict[str, Request]
    adjustments: dict[str, tuple[str, object]]

    def check_trade(self, account: int, *, adds_exposure: bool) -> None: ...


class EngineState(Protocol):
    """The engine as its collaborators use it (core/engine/facade.py implements it)."""

    scenario: Scenario
    instruments: list[Instrument]
    currency_codes: list[str]
    tick: int
    now: datetime
    index_now: dict[str, Decimal]
    marks: np.ndarray
    book: PositionBook
    valuation: Valuation
    ledger: Ledger
    liquidity: list[LiquidityModel]
    windows: dict[str, SettlementWindow]
    events: list[Event]
    period_pnl: dict[str, np.ndarray]
    uncovered: dict[tuple[str, str], int]
    desk: LiquidationPort
    controls: ControlsPort
    settlements: SettlementPort

    def currency_of(self, k: int) -> str: ...

    def decimals(self, k: int) -> int: ...

    def x_marks(self) -> np.ndarray: ...

    def fair_mid(self, k: int) -> float: ...

    def emit(self, event: Event) -> None: ...

    def fund_in(self, currency: str, amount: int, reason: str) -> None: ...

    def fund_out(self, currency: str, amount: int, *, at_settlement: bool = False) -> None: ...

    def add_uncovered(self, k: int, amount: int) -> None: ...

    def add_period_pnl(self, rows: np.ndarray | int, amounts: np.ndarray | int) -> None: ...

    def close_for_trader(self, row: int, contracts: int, price_units: int) -> int: ...

    def realize(self, row: int, price_units: int, *, close: bool) -> None: ...
