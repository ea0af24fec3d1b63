"""The parsed `risk-scenario/1` file as immutable values (see shared spec/scenario.md).

Parsing and validation live in `core.scenario.parse`; this module only names the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from core.model.instruments import Instrument
from core.model.units import Currency

Side = Literal["long", "short"]
MarginMode = Literal["isolated", "cross"]


@dataclass(frozen=True, slots=True)
class PositionSpec:
    symbol: str
    side: Side
    contracts: int
    entry_price: Decimal
    margin_mode: MarginMode
    leverage: Decimal
    margin: Decimal | None  # isolated only, in the settle currency


@dataclass(frozen=True, slots=True)
class AccountSpec:
    id: str
    balances: dict[
        str, Decimal
    ]  # currency -> major units (cross collateral; isolated margin apart)
    positions: tuple[PositionSpec, ...]


@dataclass(frozen=True, slots=True)
class BookSpec:
    depth: Decimal  # contracts per 1% from mid, on each side
    depth_unit: str
    refill_seconds: Decimal


@dataclass(frozen=True, slots=True)
class Market:
    indices: dict[str, tuple[tuple[datetime, Decimal], ...]]
    marks: dict[str, tuple[tuple[datetime, Decimal], ...]]
    books: dict[str, BookSpec]


@dataclass(frozen=True, slots=True)
class SettlementPolicy:
    every: Literal["day", "week", "expiry"]
    weekday: str  # monday .. sunday
    time: str  # HH:MM UTC
    price: Literal["index_mean_1h"]


@dataclass(frozen=True, slots=True)
class Policy:
    deficit: Literal["clawback", "adl"] = "clawback"
    partial_liquidation: bool = True
    fund_reservation: bool = True
    clawback_approval: Literal["auto", "required"] = "auto"
    settlement: SettlementPolicy = SettlementPolicy("week", "friday", "08:00", "index_mean_1h")


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    name: str
    role: Literal["viewer", "operator", "supervisor", "admin"]


@dataclass(frozen=True, slots=True)
class Authority:
    """What a journaled command was found to carry where it applies (core/desk/authority.py): the
    role its operator holds then, or the refusal (code, reason) that stops it. `command` is the
    command's journal row."""

    command: int | None
    role: str | None = None
    code: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One operator action; `params` holds the action-specific fields, already parsed.

    `authority` is set on a command from the journal just before it applies; a scenario's own
    actions have none and act with the roles the scenario names."""

    at: datetime
    operator: str
    action: str
    reason: str
    id: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    authority: Authority | None = None


@dataclass(frozen=True, slots=True)
class CrowdSpec:
    accounts: int
    seed: int
    parameters: dict[str, object]  # the x- fields, passed to the generator


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    sources: tuple[str, ...]
    seed: int
    start: datetime
    tick_seconds: int
    currencies: dict[str, Currency]
    instruments: dict[str, Instrument]  # by symbol, in file order
    insurance_fund: dict[str, Decimal]
    accounts: tuple[AccountSpec, ...]
    crowd: CrowdSpec | None
    market: Market
    policy: Policy
    operators: tuple[OperatorSpec, ...]
    actions: tuple[ActionSpec, ...]
    extras: dict[str, object] = field(default_factory=dict)  # top-level x- fields

    @property
    def end(self) -> datetime:
        """The last point of the longest price path."""
        ends = [path[-1][0] for path in self.market.indices.values() if path]
        ends += [path[-1][0] for path in self.market.marks.values() if path]
        return max(ends) if ends else self.start
