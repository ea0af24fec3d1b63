"""Positions import: 1,000,000 positions from Parquet and from CSV into the engine's position book,
beside a plain `csv` module loop (Decimal per cell) in the same run.

Run `python3 bench/bench_import.py [--positions 1000000]`. Bars (issue 15): Parquet under 2 s, CSV
under 5 s, each from the file to a built `PositionBook`.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.model.instruments import Instrument
from core.model.units import Currency
from core.scenario.ccxt import read_tiers
from core.scenario.crowd import CrowdColumns, build_book
from core.scenario.decimal_columns import decimal_array
from core.scenario.positions_import import read_positions

TIERS = Path(__file__).resolve().parents[1] / "assets" / "data"
SYMBOLS = ("XRP/USDT:USDT", "ADA/USDT:USDT", "DOGE/USDT:USDT", "TRX/USDT:USDT", "XLM/USDT:USDT")
PARQUET_BAR_S, CSV_BAR_S = 2.0, 5.0
USDT = Currency("USDT", 6)


def instruments() -> list[Instrument]:
    """Five real Binance perpetuals (their tier tables), tick 0.0001."""
    tiers = read_tiers(TIERS / "binance-usdm-leverage-tiers-2024-10.json")
    return [
        Instrument(s, "linear", Decimal(1), "USDT", Decimal("0.0001"), None, s, s, tiers[s].table())
        for s in SYMBOLS
    ]


def table(n: int, seed: int = 15) -> pa.Table:
    """n positions over n/5 accounts, one per account and symbol; decimals as DECIMAL columns."""
    rng = np.random.default_rng(seed)
    k = len(SYMBOLS)
    account = np.repeat(np.arange((n + k - 1) // k), k)[:n]
    symbol = np.tile(np.arange(k), (n + k - 1) // k)[:n]
    isolated = rng.random(n) < 0.4
    contracts = np.maximum(1, rng.lognormal(7, 1.2, n)).astype(np.int64)
    ticks = rng.integers(9_000, 13_000, n)  # 0.9000 to 1.3000
    leverage = rng.choice([2, 5, 10, 20, 50], n)
    margin = contracts * ticks * 100 // leverage  # minor units (1e-6) of notional / leverage
    balance = rng.integers(0, 10**10, n // k + 1)[account]
    names = pa.array([f"acct-{i}" for i in range((n + k - 1) // k)])
    return pa.table(
        {
            "account": names.take(pa.array(account)),
            "symbol": pa.array(list(SYMBOLS)).take(pa.array(symbol)),
            "side": pa.array(np.where(rng.random(n) < 0.5, "long", "short")),
            "contracts": pa.array(contracts),
            "entry_price": decimal_array(ticks, 4),
            "margin_mode": pa.array(np.where(isolated, "isolated", "cross")),
            "margin": pa.compute.if_else(
                pa.array(isolated), decimal_array(margin, 6), pa.scalar(None, pa.decimal128(38, 6))
            ),
            "leverage": pa.array(leverage),
            "balance": pa.compute.if_else(
                pa.array(isolated), pa.scalar(None, pa.decimal128(38, 6)), decimal_array(balance, 6)
            ),
        }
    )


def engine_import(path: Path, insts: list[Instrument]) -> tuple[float, int]:
    began = time.perf_counter()
    columns = read_positions(path, insts, [USDT])
    book = build_book(insts, [USDT], columns)
    return time.perf_counter() - began, len(book)


def csv_loop(path: Path, insts: list[Instrument]) -> tuple[float, int]:
    """The plain peer: csv.DictReader, a Decimal per cell, Python lists, then the same book."""
    began = time.perf_counter()
    symbols = {inst.symbol: k for k, inst in enumerate(insts)}
    unit = insts[0].price_unit
    ids: dict[str, int] = {}
    rows: list[tuple[int, int, int, int, int, bool, int, float]] = []
    balances: dict[int, int] = {}
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            a = ids.setdefault(record["account"], len(ids))
            iso = record["margin_mode"] == "isolated"
            margin = int(Decimal(record["margin"]) * USDT.scale) if iso else 0
            if record["balance"]:
                balances[a] = int(Decimal(record["balance"]) * USDT.scale)
            rows.append(
                (a, symbols[record["symbol"]], 1 if record["side"] == "long" else -1,
                 int(record["contracts"]), int(Decimal(record["entry_price"]) / unit), iso,
                 margin, float(Decimal(record["leverage"])))
            )  # fmt: skip
    cash = np.zeros((len(ids), 1), dtype=np.int64)
    cash[list(balances), 0] = list(balances.values())
    dtypes = (np.int64, np.int64, np.int8, np.int64, np.int64, bool, np.int64, np.float64)
    arrays = [np.array(c, dtype=d) for c, d in zip(zip(*rows, strict=True), dtypes, strict=True)]
    book = build_book(insts, [USDT], CrowdColumns(tuple(ids), cash, *arrays))
    return time.perf_counter() - began, len(book)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=1_000_000)
    args = parser.parse_args()
    insts = instruments()
    with tempfile.TemporaryDirectory() as folder:
        data = table(args.positions)
        parquet, text = Path(folder) / "positions.parquet", Path(folder) / "positions.csv"
        pq.write_table(data, parquet)
        pacsv.write_csv(data, text)
        print(f"{args.positions:,} positions: Parquet {parquet.stat().st_size >> 20} MiB, "
              f"CSV {text.stat().st_size >> 20} MiB")  # fmt: skip
        runs = {
            "Parquet -> book (pyarrow columns)": engine_import(parquet, insts),
            "CSV -> book (pyarrow columns)": engine_import(text, insts),
            "CSV -> book (csv module loop, peer)": csv_loop(text, insts),
        }
    bars = {"Parquet": PARQUET_BAR_S, "CSV -> book (py": CSV_BAR_S}
    peer = runs["CSV -> book (csv module loop, peer)"][0]
    failed = False
    print(f"{'path':40} {'seconds':>8} {'rows':>10} {'x peer':>7}  bar")
    for name, (seconds, rows) in runs.items():
        bar = next((b for key, b in bars.items() if name.startswith(key)), None)
        met = "" if bar is None else (f"< {bar:.0f} s: " + ("met" if seconds < bar else "MISSED"))
        failed |= bar is not None and seconds >= bar
        print(f"{name:40} {seconds:8.2f} {rows:10,} {peer / seconds:7.1f}  {met}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
