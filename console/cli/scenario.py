"""The `risk-console scenario build` command: a risk-scenario/1 file from exchange data (ccxt tiers
and candles, positions from CSV or Parquet, a generated crowd). Wired into console/cli/main.py."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from core.model import files
from core.model.errors import InputError
from core.scenario.build import BuildRequest, MarketSource, build_scenario

_PER_MARKET = "SYMBOL=%s, SYMBOL the ccxt symbol of --candles (repeat per market)"


def register(commands: Any) -> None:
    """Add `scenario build` to the sub-command set of the risk-console parser."""
    scenario = commands.add_parser(
        "scenario",
        help="build a scenario file from exchange data",
        description="Scenario files made from data (see `risk-console scenario build --help`).",
    )
    actions = scenario.add_subparsers(dest="scenario_command", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="a risk-scenario/1 file from ccxt tiers and candles, positions and a crowd",
        description="Build a risk-scenario/1 file: instruments and every tier bracket from a ccxt "
        "leverage-tiers file (the exchange's maintenance amounts kept and checked against the "
        "derived ones), price paths from ccxt OHLCV candles (open, the two extremes in the order "
        "that fits the candle, close; docs/exchange-data.md), accounts and positions from a CSV or "
        "Parquet file (docs/exchange-data.md) and an optional generated crowd. The file is "
        "validated before it is written; bad input exits with code 2 naming file, row and column.",
    )
    build.add_argument(
        "--out", required=True, metavar="SCENARIO", help="the scenario file to write"
    )
    build.add_argument("--name", required=True, help="the scenario's name")
    build.add_argument("--description", default="", help="free text shown with the scenario")
    build.add_argument(
        "--source", action="append", default=[], metavar="TEXT", help="where a figure comes from"
    )
    build.add_argument(
        "--tiers", required=True, metavar="FILE", help="ccxt leverage tiers {symbol: [tier, ...]}"
    )
    build.add_argument(
        "--candles",
        action="append",
        default=[],
        required=True,
        metavar="SYMBOL=FILE",
        help="ccxt OHLCV candles of the last price; the instrument's index unless --index-candles",
    )
    per_market = {
        "--index-candles": ("FILE", "candles of the index price"),
        "--mark-candles": ("FILE", "candles of the mark price, pinned as the mark"),
        "--tick-size": ("DECIMAL", "price tick (default: the finest decimal of the candles)"),
        "--contract-value": ("DECIMAL", "contract size (default 1; needed for inverse)"),
        "--as": ("NAME", "the instrument's symbol in the scenario (default the ccxt symbol)"),
        "--margin-convention": (
            "CONVENTION",
            "mark or entry_value, where maintenance margin is valued (default: what --exchange "
            "implies; docs/conventions.md)",
        ),
        "--close-fee-rate": (
            "RATE",
            "taker fee of closing counted in liquidation and bankruptcy prices (default: the "
            "--fees taker rate where --exchange counts it, else 0)",
        ),
    }
    for option, (metavar, what) in per_market.items():
        build.add_argument(
            option,
            action="append",
            default=[],
            metavar=f"SYMBOL={metavar}",
            help=f"{what}; " + _PER_MARKET % metavar,
        )
    build.add_argument(
        "--exchange",
        metavar="ID",
        help="the ccxt exchange id (binanceusdm, bybit, okx, gate): sets each instrument's "
        "margin convention and close fee as that exchange computes liquidation prices",
    )
    build.add_argument(
        "--fees",
        metavar="FILE",
        help="ccxt markets (load_markets) or trading fees (fetch_trading_fees) {symbol: {taker}}: "
        "the close fee rate where --exchange counts it",
    )
    build.add_argument(
        "--positions", metavar="FILE", help="accounts and positions, .csv or .parquet"
    )
    build.add_argument("--crowd-accounts", type=int, default=0, metavar="N", help="crowd accounts")
    build.add_argument("--crowd-seed", type=int, default=0, metavar="SEED", help="crowd seed")
    build.add_argument(
        "--crowd",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='a crowd parameter (x-size-median=2000; x-leverage={"10":30}); bench/README.md',
    )
    build.add_argument(
        "--insurance-fund",
        action="append",
        default=[],
        metavar="CURRENCY=AMOUNT",
        help="the fund's starting balance",
    )
    build.add_argument(
        "--decimals",
        action="append",
        default=[],
        metavar="CURRENCY=N",
        help="minor-unit decimals (default 6 for USDT, USDC, USD; 8 otherwise)",
    )
    build.add_argument("--tick-seconds", type=int, metavar="S", help="default: candle interval/4")
    build.add_argument("--start", metavar="TIME", help="ISO UTC: drop candles before")
    build.add_argument("--end", metavar="TIME", help="ISO UTC: drop candles that end after")
    build.add_argument("--seed", type=int, default=0, help="the scenario's seed")


def handle(args: argparse.Namespace) -> int | None:
    if args.command != "scenario":
        return None
    if args.scenario_command != "build":
        raise InputError("scenario", "expected `scenario build` (see --help)")
    doc = build_scenario(request_of(args))
    files.write_text(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"{doc['name']}: {len(doc['instruments'])} instruments -> {args.out}", file=sys.stderr)
    return 0


def request_of(args: argparse.Namespace) -> BuildRequest:
    """The parsed options as a build request; a malformed option is an InputError naming it."""
    candles = _pairs(args.candles, "--candles")
    extra = {
        option: _pairs(getattr(args, option[2:].replace("-", "_")), option, set(candles))
        for option in (
            "--index-candles",
            "--mark-candles",
            "--tick-size",
            "--contract-value",
            "--as",
            "--margin-convention",
            "--close-fee-rate",
        )
    }
    markets = tuple(
        MarketSource(
            symbol=symbol,
            candles=Path(path),
            name=extra["--as"].get(symbol),
            index_candles=_path(extra["--index-candles"].get(symbol)),
            mark_candles=_path(extra["--mark-candles"].get(symbol)),
            tick_size=_decimal(extra["--tick-size"].get(symbol), "--tick-size"),
            contract_value=_decimal(extra["--contract-value"].get(symbol), "--contract-value"),
            margin_convention=extra["--margin-convention"].get(symbol),
            close_fee_rate=_rate(extra["--close-fee-rate"].get(symbol), "--close-fee-rate"),
        )
        for symbol, path in candles.items()
    )
    crowd: dict[str, Any] = {}
    for key, value in _pairs(args.crowd, "--crowd").items():
        name = key if key.startswith("x-") else f"x-{key}"
        crowd[name] = json.loads(value) if value.startswith("{") else value
    decimals = {}
    for code, value in _pairs(args.decimals, "--decimals").items():
        if not value.isdigit():
            raise InputError("--decimals", f"expected a whole number of decimals, found {value!r}")
        decimals[code] = int(value)
    return BuildRequest(
        name=args.name,
        tiers=Path(args.tiers),
        markets=markets,
        description=args.description,
        sources=tuple(args.source),
        positions=_path(args.positions),
        crowd_accounts=args.crowd_accounts,
        crowd_seed=args.crowd_seed,
        crowd_parameters=crowd,
        insurance_fund={
            code: _decimal(value, "--insurance-fund") or Decimal(0)
            for code, value in _pairs(args.insurance_fund, "--insurance-fund").items()
        },
        decimals=decimals,
        tick_seconds=args.tick_seconds,
        start=_moment(args.start, "--start"),
        end=_moment(args.end, "--end"),
        seed=args.seed,
        exchange=args.exchange,
        fees=_path(args.fees),
    )


def _pairs(values: list[str], option: str, known: set[str] | None = None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise InputError(option, f"expected KEY=VALUE, found {value!r}")
        if key in pairs:
            raise InputError(option, f"expected {key} once, found it twice")
        if known is not None and key not in known:
            raise InputError(option, f"expected a symbol given to --candles, found {key!r}")
        pairs[key] = rest
    return pairs


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _decimal(value: str | None, option: str) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal(-1)
    if not number.is_finite() or number <= 0:
        raise InputError(option, f"expected a positive decimal, found {value!r}")
    return number


def _rate(value: str | None, option: str) -> Decimal | None:
    """A decimal rate, zero allowed (its range is checked with the market it belongs to)."""
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise InputError(option, f"expected a decimal rate, found {value!r}") from None


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(option, f"expected an ISO 8601 UTC time, found {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
