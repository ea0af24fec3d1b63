"""Exchange data in ccxt's unified shapes: leverage tiers (`fetch_leverage_tiers`) into tier tables
with the exchange's maintenance amounts checked, OHLCV candles (`fetch_ohlcv`) into price paths, and
taker fee rates from markets (`load_markets`) or trading fees (`fetch_trading_fees`). Numbers are
read exactly from the JSON text (never through a binary float).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.model.errors import InputError
from core.model.instruments import TierLevel, TierTable
from core.model.limits import MAX_FILE_BYTES, MAX_NUMBER_CHARS, clip

# A cap this large is the exchange's "no cap" (Binance writes int64's largest value).
NO_CAP = Decimal(2**62)
CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "volume")
PricePoints = tuple[tuple[datetime, Decimal], ...]
# As the scenario's `close_fee_rate`: a taker rate of 10% or more is a typo, not an exchange's.
MAX_TAKER_RATE = Decimal("0.1")


def read_exact_json(path: Path, what: str) -> Any:
    """A JSON file whose numbers become Decimal (floats) and int, exactly as written."""

    def number(text: str) -> Decimal:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of more than {MAX_NUMBER_CHARS} characters ({clip(text)})")
        return Decimal(text)

    def constant(text: str) -> Any:
        raise ValueError(f"{text}, which is not JSON")

    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(str(path), f"expected {what} of at most {MAX_FILE_BYTES >> 20} MiB")
        text = path.read_text(encoding="utf-8")
        return json.loads(text, parse_float=number, parse_int=number, parse_constant=constant)
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(str(path), f"cannot read {what}: {error}") from None
    except json.JSONDecodeError as error:
        where = f"{path} line {error.lineno} column {error.colno}"
        raise InputError(where, f"expected {what} in JSON, found an error: {error.msg}") from None
    except (ValueError, RecursionError) as error:
        raise InputError(str(path), f"expected {what}, found {error}") from None


# ------------------------------------------------------------------------------ leverage tiers


@dataclass(frozen=True, slots=True)
class Bracket:
    """One bracket as the exchange publishes it (notional in the settle currency)."""

    number: int
    floor: Decimal
    cap: Decimal | None  # None: no cap
    mmr: Decimal
    max_leverage: Decimal
    published_amount: Decimal | None  # the exchange's own maintenance amount (Binance `cum`)


@dataclass(frozen=True, slots=True)
class TierSource:
    """One symbol's published tier table."""

    symbol: str
    currency: str
    brackets: tuple[Bracket, ...]

    def derived(self) -> TierTable:
        """The table with every maintenance amount derived (DESIGN.md section 4)."""
        levels = [(b.cap, b.mmr, b.max_leverage, None) for b in self.brackets]
        return TierTable.build("notional", levels)

    def table(self) -> TierTable:
        """The table the scenario holds: the exchange's amounts where given, else derived."""
        levels = tuple(
            d
            if b.published_amount is None
            else TierLevel(d.max, d.mmr, d.max_leverage, b.published_amount)
            for b, d in zip(self.brackets, self.derived().levels, strict=True)
        )
        return TierTable("notional", levels)


def read_tiers(path: Path) -> dict[str, TierSource]:
    """Every symbol of a ccxt leverage-tiers file `{symbol: [tier, ...]}`, each checked: brackets
    contiguous from 0, caps increasing, and the published maintenance amount equal to the derived
    one (a mismatch names the symbol and bracket)."""
    doc = read_exact_json(path, "ccxt leverage tiers")
    if not isinstance(doc, dict) or not doc:
        raise InputError(str(path), "expected an object {symbol: [tier, ...]} with symbols")
    return {symbol: _tier_source(path, symbol, tiers) for symbol, tiers in doc.items()}


def _tier_source(path: Path, symbol: str, tiers: Any) -> TierSource:
    where = f"{path} {clip(symbol)}"
    if not isinstance(tiers, list) or not tiers:
        raise InputError(where, "expected a non-empty list of tiers")
    brackets: list[Bracket] = []
    currency = ""
    for i, tier in enumerate(tiers):
        at = f"{where} bracket {i + 1}"
        if not isinstance(tier, dict):
            raise InputError(at, f"expected a tier object, found {type(tier).__name__}")
        info = tier.get("info") if isinstance(tier.get("info"), dict) else {}
        floor = _number(tier, "minNotional", at)
        cap: Decimal | None = _number(tier, "maxNotional", at)
        if cap is not None and cap >= NO_CAP:
            if i < len(tiers) - 1:
                raise InputError(f"{at} maxNotional", "expected a cap (only the last may be open)")
            cap = None
        mmr = _number(tier, "maintenanceMarginRate", at)
        leverage = _number(tier, "maxLeverage", at)
        if not 0 <= mmr < 1:
            raise InputError(f"{at} maintenanceMarginRate", f"expected 0 to 1, found {mmr}")
        if leverage < 1:
            raise InputError(f"{at} maxLeverage", f"expected 1 or more, found {leverage}")
        expected_floor = brackets[-1].cap if brackets else Decimal(0)
        if floor != expected_floor:
            raise InputError(
                f"{at} minNotional",
                f"expected {expected_floor} (the previous bracket's cap), found {floor}",
            )
        if cap is not None and cap <= floor:
            raise InputError(f"{at} maxNotional", f"expected more than the floor {floor}")
        amount = info.get("cum")
        published = None if amount is None else _decimal_text(amount, f"{at} info.cum")
        brackets.append(Bracket(i + 1, floor, cap, mmr, leverage, published))
        currency = str(tier.get("currency") or currency)
    source = TierSource(symbol, currency, tuple(brackets))
    for bracket, level in zip(source.brackets, source.derived().levels, strict=True):
        if bracket.published_amount is not None and bracket.published_amount != (
            level.maintenance_amount
        ):
            raise InputError(
                f"{where} bracket {bracket.number} info.cum",
                f"the exchange's maintenance amount {bracket.published_amount} differs from "
                f"the derived {level.maintenance_amount.normalize():f} (floor x (rate - previous "
                "rate) + previous amount)",
            )
    return source


def _number(tier: dict[str, Any], key: str, at: str) -> Decimal:
    if key not in tier:
        raise InputError(f"{at} {key}", "expected this field, found none")
    return _decimal_text(tier[key], f"{at} {key}")


def _decimal_text(value: Any, at: str) -> Decimal:
    """A JSON number (already a Decimal) or a decimal string, finite."""
    try:
        number = Decimal(value) if isinstance(value, str | Decimal | int) else None
    except ArithmeticError:
        number = None
    if number is None or not number.is_finite() or isinstance(value, bool):
        raise InputError(at, f"expected a number, found {clip(repr(value))}")
    return number


# ------------------------------------------------------------------------------------ taker fees


def read_taker_fees(path: Path) -> dict[str, Decimal]:
    """The taker rate of each symbol of a ccxt markets file (`load_markets`: `{symbol: market}`,
    or `fetch_markets`: `[market, ...]`) or trading-fees file (`fetch_trading_fees`: `{symbol:
    fee}`); entries without `taker` are left out. A flat fee (`percentage: false`) or a rate
    outside [0, 0.1) is an error naming the symbol."""
    doc = read_exact_json(path, "ccxt markets or trading fees")
    if isinstance(doc, list):
        entries = [(str(e.get("symbol", "")) if isinstance(e, dict) else "", e) for e in doc]
    elif isinstance(doc, dict) and doc:
        entries = list(doc.items())
    else:
        raise InputError(str(path), "expected {symbol: market} or [market, ...] with markets")
    fees: dict[str, Decimal] = {}
    for i, (symbol, entry) in enumerate(entries):
        where = f"{path} {clip(symbol) if symbol else f'entry {i + 1}'}"
        if not isinstance(entry, dict) or not symbol:
            raise InputError(where, "expected a market object with its symbol")
        if entry.get("taker") is None:
            continue
        if entry.get("percentage") is False:
            raise InputError(f"{where} percentage", "expected a taker rate, found a flat fee")
        rate = _decimal_text(entry["taker"], f"{where} taker")
        if not 0 <= rate < MAX_TAKER_RATE:
            raise InputError(f"{where} taker", f"expected a rate from 0 to below 0.1, found {rate}")
        fees[symbol] = rate
    return fees


# ------------------------------------------------------------------------------------ candles


@dataclass(frozen=True, slots=True)
class Candle:
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal

    def extremes(self) -> tuple[Decimal, Decimal]:
        """The high and the low in the order the price met them, taking the shorter path: a
        rising candle (close above open) dips first, a falling one peaks first; an unchanged one
        meets the nearer extreme first (the high on a tie)."""
        if self.close > self.open or (
            self.close == self.open and self.open - self.low < self.high - self.open
        ):
            return self.low, self.high
        return self.high, self.low


def read_candles(path: Path) -> tuple[Candle, ...]:
    """A ccxt OHLCV file `[[ms, open, high, low, close, volume], ...]`, in strictly increasing
    time; each bad row names the file, the row (from 1) and the column."""
    doc = read_exact_json(path, "ccxt OHLCV candles")
    if not isinstance(doc, list) or not doc:
        raise InputError(str(path), "expected a non-empty list [[ms, open, high, low, close, ...]]")
    candles: list[Candle] = []
    for i, row in enumerate(doc):
        at = f"{path} row {i + 1}"
        if not isinstance(row, list) or not 5 <= len(row) <= 6:
            raise InputError(at, "expected [ms, open, high, low, close, volume]")
        ms = row[0]
        if not isinstance(ms, Decimal) or ms != ms.to_integral_value() or ms % 1000:
            raise InputError(f"{at} column time", f"expected whole seconds in ms, found {ms}")
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(ms) // 1000)
        if candles and moment <= candles[-1].time:
            raise InputError(
                f"{at} column time",
                f"expected a time after {candles[-1].time.isoformat()} (candles in time order), "
                f"found {moment.isoformat()}",
            )
        prices = []
        for column, value in zip(CANDLE_COLUMNS[1:5], row[1:5], strict=True):
            price = _decimal_text(value, f"{at} column {column}")
            if price <= 0:
                raise InputError(
                    f"{at} column {column}", f"expected a positive price, found {price}"
                )
            prices.append(price)
        candle = Candle(moment, *prices)
        if candle.high < max(candle.open, candle.close, candle.low):
            raise InputError(f"{at} column high", "expected the highest of open, high, low, close")
        if candle.low > min(candle.open, candle.close):
            raise InputError(f"{at} column low", "expected the lowest of open, high, low, close")
        candles.append(candle)
    return tuple(candles)


def candle_seconds(candles: tuple[Candle, ...], path: Path) -> int:
    """The candles' interval: the smallest step between them (gaps are whole intervals)."""
    if len(candles) < 2:
        raise InputError(str(path), "expected at least two candles (their interval is the step)")
    steps = [int((b.time - a.time).total_seconds()) for a, b in itertools.pairwise(candles)]
    step = min(steps)
    for i, gap in enumerate(steps):
        if gap % step:
            raise InputError(
                f"{path} row {i + 2} column time",
                f"expected a whole number of {step} s intervals after the previous candle",
            )
    if step % 4:
        raise InputError(str(path), f"expected an interval divisible by 4 s, found {step} s")
    return step


def candle_path(candles: tuple[Candle, ...], seconds: int) -> PricePoints:
    """A price path through each candle: open at its start, then its two extremes in the order of
    `Candle.extremes` a quarter and a half of the interval in, the close at three quarters; the
    last quarter is the move from the close to the next candle's open."""
    quarter = timedelta(seconds=seconds // 4)
    points: list[tuple[datetime, Decimal]] = []
    for candle in candles:
        first, second = candle.extremes()
        for k, price in enumerate((candle.open, first, second, candle.close)):
            points.append((candle.time + k * quarter, price))
    return tuple(points)


def tick_size_of(candles: tuple[Candle, ...]) -> Decimal:
    """The finest decimal place the candles' prices use (the default tick size)."""
    places = max(
        -min(int(p.normalize().as_tuple().exponent), 0)
        for c in candles
        for p in (c.open, c.high, c.low, c.close)
    )
    return Decimal(1).scaleb(-places)


def within(
    candles: tuple[Candle, ...], seconds: int, start: datetime | None, end: datetime | None
) -> tuple[Candle, ...]:
    """The candles that lie wholly in [start, end] (either bound open when None)."""
    span = timedelta(seconds=seconds)
    return tuple(
        c
        for c in candles
        if (start is None or c.time >= start) and (end is None or c.time + span <= end)
    )
