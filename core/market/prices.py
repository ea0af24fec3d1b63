"""Prices: scenario price paths, the index (median of spot sources), the mark (index + EMA of the
basis) and the settlement price (mean of the index over the last hour). Prices are float64
valuation figures; only the settlement price is exact (a Decimal on the instrument's tick)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from statistics import median
from typing import Protocol

import numpy as np

from core.model.errors import InputError
from core.model.units import Rounding, round_fraction

SETTLEMENT_WINDOW_SECONDS = 3600
_INT64_MAX = 2**63 - 1


class PriceUnavailableError(ValueError):
    """No price can be given: no index source left, or no sample in a settlement window."""


def _require_aware(t: datetime, what: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware UTC datetime, got {t!r}")


def _seconds_between(origin: datetime, t: datetime) -> float:
    """Seconds from `origin` to `t` as float64, exact for whole seconds and microseconds alike."""
    delta: timedelta = t - origin
    return (delta.days * 86_400 + delta.seconds) + delta.microseconds / 1_000_000


def whole_seconds(start: datetime, t: datetime | int) -> int:
    """A time as integer seconds since `start`; an int is taken as already being such seconds.

    Ticks are whole seconds; a sub-second datetime is refused rather than silently truncated.
    """
    if isinstance(t, int | np.integer):
        return int(t)
    _require_aware(t, "time")
    delta = t - start
    if delta.microseconds:
        raise ValueError(f"{t.isoformat()} is not a whole number of seconds after the start")
    return delta.days * 86_400 + delta.seconds


@dataclass(frozen=True, slots=True)
class PricePath:
    """A piecewise-linear price path through (time, price) points with strictly increasing times.

    Constant before the first point and after the last. `name` is the field path used in errors
    (`market.indices.BTC-USD`).
    """

    points: tuple[tuple[datetime, Decimal], ...]
    name: str = "path"
    # Seconds from the first point, and prices, as float64 for np.interp (both evaluation routes
    # use the same arrays and the same np.interp, so `at` and `sample` agree bit for bit).
    _offsets: np.ndarray = field(init=False, repr=False, compare=False)
    _prices: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.points:
            raise InputError(self.name, "a price path needs at least one point")
        origin = self.points[0][0]
        offsets: list[float] = []
        for position, (t, price) in enumerate(self.points):
            where = f"{self.name}[{position}]"
            if t.tzinfo is None or t.utcoffset() is None:
                raise InputError(where, "time must carry a UTC offset")
            if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                raise InputError(where, f"price must be a positive decimal, got {price!r}")
            offset = _seconds_between(origin, t)
            if offsets and offset <= offsets[-1]:
                raise InputError(where, "times must be strictly increasing")
            offsets.append(offset)
        object.__setattr__(self, "_offsets", np.asarray(offsets, dtype=np.float64))
        object.__setattr__(
            self, "_prices", np.asarray([float(p) for _, p in self.points], dtype=np.float64)
        )

    @property
    def start(self) -> datetime:
        return self.points[0][0]

    @property
    def end(self) -> datetime:
        return self.points[-1][0]

    def at(self, t: datetime) -> float:
        """The price at `t`, linearly interpolated; the end prices hold outside the path."""
        _require_aware(t, "t")
        return float(np.interp(_seconds_between(self.start, t), self._offsets, self._prices))

    def sample(self, times_seconds: np.ndarray, start: datetime) -> np.ndarray:
        """Prices at many times given as seconds since `start` (a whole run's ticks at once)."""
        _require_aware(start, "start")
        shift = _seconds_between(self.start, start)  # path origin -> run origin
        times = np.asarray(times_seconds, dtype=np.float64)
        return np.interp(times + shift, self._offsets, self._prices)


def index_price(sources: Sequence[float], max_deviation: float = 0.05) -> float:
    """The index: median of the spot sources after dropping outliers.

    Rule: m = median of all usable sources; a source with |s - m| / m > max_deviation is dropped
    (a source exactly at the bound stays); the index is the median of those left. Sources that are
    not finite and positive (a venue that is down) are ignored first. A lone source is its own
    median, so it is kept. With two sources that disagree by more than the band, neither can be
    told from the other and both are dropped.

    The median of all sources (not of the others, leaving each one out) is the reference because
    with three sources a leave-one-out median includes the outlier: for (100, 101, 150) it would
    place 100 and 101 about 20% from "the others" and drop every source, while the median of all
    (101) drops only 150.
    """
    if max_deviation < 0 or not math.isfinite(max_deviation):
        raise ValueError(
            f"max_deviation must be a finite non-negative fraction, got {max_deviation}"
        )
    usable = [float(s) for s in sources if math.isfinite(s) and s > 0]
    if not usable:
        raise PriceUnavailableError(
            "no usable index source (none given, or none finite and positive)"
        )
    reference = median(usable)
    kept = [s for s in usable if abs(s - reference) <= max_deviation * reference]
    if not kept:
        raise PriceUnavailableError(
            f"every index source is more than {max_deviation:.2%} from the median {reference}"
        )
    return float(median(kept))


class MarkRule(Protocol):
    """How an instrument's mark is produced each tick; the engine treats both kinds alike."""

    def advance(self, t: datetime, index: float, mid: float, dt: float) -> float:
        """The mark at `t`, after a step of `dt` seconds with this tick's index and book mid."""
        ...


def ema_alpha(dt: float, tau: float) -> float:
    """Weight of a new sample after `dt` seconds for an EMA with time constant `tau` seconds.

    alpha = 1 - exp(-dt/tau): for a constant input the result depends only on elapsed time, not on
    how it was cut into steps. tau = 0 means no smoothing (alpha = 1 whenever time passes).
    """
    if dt < 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a finite non-negative number of seconds, got {dt}")
    if tau < 0 or not math.isfinite(tau):
        raise ValueError(f"tau must be a finite non-negative number of seconds, got {tau}")
    if dt == 0:
        return 0.0
    if tau == 0:
        return 1.0
    return -math.expm1(-dt / tau)  # expm1 keeps precision for dt << tau (1 s ticks, 60 s tau)


class MarkPriceEMA:
    """Mark = index + EMA(mid - index) with time constant `tau_seconds` (seed 003).

    The state is the EMA of the basis. It starts at `initial_basis`, 0 by default: a fresh mark
    equals the index, so the first (possibly manipulated) trade cannot move it more than any other.
    Each step: basis += alpha * ((mid - index) - basis), alpha = 1 - exp(-dt/tau); the new basis
    includes this tick's sample, so the mark returned is the mark at the end of the step.
    """

    __slots__ = ("basis", "tau_seconds")

    def __init__(self, tau_seconds: float, initial_basis: float = 0.0) -> None:
        ema_alpha(0.0, tau_seconds)  # validates tau
        self.tau_seconds = float(tau_seconds)
        self.basis = float(initial_basis)

    @classmethod
    def for_instrument(
        cls, ema_seconds: Decimal | float, initial_basis: float = 0.0
    ) -> MarkPriceEMA:
        """From an instrument's `ema_seconds` (scenario `mark.ema_seconds`, default 60)."""
        return cls(float(ema_seconds), initial_basis)

    def update(self, index: float, mid: float, dt: float) -> float:
        """Advance the basis EMA by `dt` seconds towards `mid - index` and return the new mark."""
        alpha = ema_alpha(dt, self.tau_seconds)
        self.basis += alpha * ((mid - index) - self.basis)
        return index + self.basis

    def advance(self, t: datetime, index: float, mid: float, dt: float) -> float:
        """`MarkRule` form of `update`; the EMA needs no clock, only the step length."""
        return self.update(index, mid, dt)

    def mark(self, index: float) -> float:
        """The mark for an index without advancing time."""
        return index + self.basis

    def state(self) -> float:
        """The whole state (the basis EMA), for snapshots and the state hash."""
        return self.basis

    def restore(self, basis: float) -> None:
        self.basis = float(basis)


@dataclass(frozen=True, slots=True)
class PinnedMark:
    """A mark pinned by the scenario (`market.marks`): it follows its path, not index and mid."""

    path: PricePath

    def at(self, t: datetime) -> float:
        return self.path.at(t)

    def advance(self, t: datetime, index: float, mid: float, dt: float) -> float:
        return self.path.at(t)

    def sample(self, times_seconds: np.ndarray, start: datetime) -> np.ndarray:
        return self.path.sample(times_seconds, start)


def decimals_of(value: Decimal) -> int:
    """Number of decimal places a Decimal is written with (`Decimal("0.01")` -> 2, `"100"` -> 0)."""
    exponent = value.normalize().as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite decimal: {value!r}")
    return max(0, -exponent)


class SettlementWindow:
    """Per-tick index samples for one index, and their mean over a trailing window.

    Each sample is stored as an int64 count of 10**-price_decimals (a float sample is rounded
    half-even to those decimals once, when it is added), so means are exact rationals of what was
    stored. `mean(until)` is the arithmetic mean of the samples with t in (until - seconds, until],
    rounded half-even to the tick size given (else to `price_decimals`). Give `price_decimals` a
    couple of decimals more than the finest tick using the index (4 for a 0.01 tick), so rounding
    the mean to the tick is not a double rounding of the samples' own rounding.

    Storage is a compacting buffer: samples are appended at the end and, when it is full, the ones
    older than `retention_seconds` are dropped and the rest moved to the front, so a run of days of
    1-second ticks keeps only about `retention_seconds` samples and each add is amortized O(1).
    Times are integer seconds since `start` and must be strictly increasing.
    """

    __slots__ = (
        "_evicted_through",
        "_length",
        "_max_units",
        "_times",
        "_units",
        "price_decimals",
        "retention_seconds",
        "start",
    )

    def __init__(
        self,
        start: datetime,
        price_decimals: int,
        retention_seconds: int = 2 * SETTLEMENT_WINDOW_SECONDS,
        initial_capacity: int = 4096,
    ) -> None:
        _require_aware(start, "start")
        if not 0 <= price_decimals <= 12:
            raise ValueError(f"price_decimals must be within 0..12, got {price_decimals}")
        if retention_seconds < SETTLEMENT_WINDOW_SECONDS:
            raise ValueError("retention_seconds must cover at least one settlement window (3600 s)")
        self.start = start
        self.price_decimals = price_decimals
        self.retention_seconds = retention_seconds
        self._times = np.empty(max(16, initial_capacity), dtype=np.int64)
        self._units = np.empty_like(self._times)
        self._length = 0
        self._max_units = 0  # bounds the int64 sum of a window (see `_sum_units`)
        self._evicted_through: int | None = None  # newest dropped sample's time

    @property
    def scale(self) -> int:
        return 10**self.price_decimals

    def __len__(self) -> int:
        return self._length

    @property
    def capacity(self) -> int:
        """Samples the buffer holds before it next compacts (memory use is 16 bytes each)."""
        return len(self._times)

    def _to_units(self, price: float | Decimal) -> int:
        if isinstance(price, Decimal):
            units = round_fraction(Fraction(price) * self.scale, Rounding.HALF_EVEN)
        else:
            if not math.isfinite(price):
                raise ValueError(f"index sample must be finite, got {price}")
            units = round(price * self.scale)  # Python round: half-even, as np.rint in `extend`
        if not 0 < units <= _INT64_MAX:
            raise ValueError(
                f"index sample {price} is not a positive price at {self.price_decimals} dp"
            )
        return units

    def _make_room(self, needed: int, newest: int) -> None:
        """Drop samples past retention and compact; grow when the live samples still do not fit."""
        if self._length + needed <= len(self._times):
            return
        live = self._times[: self._length]
        first_kept = int(np.searchsorted(live, newest - self.retention_seconds, side="right"))
        if first_kept:
            self._evicted_through = int(live[first_kept - 1])
        kept = self._length - first_kept
        capacity = max(16, len(self._times))
        while kept + needed > capacity // 2:  # keep half free so compaction stays amortized O(1)
            capacity *= 2
        times = np.empty(capacity, dtype=np.int64) if capacity != len(self._times) else self._times
        units = np.empty(capacity, dtype=np.int64) if capacity != len(self._units) else self._units
        times[:kept] = self._times[first_kept : self._length]
        units[:kept] = self._units[first_kept : self._length]
        self._times, self._units, self._length = times, units, kept

    def add(self, t: datetime | int, price: float | Decimal) -> None:
        """Record the index at tick `t` (datetime or seconds since start)."""
        seconds = whole_seconds(self.start, t)
        if self._length and seconds <= self._times[self._length - 1]:
            raise ValueError(f"sample at {seconds} s is not after the last one")
        units = self._to_units(price)
        self._make_room(1, seconds)
        self._times[self._length] = seconds
        self._units[self._length] = units
        self._length += 1
        self._max_units = max(self._max_units, units)

    def extend(self, times_seconds: np.ndarray, prices: np.ndarray) -> None:
        """Record many ticks at once (e.g. a precomputed index path); same rounding as `add`."""
        times = np.asarray(times_seconds, dtype=np.int64)
        values = np.asarray(prices, dtype=np.float64)
        if times.shape != values.shape or times.ndim != 1:
            raise ValueError("times and prices must be 1-d arrays of the same length")
        if not len(times):
            return
        if np.any(np.diff(times) <= 0) or (
            self._length and times[0] <= self._times[self._length - 1]
        ):
            raise ValueError("sample times must be strictly increasing and after the last one")
        if not np.all(np.isfinite(values)):
            raise ValueError("index samples must be finite")
        scaled = np.rint(values * self.scale)
        if np.any(scaled <= 0) or np.any(scaled > 2.0**62):
            raise ValueError(f"index samples must be positive prices at {self.price_decimals} dp")
        # Added in chunks no larger than the retention so older chunks can be dropped on the way.
        step = max(1, self.retention_seconds)
        for begin in range(0, len(times), step):
            chunk_times = times[begin : begin + step]
            chunk_units = scaled[begin : begin + step].astype(np.int64)
            self._make_room(len(chunk_times), int(chunk_times[-1]))
            end = self._length + len(chunk_times)
            self._times[self._length : end] = chunk_times
            self._units[self._length : end] = chunk_units
            self._length = end
            self._max_units = max(self._max_units, int(chunk_units.max()))

    def _window(self, until: datetime | int, seconds: int) -> np.ndarray:
        if seconds <= 0:
            raise ValueError(f"window must be a positive number of seconds, got {seconds}")
        end = whole_seconds(self.start, until)
        begin = end - seconds  # excluded
        if self._evicted_through is not None and self._evicted_through > begin:
            raise PriceUnavailableError(
                f"samples after {begin} s were already dropped "
                f"(retention {self.retention_seconds} s)"
            )
        live = self._times[: self._length]
        lo = int(np.searchsorted(live, begin, side="right"))
        hi = int(np.searchsorted(live, end, side="right"))
        return self._units[lo:hi]

    def _sum_units(self, units: np.ndarray) -> int:
        # int64 wraps silently: sum in numpy only when the bound proves it cannot overflow.
        if self._max_units * len(units) <= _INT64_MAX:
            return int(units.sum(dtype=np.int64))
        return sum(int(u) for u in units.tolist())

    def count(self, until: datetime | int, seconds: int = SETTLEMENT_WINDOW_SECONDS) -> int:
        """Number of samples in (until - seconds, until]."""
        return len(self._window(until, seconds))

    def mean_exact(
        self, until: datetime | int, seconds: int = SETTLEMENT_WINDOW_SECONDS
    ) -> Fraction:
        """The exact mean of the stored samples in (until - seconds, until]."""
        units = self._window(until, seconds)
        if not len(units):
            raise PriceUnavailableError(f"no index sample in the {seconds} s before {until}")
        return Fraction(self._sum_units(units), len(units) * self.scale)

    def mean(
        self,
        until: datetime | int,
        seconds: int = SETTLEMENT_WINDOW_SECONDS,
        tick_size: Decimal | None = None,
    ) -> Decimal:
        """The settlement price: the window's mean rounded half-even to `tick_size`.

        Without a tick size the mean is rounded to `price_decimals`.
        """
        exact = self.mean_exact(until, seconds)
        step = Fraction(tick_size) if tick_size is not None else Fraction(1, self.scale)
        if step <= 0:
            raise ValueError(f"tick_size must be positive, got {tick_size}")
        ticks = round_fraction(exact / step, Rounding.HALF_EVEN)
        if tick_size is not None:
            return Decimal(ticks) * tick_size
        return Decimal(ticks).scaleb(-self.price_decimals)

    def restore(self, times_seconds: np.ndarray, units: np.ndarray) -> None:
        """Replace the contents with a `snapshot()` (restart from a stored snapshot)."""
        self._times = np.empty(0, dtype=np.int64)
        self._units = np.empty(0, dtype=np.int64)
        self._length = 0
        self._max_units = 0
        self._evicted_through = None
        times = np.asarray(times_seconds, dtype=np.int64)
        values = np.asarray(units, dtype=np.int64)
        if times.shape != values.shape or times.ndim != 1:
            raise ValueError("times and units must be 1-d arrays of the same length")
        if len(times) and (np.any(np.diff(times) <= 0) or np.any(values <= 0)):
            raise ValueError("snapshot times must increase and units be positive")
        self._make_room(len(times), int(times[-1]) if len(times) else 0)
        self._times[: len(times)] = times
        self._units[: len(times)] = values
        self._length = len(times)
        self._max_units = int(values.max()) if len(values) else 0

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Live (seconds, units) as read-only copies, for snapshots and the state hash."""
        times = self._times[: self._length].copy()
        units = self._units[: self._length].copy()
        times.flags.writeable = False
        units.flags.writeable = False
        return times, units
