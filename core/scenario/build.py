"""A `risk-scenario/1` document built from exchange data: ccxt tiers and candles (core/scenario/ccxt.py),
positions from CSV or Parquet (positions_import.py) and an optional generated crowd; validated by
the scenario parser before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from core.model.errors import InputError
from core.model.instruments import CONVENTIONS, Convention, Instrument
from core.model.units import Currency, format_minor
from core.scenario.ccxt import (
    MAX_TAKER_RATE,
    PricePoints,
    candle_path,
    candle_seconds,
    read_candles,
    read_taker_fees,
    read_tiers,
    tick_size_of,
    within,
)
from core.scenario.parse import FORMAT, parse_scenario
from core.scenario.positions_import import read_positions

# Stablecoins and fiat keep 6 decimals (the spec's USDT); coins 8 (BTC's satoshi).
SIX_DECIMALS = frozenset({"USDT", "USDC", "USD", "BUSD", "FDUSD"})

# What a ccxt exchange id implies (docs/conventions.md, the table): the margin convention, and
# whether the exchange's liquidation price counts the taker fee of closing. Any other id: `mark`
# without a fee, the default until its help pages are read.
EXCHANGE_CONVENTIONS: dict[str, tuple[Convention, bool]] = {
    "binance": ("mark", False),
    "binanceusdm": ("mark", False),
    "binancecoinm": ("mark", False),
    "bybit": ("entry_value", False),
    "okx": ("mark", True),
    "gate": ("mark", True),
    "gateio": ("mark", True),
}


@dataclass(frozen=True, slots=True)
class MarketSource:
    """One instrument: its ccxt symbol in the tiers file and its candle files."""

    symbol: str
    candles: Path  # last price; the index too unless `index_candles`
    name: str | None = None  # the scenario's symbol (default the ccxt one)
    index_candles: Path | None = None
    mark_candles: Path | None = None
    tick_size: Decimal | None = None  # default: the finest decimal of the price candles
    contract_value: Decimal | None = None  # default 1 (linear); required for an inverse one
    margin_convention: str | None = None  # default: what `BuildRequest.exchange` implies
    close_fee_rate: Decimal | None = None  # default: the taker rate, where the exchange counts it


@dataclass(frozen=True, slots=True)
class BuildRequest:
    name: str
    tiers: Path
    markets: tuple[MarketSource, ...]
    description: str = ""
    sources: tuple[str, ...] = ()
    positions: Path | None = None
    crowd_accounts: int = 0
    crowd_seed: int = 0
    crowd_parameters: dict[str, Any] = field(default_factory=dict)
    insurance_fund: dict[str, Decimal] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)
    tick_seconds: int | None = None  # default: a quarter of the shortest candle interval
    start: datetime | None = None
    end: datetime | None = None
    seed: int = 0
    exchange: str | None = None  # the ccxt exchange id: sets each instrument's convention
    fees: Path | None = None  # ccxt markets or trading fees: each symbol's taker rate


@dataclass(frozen=True, slots=True)
class _Paths:
    index: PricePoints
    mark: PricePoints | None
    quarter: int  # seconds between path points
    tick_size: Decimal


def build_scenario(request: BuildRequest) -> dict[str, Any]:
    """The scenario document, parsed once to prove it valid (an InputError names what is wrong)."""
    if not request.markets:
        raise InputError("--candles", "expected at least one market (SYMBOL=CANDLES)")
    tiers = read_tiers(request.tiers)
    fees = read_taker_fees(request.fees) if request.fees is not None else {}
    paths = {m.symbol: _paths(m, request) for m in request.markets}
    tick_seconds = request.tick_seconds or min(p.quarter for p in paths.values())
    start = min(p.index[0][0] for p in paths.values())
    instruments, currencies, indices, marks = [], {}, {}, {}
    for market in request.markets:
        if market.symbol not in tiers:
            raise InputError(f"{request.tiers}", f"expected tiers of {market.symbol}, found none")
        tier = tiers[market.symbol]
        name = market.name or market.symbol
        doc = _instrument(market, tier.currency, paths[market.symbol].tick_size, name)
        levels = [
            {
                **({"max": _text(level.max)} if level.max is not None else {}),
                "mmr": _text(level.mmr),
                "max_leverage": _text(level.max_leverage),
                "maintenance_amount": _text(level.maintenance_amount),
            }
            for level in tier.table().levels
        ]
        doc["tiers"] = {"basis": "notional", "levels": levels}
        doc.update(_convention(market, request, fees))
        instruments.append(doc)
        code = tier.currency
        currencies[code] = request.decimals.get(code, 6 if code in SIX_DECIMALS else 8)
        indices[doc["index"]] = _points(paths[market.symbol].index)
        if paths[market.symbol].mark is not None:
            marks[name] = _points(paths[market.symbol].mark)
    for code in request.insurance_fund:
        if code not in currencies:
            raise InputError("--insurance-fund", f"expected a settle currency, found {code}")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "name": request.name,
        "description": request.description,
        "sources": list(request.sources),
        "seed": request.seed,
        "start": _time(start),
        "tick_seconds": tick_seconds,
        "currencies": currencies,
        "instruments": instruments,
        "insurance_fund": {code: _text(v) for code, v in request.insurance_fund.items()},
        "accounts": [],
        "market": {"indices": indices, **({"marks": marks} if marks else {})},
    }
    if request.positions is not None:
        doc["accounts"] = _accounts(doc, request)
    if request.crowd_accounts:
        doc["crowd"] = {
            "accounts": request.crowd_accounts,
            "seed": request.crowd_seed,
            **request.crowd_parameters,
        }
    parse_scenario(doc)
    return doc


def _paths(market: MarketSource, request: BuildRequest) -> _Paths:
    """Index and mark paths over the span every file of the market covers (and --start/--end)."""
    files = [market.index_candles or market.candles]
    if market.mark_candles is not None:
        files.append(market.mark_candles)
    sets = [read_candles(path) for path in files]
    steps = [candle_seconds(candles, path) for candles, path in zip(sets, files, strict=True)]
    tick_size = market.tick_size or tick_size_of(read_candles(market.candles))
    begin = max(candles[0].time for candles in sets)
    finish = min(c[-1].time + timedelta(seconds=s) for c, s in zip(sets, steps, strict=True))
    start = max(begin, request.start) if request.start else begin
    end = min(finish, request.end) if request.end else finish
    spans = [within(c, s, start, end) for c, s in zip(sets, steps, strict=True)]
    for candles, path in zip(spans, files, strict=True):
        if not candles:
            raise InputError(
                str(path), "expected candles within the span of every file, found none"
            )
    index = candle_path(spans[0], steps[0])
    mark = candle_path(spans[1], steps[1]) if len(spans) > 1 else None
    return _Paths(index, mark, min(steps) // 4, tick_size)


def _instrument(market: MarketSource, settle: str, tick_size: Decimal, name: str) -> dict[str, Any]:
    """The ccxt symbol BASE/QUOTE:SETTLE[-YYMMDD] as an instrument: linear when it settles in the
    quote, inverse in the base; a dated one expires at 08:00 UTC of its date (Binance's delivery)."""
    pair, _, rest = market.symbol.partition(":")
    base, _, quote = pair.partition("/")
    settle_code, _, date = rest.partition("-")
    if settle_code and settle_code != settle:
        raise InputError(
            market.symbol, f"the tiers settle in {settle}, the symbol in {settle_code}"
        )
    if settle == quote:
        kind = "linear"
    elif settle == base:
        kind = "inverse"
        if market.contract_value is None:
            raise InputError("--contract-value", f"expected the contract value of {market.symbol}")
    else:
        raise InputError(market.symbol, f"expected a symbol settled in {base} or {quote}")
    expiry = None
    if date:
        if len(date) != 6 or not date.isdigit():
            raise InputError(market.symbol, f"expected a YYMMDD expiry, found {date!r}")
        expiry = f"20{date[:2]}-{date[2:4]}-{date[4:]}T08:00:00Z"
    return {
        "symbol": name,
        "type": kind,
        "contract_value": _text(market.contract_value or Decimal(1)),
        "settle_currency": settle,
        "tick_size": _text(tick_size),
        "expiry": expiry,
        "index": f"{name}-index",
    }


def _convention(
    market: MarketSource, request: BuildRequest, fees: dict[str, Decimal]
) -> dict[str, str]:
    """The instrument's `margin_convention` and `close_fee_rate`: the options given for the
    market, else what the exchange id implies (the fee from the market's taker rate in `fees`).
    A field at its default is left out, so a scenario built as before stays the same document."""
    exchange = request.exchange
    if exchange is not None and not (exchange.isascii() and exchange.isalnum()):
        raise InputError(
            "--exchange", f"expected a ccxt exchange id (gate, okx), found {exchange!r}"
        )
    implied, counts_fee = EXCHANGE_CONVENTIONS.get((exchange or "").lower(), ("mark", False))
    convention = market.margin_convention or implied
    if convention not in CONVENTIONS:
        raise InputError(
            "--margin-convention",
            f"expected {' or '.join(CONVENTIONS)} for {market.symbol}, found {convention!r}",
        )
    rate = market.close_fee_rate
    if rate is None and counts_fee:
        if market.symbol not in fees:
            raise InputError(
                "--close-fee-rate",
                f"expected the taker rate of {market.symbol}: {exchange}'s liquidation price "
                "counts the fee of closing (docs/conventions.md); give --fees FILE (ccxt markets "
                f"or trading fees with `taker`) or --close-fee-rate {market.symbol}=RATE",
            )
        rate = fees[market.symbol]
    if rate is not None and not (rate.is_finite() and 0 <= rate < MAX_TAKER_RATE):
        raise InputError(
            "--close-fee-rate",
            f"expected a rate from 0 to below 0.1 for {market.symbol}, found {rate}",
        )
    fields = {} if convention == "mark" else {"margin_convention": convention}
    if rate:
        fields["close_fee_rate"] = _text(rate)
    return fields


def _accounts(doc: dict[str, Any], request: BuildRequest) -> list[dict[str, Any]]:
    """The positions file's accounts in the scenario's JSON shape."""
    assert request.positions is not None
    draft = parse_scenario(doc)
    instruments: list[Instrument] = list(draft.instruments.values())
    currencies: list[Currency] = list(draft.currencies.values())
    reserved = r"crowd-(0|[1-9][0-9]*)" if request.crowd_accounts else None
    columns = read_positions(request.positions, instruments, currencies, reserved=reserved)
    # One Python pass per position to write JSON: the scenario format is JSON by contract.
    order = np.argsort(columns.account, kind="stable")
    accounts: list[dict[str, Any]] = [
        {"id": account_id, "balances": {}, "positions": []} for account_id in columns.account_ids
    ]
    for a, row in enumerate(columns.balances.tolist()):
        for c, minor in enumerate(row):
            if minor:
                accounts[a]["balances"][currencies[c].code] = format_minor(
                    minor, currencies[c].decimals
                )
    for r in order.tolist():
        inst = instruments[int(columns.instrument[r])]
        currency = draft.currencies[inst.settle_currency]
        position: dict[str, Any] = {
            "symbol": inst.symbol,
            "side": "long" if columns.side[r] > 0 else "short",
            "contracts": int(columns.contracts[r]),
            "entry_price": _text(Decimal(int(columns.entry_units[r])) * inst.price_unit),
            "margin_mode": "isolated" if columns.isolated[r] else "cross",
            "leverage": _text(Decimal(repr(float(columns.leverage[r])))),
        }
        if columns.isolated[r]:
            position["margin"] = format_minor(int(columns.iso_margin[r]), currency.decimals)
        accounts[int(columns.account[r])]["positions"].append(position)
    return accounts


def _points(points: PricePoints) -> list[list[str]]:
    return [[_time(moment), _text(price)] for moment, price in points]


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Decimal) -> str:
    """A decimal as the scenario format writes it: plain, no exponent, no trailing zeros."""
    return f"{value.normalize():f}"
