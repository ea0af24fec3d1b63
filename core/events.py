"""Output events of the engine: what happened at each tick, as immutable values.

Amounts are ints in the currency's minor unit; prices are floats or exact decimals as named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class LiquidationStarted:
    time: datetime
    account: str
    symbol: str
    side: str
    contracts: int
    partial: bool
    bankruptcy_price: float | None
    reserved: int  # fund reservation on detection, minor units
    currency: str


@dataclass(frozen=True, slots=True)
class LiquidationFilled:
    """A liquidation finished: `fill_price` is the VWAP over all its fills (ADL fills included)."""

    time: datetime
    started: datetime
    account: str
    symbol: str
    side: str
    contracts: int
    partial: bool
    fill_price: Decimal
    bankruptcy_price: float | None
    surplus: int
    deficit: int
    covered_by_fund: int
    currency: str
    fills: int


@dataclass(frozen=True, slots=True)
class AdlFill:
    time: datetime
    account: str
    symbol: str
    contracts: int
    price: Decimal
    against: str  # the liquidated account


@dataclass(frozen=True, slots=True)
class FundPosting:
    time: datetime
    currency: str
    kind: str  # surplus_in, deficit_out, injection
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class DeficitUncovered:
    time: datetime
    family: str
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class SettlementDone:
    time: datetime
    family: str
    price: Decimal
    adjusted_from: Decimal | None
    expired: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClawbackComputed:
    time: datetime
    family: str
    currency: str
    deficit: int
    total_profit: int
    ratio: str
    unrecovered: int
    status: str  # applied, pending
    allocations: tuple[tuple[str, int, int], ...] = field(repr=False)  # account, profit, amount


@dataclass(frozen=True, slots=True)
class ActionRecorded:
    time: datetime
    operator: str
    action: str
    reason: str
    detail: str
    request: str | None = None


@dataclass(frozen=True, slots=True)
class ActionRefused:
    time: datetime
    operator: str
    action: str
    reason: str
    request: str | None = None


Event = (
    LiquidationStarted
    | LiquidationFilled
    | AdlFill
    | FundPosting
    | DeficitUncovered
    | SettlementDone
    | ClawbackComputed
    | ActionRecorded
    | ActionRefused
)
