"""Order-book depth model that liquidation orders execute against (scenario `market.books`), and
`FillAtMark`, the same interface for an instrument without a book. Prices here are float64
valuation figures; the caller rounds anything it posts to the ledger."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

import numpy as np

from core.model.scenario_values import BookSpec

Side = Literal["sell", "buy"]

# Float noise in the room left before a limit (1 - limit/mid is off by up to ~2e-16) must not cost
# a whole contract when the limit was computed to sit exactly k contracts away. The tolerance is a
# price offset of 1e-12 (plus 1e-9 contract); the prices reported are clamped to the limit anyway.
_OFFSET_EPSILON = 1e-12
_CONTRACT_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Fill:
    """The outcome of one order against the book.

    `average_price` is the VWAP of the slice consumed, `worst_price` the farthest from mid, and
    `last_price` the last trade printed (the worst one: a sweep prints best first). With nothing
    filled all three are the touch (best bid for a sell), so no NaN ever reaches a caller.
    """

    contracts_filled: int
    average_price: float
    worst_price: float
    last_price: float
    side: Side
    contracts_requested: int

    @property
    def contracts_unfilled(self) -> int:
        return self.contracts_requested - self.contracts_filled


@dataclass(frozen=True, slots=True)
class BookState:
    """Everything a book remembers between ticks, for snapshots and the state hash.

    `*_consumed` is how far each side has been eaten, as a fraction of the mid; `*_refill_left` the
    seconds until that side is whole again.
    """

    bid_consumed: float
    ask_consumed: float
    bid_refill_left: float
    ask_refill_left: float
    last_price: float | None


class LiquidityModel(Protocol):
    """What the engine needs from a book; `DepthBook` and `FillAtMark` both provide it."""

    def execute(self, side: Side, contracts: int, limit_price: float, mid: float) -> Fill: ...

    def refill(self, dt_seconds: float) -> None: ...

    def best_bid(self, mid: float) -> float: ...

    def best_ask(self, mid: float) -> float: ...

    def mid_after_impact(self, mid: float) -> float: ...

    @property
    def last_price(self) -> float | None: ...

    def snapshot(self) -> BookState: ...

    def restore(self, state: BookState) -> None: ...

    def depth_profile(
        self, mid: float, levels: int = 50, span: float = 0.05
    ) -> tuple[np.ndarray, np.ndarray]: ...


def _check_order(side: str, contracts: int, limit_price: float, mid: float) -> None:
    if side not in ("sell", "buy"):
        raise ValueError(f"side must be 'sell' or 'buy', got {side!r}")
    if isinstance(contracts, bool) or not isinstance(contracts, int | np.integer) or contracts < 0:
        raise ValueError(f"contracts must be a non-negative whole number, got {contracts!r}")
    if not (math.isfinite(mid) and mid > 0):
        raise ValueError(f"mid must be a finite positive price, got {mid}")
    if math.isnan(limit_price) or limit_price < 0 or (side == "buy" and limit_price == 0):
        raise ValueError(f"limit price {limit_price} is not a valid {side} limit")


def _profile_offsets(levels: int, span: float) -> np.ndarray:
    """Distances from mid (fractions of price) where a depth profile is read: span/levels..span."""
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    if not 0 < span <= 1:
        raise ValueError(f"span must be a fraction of price in (0, 1], got {span}")
    return span * np.arange(1, levels + 1, dtype=np.float64) / levels


def _profile(
    mid: float, offsets: np.ndarray, bid_cumulative: np.ndarray, ask_cumulative: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Prices ascending (bids far to near, mid, asks near to far), cumulative contracts from mid."""
    prices = np.concatenate((mid * (1 - offsets[::-1]), [mid], mid * (1 + offsets)))
    cumulative = np.concatenate((bid_cumulative[::-1], [0.0], ask_cumulative))
    return prices, cumulative


class DepthBook:
    """A book with `depth` contracts per 1% of price on each side of mid, refilling after use.

    Liquidity is a continuous density, uniform in price: fully refilled, the bids between mid and
    mid*(1 - d) hold depth*100*d contracts (so the side ends at price 0 with 100*depth), the asks
    between mid and mid*(1 + d) the same, with no end. Each side remembers how deep it has been
    eaten, as a fraction of the mid it is quoted around: the best bid is mid*(1 - bid_consumed).

    Execution: an order sweeps its side from the touch outwards until it is filled or the next
    contract would trade beyond its limit; only whole contracts fill. With a uniform density the
    VWAP over the slice [d0, d1] is exactly the price at its middle, mid*(1 -+ (d0 + d1)/2), and
    the worst (and last) price is at d1. Selling k contracts into a fresh book moves the price by
    k/depth percent and averages half of that.

    Refill is linear: after a fill the whole hole on that side (anything still missing from
    earlier fills included) comes back at a constant rate and is gone `refill_seconds` later; a
    later fill restarts that clock for the new, deeper hole. The two sides are independent: a sell
    sweep lowers the best bid but leaves the asks, so the mid of best bid and ask falls by half.
    """

    __slots__ = (
        "_ask_consumed",
        "_ask_refill_left",
        "_bid_consumed",
        "_bid_refill_left",
        "_last_price",
        "depth",
        "refill_seconds",
    )

    def __init__(self, depth: float, refill_seconds: float) -> None:
        if not (math.isfinite(depth) and depth > 0):
            raise ValueError(f"depth must be a positive number of contracts per 1%, got {depth}")
        if not (math.isfinite(refill_seconds) and refill_seconds >= 0):
            raise ValueError(f"refill_seconds must be a non-negative number, got {refill_seconds}")
        self.depth = float(depth)
        self.refill_seconds = float(refill_seconds)
        self._bid_consumed = 0.0
        self._ask_consumed = 0.0
        self._bid_refill_left = 0.0
        self._ask_refill_left = 0.0
        self._last_price: float | None = None

    @classmethod
    def from_spec(cls, spec: BookSpec) -> DepthBook:
        return cls(float(spec.depth), float(spec.refill_seconds))

    @property
    def contracts_per_unit(self) -> float:
        """Contracts per whole unit of price fraction (100 x the depth per 1%)."""
        return 100.0 * self.depth

    @property
    def _tolerance(self) -> float:
        """Contracts of float noise forgiven when counting whole contracts before a limit."""
        return _CONTRACT_EPSILON + _OFFSET_EPSILON * self.contracts_per_unit

    @property
    def last_price(self) -> float | None:
        """Price of the last fill, None before any."""
        return self._last_price

    @property
    def bid_consumed(self) -> float:
        return self._bid_consumed

    @property
    def ask_consumed(self) -> float:
        return self._ask_consumed

    def best_bid(self, mid: float) -> float:
        return max(0.0, mid * (1 - self._bid_consumed))

    def best_ask(self, mid: float) -> float:
        return mid * (1 + self._ask_consumed)

    def mid_after_impact(self, mid: float) -> float:
        """The midpoint of best bid and ask once the sweeps so far are taken into account."""
        return (self.best_bid(mid) + self.best_ask(mid)) / 2

    def _limit_offset(self, side: Side, limit_price: float, mid: float) -> float:
        """How far from mid (fraction of price) the limit lets a sweep go on its side."""
        if side == "sell":
            return min(1.0, 1 - limit_price / mid)  # the bids end at price 0
        return limit_price / mid - 1  # inf for an unlimited buy

    def available(self, side: Side, limit_price: float, mid: float) -> int:
        """Whole contracts an order on `side` could fill now without passing `limit_price`."""
        _check_order(side, 0, limit_price, mid)
        consumed = self._bid_consumed if side == "sell" else self._ask_consumed
        room = self._limit_offset(side, limit_price, mid) - consumed
        if room <= 0:
            return 0
        contracts = room * self.contracts_per_unit
        if math.isinf(contracts):
            raise ValueError("an unlimited buy has unlimited liquidity; give a limit price")
        return math.floor(contracts + self._tolerance)

    def execute(self, side: Side, contracts: int, limit_price: float, mid: float) -> Fill:
        """Fill up to `contracts` at prices no worse than `limit_price` and advance the book."""
        _check_order(side, contracts, limit_price, mid)
        contracts = int(contracts)
        selling = side == "sell"
        d0 = self._bid_consumed if selling else self._ask_consumed
        d_limit = self._limit_offset(side, limit_price, mid)
        room = (d_limit - d0) * self.contracts_per_unit
        if room <= 0:
            filled = 0
        elif math.isinf(room):  # an unlimited buy: the asks have no end
            filled = contracts
        else:
            filled = min(contracts, math.floor(room + self._tolerance))
        direction = -1.0 if selling else 1.0
        if filled == 0:
            touch = self.best_bid(mid) if selling else self.best_ask(mid)
            return Fill(0, touch, touch, touch, side, contracts)

        d1 = min(d_limit, d0 + filled / self.contracts_per_unit)
        average = mid * (1 + direction * (d0 + d1) / 2)
        worst = mid * (1 + direction * d1)
        # Clamp to the limit: d1 sits on the limit only through float noise, never beyond it.
        if selling:
            worst = max(worst, limit_price)
            average = max(average, worst)
            self._bid_consumed, self._bid_refill_left = d1, self.refill_seconds
        else:
            worst = min(worst, limit_price)
            average = min(average, worst)
            self._ask_consumed, self._ask_refill_left = d1, self.refill_seconds
        self._last_price = worst
        return Fill(filled, average, worst, worst, side, contracts)

    @staticmethod
    def _refilled(consumed: float, left: float, dt: float) -> tuple[float, float]:
        if dt >= left:
            return 0.0, 0.0
        # Linear: the hole shrinks in proportion to the time elapsed out of the time left.
        return consumed * (left - dt) / left, left - dt

    def refill(self, dt_seconds: float) -> None:
        """Let `dt_seconds` pass: consumed liquidity returns linearly (see the class docstring)."""
        if not (math.isfinite(dt_seconds) and dt_seconds >= 0):
            raise ValueError(f"dt_seconds must be a finite non-negative number, got {dt_seconds}")
        if dt_seconds == 0:
            return
        self._bid_consumed, self._bid_refill_left = self._refilled(
            self._bid_consumed, self._bid_refill_left, dt_seconds
        )
        self._ask_consumed, self._ask_refill_left = self._refilled(
            self._ask_consumed, self._ask_refill_left, dt_seconds
        )

    def snapshot(self) -> BookState:
        return BookState(
            self._bid_consumed,
            self._ask_consumed,
            self._bid_refill_left,
            self._ask_refill_left,
            self._last_price,
        )

    def restore(self, state: BookState) -> None:
        self._bid_consumed = state.bid_consumed
        self._ask_consumed = state.ask_consumed
        self._bid_refill_left = state.bid_refill_left
        self._ask_refill_left = state.ask_refill_left
        self._last_price = state.last_price

    def depth_profile(
        self, mid: float, levels: int = 50, span: float = 0.05
    ) -> tuple[np.ndarray, np.ndarray]:
        """(prices ascending, contracts between mid and each price) out to mid*(1 +- span).

        The first `levels` points are bids (far to near), then mid (0), then `levels` asks.
        """
        offsets = _profile_offsets(levels, span)
        bids = self.contracts_per_unit * np.clip(offsets - self._bid_consumed, 0.0, None)
        asks = self.contracts_per_unit * np.clip(offsets - self._ask_consumed, 0.0, None)
        return _profile(mid, offsets, bids, asks)


class FillAtMark:
    """No book: every order fills in full at the price it is given (the engine passes the mark).

    A limit is still a limit: an order whose limit the mark does not satisfy fills nothing. The
    engine's liquidation orders are priced no worse than the mark by the band, so they always fill.
    """

    __slots__ = ("_last_price",)

    def __init__(self) -> None:
        self._last_price: float | None = None

    @property
    def last_price(self) -> float | None:
        return self._last_price

    def execute(self, side: Side, contracts: int, limit_price: float, mid: float) -> Fill:
        _check_order(side, contracts, limit_price, mid)
        contracts = int(contracts)
        acceptable = mid >= limit_price if side == "sell" else mid <= limit_price
        filled = contracts if acceptable else 0
        if filled:
            self._last_price = mid
        return Fill(filled, mid, mid, mid, side, contracts)

    def refill(self, dt_seconds: float) -> None:
        """Nothing is ever consumed."""

    def best_bid(self, mid: float) -> float:
        return mid

    def best_ask(self, mid: float) -> float:
        return mid

    def mid_after_impact(self, mid: float) -> float:
        return mid

    def snapshot(self) -> BookState:
        return BookState(0.0, 0.0, 0.0, 0.0, self._last_price)

    def restore(self, state: BookState) -> None:
        self._last_price = state.last_price

    def depth_profile(
        self, mid: float, levels: int = 50, span: float = 0.05
    ) -> tuple[np.ndarray, np.ndarray]:
        """The same grid as `DepthBook.depth_profile`, with unlimited (inf) contracts off mid."""
        offsets = _profile_offsets(levels, span)
        unlimited = np.full(levels, np.inf)
        return _profile(mid, offsets, unlimited, unlimited)


def liquidity_for(spec: BookSpec | None) -> DepthBook | FillAtMark:
    """The liquidity model for an instrument: its scenario book, or fill-at-mark without one."""
    return DepthBook.from_spec(spec) if spec is not None else FillAtMark()


def band_limit(side: Side, mark: float, band: Decimal | float) -> float:
    """A liquidation order's limit: no worse than the mark by the band (1% in 2018)."""
    fraction = float(band)
    return mark * (1 - fraction) if side == "sell" else mark * (1 + fraction)
