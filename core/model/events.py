"""Output events of the engine: what happened at each tick, as immutable values.

Amounts are ints in the currency's minor unit; prices are floats or exact decimals as named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple


def iso(t: datetime) -> str:
    """A UTC time as results and the store write it: `2018-07-31T12:17:14Z`."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Compact:
    """Pickles an event as its class and field values: snapshots hold hundreds of thousands of
    events, and the generic slots-dataclass pickling (field lookup per object) costs 5x more."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (type(self), tuple(getattr(self, name) for name in self.__slots__))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LiquidationStarted(_Compact):
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
class LiquidationFilled(_Compact):
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
class AdlFill(_Compact):
    time: datetime
    account: str
    symbol: str
    contracts: int
    price: Decimal
    against: str  # the liquidated account


@dataclass(frozen=True, slots=True)
class FundPosting(_Compact):
    time: datetime
    currency: str
    kind: str  # surplus_in, deficit_out, injection
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class DeficitUncovered(_Compact):
    time: datetime
    family: str
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class SettlementDone(_Compact):
    time: datetime
    family: str
    price: Decimal
    adjusted_from: Decimal | None
    expired: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClawbackComputed(_Compact):
    time: datetime
    family: str
    currency: str
    deficit: int
    total_profit: int
    ratio: str
    unrecovered: int
    status: str  # applied, pending, rejected (a rejected one lists no allocations)
    allocations: tuple[tuple[str, int, int], ...] = field(repr=False)  # account, profit, amount


@dataclass(frozen=True, slots=True)
class ActionRecorded(_Compact):
    time: datetime
    operator: str
    action: str
    reason: str
    detail: str
    request: str | None = None


@dataclass(frozen=True, slots=True)
class ActionRefused(_Compact):
    """An operator command refused when it came to apply: `code` is stable for machines (as a
    trade refusal's), `reason` is for people; nothing changed."""

    time: datetime
    operator: str
    action: str
    reason: str
    request: str | None = None
    code: str = ""


class Indicator(NamedTuple):
    """One check over a window: its value, its threshold and whether it tripped. A NamedTuple so
    that the events holding it serialize as plain lists. `detail` names the instrument, time or
    account behind the value."""

    name: str
    value: float
    threshold: float
    tripped: bool
    detail: str


@dataclass(frozen=True, slots=True)
class TradeApplied(_Compact):
    """A trade done: `position` is the signed contracts after it (+long), `realized` the PnL the
    reducing part realized (minor units)."""

    time: datetime
    account: str
    symbol: str
    side: str
    contracts: int
    price: Decimal
    position: int
    entry_price: Decimal | None
    realized: int
    currency: str
    trade: int


@dataclass(frozen=True, slots=True)
class TradeRefused(_Compact):
    """A trade refused with a stable `code` and a `reason` for people; nothing changed."""

    time: datetime
    account: str
    symbol: str
    side: str
    contracts: int
    code: str
    reason: str
    trade: int


@dataclass(frozen=True, slots=True)
class AlertRaised(_Compact):
    """A rule breached. `account` is None for market-wide rules; `symbol` names the instrument,
    or the currency (fund coverage) or `family/currency` (clawback ratio) the rule is about.
    `value` and `threshold` are in the rule's own unit (share, ratio, or major currency units)."""

    time: datetime
    rule: str
    account: str | None
    symbol: str | None
    severity: str  # warning, critical
    message: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class AlertCleared(_Compact):
    """A breach raised earlier no longer holds; the same alert may be raised again later."""

    time: datetime
    rule: str
    account: str | None
    symbol: str | None
    value: float


@dataclass(frozen=True, slots=True)
class SettlementDelayed(_Compact):
    """A settlement put off because its window looked manipulated: the alert, with its evidence."""

    time: datetime
    family: str
    scheduled: datetime
    delayed_to: datetime
    computed_price: Decimal | None
    indicators: tuple[Indicator, ...]


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
    | TradeApplied
    | TradeRefused
    | AlertRaised
    | AlertCleared
    | SettlementDelayed
)
