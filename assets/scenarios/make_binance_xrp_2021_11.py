"""Writes binance-xrp-2021-11.json with `risk-console scenario build` from the exchange data in
assets/data (binance-xrp-2021-11.md): `python -m assets.scenarios.make_binance_xrp_2021_11`."""

from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
OUT = Path(__file__).resolve().parent / "binance-xrp-2021-11.json"
SYMBOL = "XRP/USDT:USDT"
DESCRIPTION = (
    "Binance XRPUSDT perpetual, 15-21 November 2021: the exchange's own tier table (October 2024) "
    "and the real week of 5-minute prices (1.2214 down to 1.0145), with a generated crowd of 5,000 "
    "accounts. Built by risk-console scenario build (assets/scenarios/binance-xrp-2021-11.md)."
)
# The crowd as documented in binance-xrp-2021-11.md: retail sizes, mostly 10x-20x, a tail to 75x
# (the first bracket's limit).
CROWD = (
    "x-size-median=2000",
    "x-size-cap=2000000",
    'x-leverage={"2":5,"3":5,"5":15,"10":35,"20":25,"50":10,"75":5}',
)


def arguments(data: Path = DATA, out: Path = OUT) -> list[str]:
    tiers = data / "binance-usdm-leverage-tiers-2024-10.json"
    candles = data / "binance-xrpusdt-perp-5m-2021-11.json"
    return [
        "scenario", "build", "--out", str(out), "--name", "binance-xrp-2021-11",
        "--description", DESCRIPTION,
        "--source", f"{tiers.name}: Binance USD-M leverage tiers of {SYMBOL} (ccxt)",
        "--source", f"{candles.name}: Binance {SYMBOL} 5-minute candles (ccxt fetch_ohlcv)",
        "--tiers", str(tiers), "--candles", f"{SYMBOL}={candles}", "--as", f"{SYMBOL}=XRPUSDT",
        "--exchange", "binanceusdm",
        "--insurance-fund", "USDT=1000000",
        "--crowd-accounts", "5000", "--crowd-seed", "2021",
        *(item for parameter in CROWD for item in ("--crowd", parameter)),
    ]  # fmt: skip


if __name__ == "__main__":
    from console.cli.main import main

    sys.exit(main(arguments()))
