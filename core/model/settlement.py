"""The values of settlement under human control, as the engine computes them and the console
shows them: what makes a window suspect and one window's assessment, a clawback preview and a
pending clawback, and the settlement review of a family."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np

from core.model.errors import InputError
from core.model.events import Indicator
from core.model.units import decimal_str


@dataclass(frozen=True, slots=True, eq=False)
class ClawbackPreview:
    """A clawback of one family and currency at one settlement price, computed exactly.

    `deficit` is what the traders share, net of `fund_pays` (what the insurance fund pays first).
    `accounts` (account indices, ascending), `profits` and `amounts` are read-only int64 arrays over
    the profitable accounts only. `digest` is a sha256 of everything a supervisor approves.
    """

    family: str
    currency: str
    price: Decimal
    deficit: int
    fund_pays: int
    total_profit: int
    ratio: Fraction
    unrecovered: int
    accounts: np.ndarray
    profits: np.ndarray
    amounts: np.ndarray
    digest: str

    @property
    def ratio_text(self) -> str:
        return decimal_str(self.ratio, 12) if self.total_profit else "0"


@dataclass(frozen=True, slots=True)
class PendingClawback:
    """A clawback request (`clawback_approval: required`): its preview, frozen at the settlement."""

    request: str
    time: datetime
    preview: ClawbackPreview

    @property
    def digest(self) -> str:
        return self.preview.digest


@dataclass(frozen=True, slots=True, eq=False)
class SettlementReview:
    """What the settlement view shows for one family, as of `time`.

    `computed_price` is the mean of the index over the hour up to `time` (None before any sample);
    `index_times` (seconds since the start) and `index_prices` are that hour's index, read-only.
    `assessment` holds the manipulation indicators over the same hour. `adjustment` is an approved
    adjusted price waiting for the next settlement; `proposals` the (request, operator, price) of
    adjustments waiting for a supervisor. Money is in minor units per currency.
    """

    family: str
    time: datetime
    scheduled: datetime | None
    delayed_from: datetime | None
    computed_price: Decimal | None
    index_times: np.ndarray
    index_prices: np.ndarray
    assessment: WindowAssessment
    adjustment: Decimal | None
    proposals: tuple[tuple[str, str, Decimal], ...]
    pending_deficit: dict[str, int]
    fund_free: dict[str, int]
    pending_clawbacks: dict[str, PendingClawback]


@dataclass(frozen=True, slots=True)
class SettlementChecks:
    """What makes a settlement window suspect, and what the engine does then.

    - `price_gap`: the mark or the last price of an instrument of the family strays from its
      index by more than this fraction at any tick of the window (0.03: three times the 2018
      liquidation band of 1%, so the band's own sweeps do not trip it).
    - `volume_share`: one account made more than this share of the window's volume (liquidation
      fills, and trades when the engine has them) ...
    - `volume_min_open_interest`: ... and that account's volume is at least this fraction of the
      family's open interest (a lone small fill is not a market).
    - `jump`: the index or the last price ranged more than this fraction (max/min - 1) within the
      last `jump_seconds` of the window.
    - `delay_seconds`: how long a suspect settlement is put off (10 minutes, as in 2018); a
      settlement is delayed once, then runs at its computed or approved adjusted price.
    - `window_seconds`: the window the settlement price is the mean over.
    - `min_coverage`: the share of the window the engine must have seen before it may judge it; a
      run that began inside the window cannot tell what happened before it began.
    """

    price_gap: float = 0.03
    volume_share: float = 0.5
    volume_min_open_interest: float = 0.01
    jump: float = 0.02
    jump_seconds: int = 300
    delay_seconds: int = 600
    window_seconds: int = 3600
    min_coverage: float = 1.0

    def __post_init__(self) -> None:
        for name in ("price_gap", "jump", "volume_min_open_interest"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(name, f"expected a positive fraction, found {value!r}")
        for name in ("volume_share", "min_coverage"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise InputError(name, f"expected a fraction in (0, 1], found {value!r}")
        for name in ("jump_seconds", "delay_seconds", "window_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(
                    name, f"expected a positive whole number of seconds, found {value!r}"
                )
        if self.jump_seconds > self.window_seconds:
            raise InputError("jump_seconds", "expected at most window_seconds")
        if self.window_seconds > 3600:
            # The engine keeps two hours of index samples: one window plus the delay.
            raise InputError("window_seconds", "expected at most 3600 (the settlement hour)")


@dataclass(frozen=True, slots=True)
class WindowAssessment:
    """The checks of one family's window; `suspected` only when the window was seen enough."""

    indicators: tuple[Indicator, ...]
    coverage: float
    suspected: bool

    @property
    def tripped(self) -> tuple[Indicator, ...]:
        return tuple(i for i in self.indicators if i.tripped)
