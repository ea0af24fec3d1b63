"""Bench: one cross-margin mark tick over a crowd book, beside its peers (DESIGN.md section 5).

Run `python3 bench/bench_tick.py [--positions 1000000 --accounts 200000]`; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install

from core.model.instruments import Instrument, TierTable
from core.model.scenario_values import CrowdSpec
from core.model.units import Currency
from core.risk.positions import PositionBook, Valuation
from core.scenario.crowd import CrowdColumns, build_book, generate_crowd

CURRENCIES = (Currency("BTC", 8), Currency("USDT", 6))


def _instrument(
    symbol: str,
    kind: str,
    cv: str,
    currency: str,
    tick: str,
    basis: str,
    levels: list[tuple[str | None, str, str]],
) -> Instrument:
    table = TierTable.build(
        basis,  # type: ignore[arg-type]
        [
            (Decimal(top) if top else None, Decimal(mmr), Decimal(lev), None)
            for top, mmr, lev in levels
        ],
    )
    return Instrument(
        symbol, kind, Decimal(cv), currency, Decimal(tick), None, symbol, symbol, table
    )  # type: ignore[arg-type]


# Two linear swaps with notional tiers (they re-select as the mark moves) and the 2018 inverse
# quarterly with contract tiers.
INSTRUMENTS = (
    _instrument("BTC-USDT-SWAP", "linear", "0.01", "USDT", "0.1", "notional",
                [("50000", "0.004", "125"), ("250000", "0.005", "100"), ("1000000", "0.01", "50"),
                 ("10000000", "0.025", "20"), (None, "0.05", "10")]),
    _instrument("ETH-USDT-SWAP", "linear", "0.1", "USDT", "0.01", "notional",
                [("10000", "0.005", "100"), ("100000", "0.0065", "75"), ("500000", "0.01", "50"),
                 ("1000000", "0.02", "25"), (None, "0.05", "10")]),
    _instrument("BTC-USD-180928", "inverse", "100", "BTC", "0.01", "contracts",
                [("50000", "0.015", "20"), ("80000", "0.02", "20"), ("120000", "0.025", "20"),
                 ("200000", "0.03", "10")]),
)  # fmt: skip
START = {"BTC-USDT-SWAP": Decimal("8100.3"), "ETH-USDT-SWAP": Decimal("412.57"),
         "BTC-USD-180928": Decimal("8123.45")}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timing:
    name: str
    best_ms: float
    median_ms: float
    note: str = ""


def _time_together(
    runs: dict[str, tuple[Callable[[int], object], int]], notes: dict[str, str]
) -> list[Timing]:
    """Best and median wall time in ms of each `run(i)` over its own number of repeats. The runs
    take turns within each repeat, so a noisy neighbour on a shared machine slows them alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(max(repeats for _, repeats in runs.values())):
        for name, (run, repeats) in runs.items():
            if i < repeats:
                started = time.perf_counter()
                run(i)
                samples[name].append((time.perf_counter() - started) * 1000)
    return [
        Timing(name, min(times), statistics.median(times), notes.get(name, ""))
        for name, times in samples.items()
    ]


# The columns one tick reads, by the book's own names (the floor streams exactly these).
FLOOR_COLUMNS = ("instrument", "upnl_a", "upnl_b", "mm_c", "mm_d", "size_per_x", "group",
                 "isolated", "iso_margin_major", "leverage", "balances")  # fmt: skip


def numpy_floor(book: PositionBook) -> Callable[[int], object]:
    """One pass over each input column: a reduction numpy cannot do with less memory traffic."""
    columns = [getattr(book, name) for name in FLOOR_COLUMNS]

    def stream(_: int) -> object:
        # bool has no fast sum; count_nonzero reads it once like the others
        return [np.count_nonzero(c) if c.dtype == bool else c.sum() for c in columns]

    return stream


class PythonLoop:
    """The tick per position in plain Python over lists, with the engine's own algorithm: cached
    upnl/maintenance coefficients, tiers re-selected only when x leaves the cached band."""

    def __init__(self, book: PositionBook, rows: int) -> None:
        accounts = int(book.account[rows - 1]) + 1
        self.n = rows
        self.inst = book.instrument[:rows].tolist()
        self.a, self.b = book.upnl_a[:rows].tolist(), book.upnl_b[:rows].tolist()
        self.size_per_x = book.size_per_x[:rows].tolist()
        self.contracts = book.contracts[:rows].tolist()
        self.leverage = book.leverage[:rows].tolist()
        self.group = book.group[:rows].tolist()
        self.isolated = book.isolated[:rows].tolist()
        self.iso_margin = book.iso_margin_major[:rows].tolist()
        self.cash = (book.balances[:accounts] / book.currency_scale).ravel().tolist()
        self.inverse = book.inst_inverse.tolist()
        self.cv = book.inst_cv.tolist()
        self.tables = [(i.tiers.basis, i.tiers.maxes.tolist(), i.tiers.mmrs.tolist(),
                        i.tiers.amounts.tolist()) for i in book.instruments]  # fmt: skip
        self.c, self.d = [0.0] * rows, [0.0] * rows
        self.lo, self.hi = [float("inf")] * rows, [float("-inf")] * rows

    def tick(self, marks: np.ndarray) -> tuple[list[float], list[float], list[bool]]:
        xs = [1.0 / m if inv else m for m, inv in zip(marks.tolist(), self.inverse, strict=True)]
        group_equity = list(self.cash)
        group_maintenance = [0.0] * len(self.cash)
        group_margin = [0.0] * len(self.cash)
        equity, requirement = [0.0] * self.n, [0.0] * self.n
        c, d, lo, hi = self.c, self.d, self.lo, self.hi
        for i in range(self.n):
            k = self.inst[i]
            x = xs[k]
            if x <= lo[i] or x > hi[i]:
                basis, maxes, mmrs, amounts = self.tables[k]
                if basis == "contracts":
                    level = bisect_left(maxes, self.contracts[i])
                    c[i] = self.cv[k] * (self.contracts[i] * mmrs[level] - amounts[level])
                    d[i], lo[i], hi[i] = 0.0, float("-inf"), float("inf")
                else:
                    per_x = self.size_per_x[i]
                    level = bisect_left(maxes, per_x * x)
                    c[i], d[i] = per_x * mmrs[level], amounts[level]
                    lo[i] = (maxes[level - 1] if level else float("-inf")) / per_x
                    hi[i] = maxes[level] / per_x
            upnl = self.a[i] * x + self.b[i]
            maintenance = c[i] * x - d[i]
            if self.isolated[i]:
                equity[i], requirement[i] = self.iso_margin[i] + upnl, maintenance
            else:
                g = self.group[i]
                group_equity[g] += upnl
                group_maintenance[g] += maintenance
                group_margin[g] += self.size_per_x[i] * x / self.leverage[i]
        flags = [False] * self.n
        for i in range(self.n):
            if not self.isolated[i]:
                g = self.group[i]
                equity[i], requirement[i] = group_equity[g], group_maintenance[g]
            flags[i] = self.contracts[i] > 0 and equity[i] <= requirement[i]
        return equity, requirement, flags


def polars_tick(book: PositionBook) -> Callable[[np.ndarray], object] | None:
    """The same tick as one polars query (frames built once, outside the timing). It is handed
    the engine's cached tier coefficients (mm_c, mm_d) and does not re-select tiers: less work."""
    try:
        import polars as pl
    except ImportError:
        return None
    positions = pl.DataFrame({
        name: getattr(book, name)
        for name in ("instrument", "group", "upnl_a", "upnl_b", "mm_c", "mm_d", "size_per_x",
                     "leverage", "isolated", "iso_margin_major", "contracts")
    }).lazy()  # fmt: skip
    cash = pl.DataFrame({
        "group": np.arange(book.n_groups, dtype=np.int64),
        "cash": (book.balances / book.currency_scale).ravel(),
    }).lazy()  # fmt: skip
    instrument_ids = np.arange(len(book.instruments), dtype=np.int64)

    def tick(marks: np.ndarray) -> object:
        x = pl.DataFrame({"instrument": instrument_ids, "x": book.x_of_marks(marks)}).lazy()
        valued = positions.join(x, on="instrument", how="left").with_columns(
            upnl=pl.col("upnl_a") * pl.col("x") + pl.col("upnl_b"),
            maintenance=pl.col("mm_c") * pl.col("x") - pl.col("mm_d"),
            margin=pl.col("size_per_x") * pl.col("x") / pl.col("leverage"),
        )
        groups = (
            valued.filter(~pl.col("isolated"))
            .group_by("group")
            .agg(
                pl.col("upnl").sum(),
                pl.col("maintenance").sum().alias("group_maintenance"),
                pl.col("margin").sum(),
            )
            .join(cash, on="group", how="right")
            .with_columns(group_equity=pl.col("cash") + pl.col("upnl").fill_null(0.0))
        )
        flagged = (
            valued.join(
                groups.select("group", "group_equity", "group_maintenance"), on="group", how="left"
            )
            .select(
                equity=pl.when("isolated")
                .then(pl.col("iso_margin_major") + pl.col("upnl"))
                .otherwise("group_equity"),
                requirement=pl.when("isolated").then("maintenance").otherwise("group_maintenance"),
                open=pl.col("contracts") > 0,
            )
            .with_columns(liquidatable=pl.col("open") & (pl.col("equity") <= pl.col("requirement")))
        )
        return pl.collect_all([flagged, groups])

    return tick


def _polars_agreement(valuation: Valuation, frames: object) -> str:
    """Row order is polars' own after its joins: compare order-free totals."""
    flagged, groups = frames  # type: ignore[misc]
    flags = int(flagged["liquidatable"].sum())
    equity_error = abs(flagged["equity"].sum() / valuation.equity.sum() - 1)
    group_error = abs(groups["group_equity"].sum() / valuation.group_equity.sum() - 1)
    verdict = "AGREE" if flags == int(valuation.liquidatable.sum()) and max(
        equity_error, group_error) < 1e-9 else "DISAGREE"  # fmt: skip
    return (
        f"{verdict}: engine vs polars at the start marks: liquidatable {flags:,}, relative "
        f"error of summed equity {equity_error:.1e}, of group equity {group_error:.1e}"
    )


def _agreement(valuation: Valuation, loop: tuple[list[float], list[float], list[bool]]) -> str:
    equity, _, flags = (np.asarray(column) for column in loop)
    rows = len(equity)
    error = np.abs(valuation.equity[:rows] - equity) / np.maximum(np.abs(equity), 1e-9)
    mismatched = int((valuation.liquidatable[:rows] != flags).sum())
    verdict = "AGREE" if error.max() < 1e-9 and mismatched == 0 else "DISAGREE"
    return (
        f"{verdict}: engine vs Python loop on {rows:,} positions: max relative equity error "
        f"{error.max():.1e}, flags differing {mismatched}, liquidatable {int(flags.sum()):,}"
    )


def _build(args: argparse.Namespace) -> PositionBook:
    started = time.perf_counter()
    parameters = {"x-positions": args.positions, "x-cross-share": "1"}
    crowd = generate_crowd(
        INSTRUMENTS, CURRENCIES, CrowdSpec(args.accounts, args.seed, parameters), START
    )
    generated = time.perf_counter() - started
    book = build_book(INSTRUMENTS, CURRENCIES, CrowdColumns.empty(len(CURRENCIES)), crowd)
    print(f"crowd: {crowd.n_positions:,} cross positions in {crowd.n_accounts:,} accounts, "
          f"{len(INSTRUMENTS)} instruments: generated in {generated:.2f} s, book built in "
          f"{time.perf_counter() - started - generated:.2f} s; {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}")  # fmt: skip
    return book


def _profile(book: PositionBook, ticks: list[np.ndarray]) -> None:
    """Line-by-line cost of PositionBook.revalue (needs `pip install line_profiler`)."""
    try:
        from line_profiler import LineProfiler
    except ImportError:
        print("--profile needs line_profiler: pip install line_profiler")
        return
    profiler = LineProfiler(PositionBook.revalue_numpy, PositionBook._update_tiers)
    revalue = profiler(book.revalue_numpy)
    for marks in ticks:
        revalue(marks)
    print(f"\nline profile over {len(ticks)} ticks (Time and Per Hit in ms):")
    profiler.print_stats(output_unit=1e-3, stripzeros=True)


def _bars(timings: list[Timing]) -> list[tuple[str, bool]]:
    """The three bars of DESIGN.md section 5, judged on medians (best in brackets)."""
    by_name = {t.name.split(" (")[0]: t for t in timings}
    engine, floor = by_name["engine tick"], by_name["numpy streaming floor"]
    python = by_name["Python loop"]

    def ratios(other: Timing, engine_over_other: bool) -> tuple[float, str]:
        median, best = other.median_ms / engine.median_ms, other.best_ms / engine.best_ms
        if engine_over_other:
            median, best = 1 / median, 1 / best
        return median, f"{median:.1f}x, best {best:.1f}x"

    over_floor, floor_text = ratios(floor, True)
    loop_speedup, loop_text = ratios(python, False)
    bars = [
        (f"tick <= 5x numpy floor ({floor_text})", over_floor <= 5),
        (f"tick >= 30x faster than the Python loop ({loop_text})", loop_speedup >= 30),
    ]
    if "polars query" in by_name:
        polars_speedup, polars_text = ratios(by_name["polars query"], False)
        bars.append((f"tick faster than polars ({polars_text})", polars_speedup > 1))
    else:
        bars.append(("tick faster than polars (not installed: pip install polars)", False))
    return bars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--loop-positions", type=int, default=100_000)
    parser.add_argument("--loop-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="line profile of revalue")
    args = parser.parse_args(argv)
    book = _build(args)

    rng = np.random.default_rng(args.seed)
    start = np.array([float(START[i.symbol]) for i in INSTRUMENTS])
    # each tick moves every mark by ~0.3% around the start, so some cached tiers re-select
    ticks = [start * np.exp(rng.normal(0.0, 0.003, start.size)) for _ in range(args.repeats)]
    book.revalue(start)  # warm: tiers selected once, as in a running engine
    retiered, tiers_before = [], book.tier.copy()
    for marks in ticks:  # untimed: how much re-selection the ticks cause
        retiered.append(int((book.revalue(marks).tier != tiers_before).sum()))
        tiers_before = book.tier.copy()
    book.revalue(start)

    cut = int(np.searchsorted(book.account, book.account[min(args.loop_positions, len(book)) - 1]))
    rows = cut if cut > 0 else min(args.loop_positions, len(book))  # whole accounts only
    loop = PythonLoop(book, rows)
    loop.tick(start)  # warm its tier cache like the engine's
    scale = len(book) / rows
    runs: dict[str, tuple[Callable[[int], object], int]] = {
        "engine tick (PositionBook.revalue)": (lambda i: book.revalue(ticks[i]), args.repeats),
        "numpy streaming floor": (numpy_floor(book), args.repeats),
        "Python loop": (lambda i: loop.tick(ticks[i]), args.loop_repeats),
        "numpy reference (revalue_numpy)": (lambda i: book.revalue_numpy(ticks[i]), args.repeats),
    }
    notes_reference = "the same valuation in numpy passes, which the compiled pass must equal"
    notes = {
        "Python loop": f"timed on {rows:,} positions ({args.loop_repeats} runs), x{scale:.1f}",
        "numpy reference (revalue_numpy)": notes_reference,
    }
    polars = polars_tick(book)
    if polars is not None:
        import polars as pl

        polars_check = _polars_agreement(book.revalue(start), polars(start))  # also warms
        runs["polars query"] = (lambda i: polars(ticks[i]), args.repeats)
        notes["polars query"] = f"polars {pl.__version__}, {pl.thread_pool_size()} threads"
    timings = _time_together(runs, notes)
    timings[2] = Timing("Python loop", timings[2].best_ms * scale, timings[2].median_ms * scale,
                        timings[2].note)  # fmt: skip
    agreement = _agreement(book.revalue(ticks[-1]), loop.tick(ticks[-1]))

    engine_ms = timings[0].median_ms
    print(f"\n{'name':36} {'best ms':>9} {'median ms':>10} {'x engine':>9}  note")
    for t in timings:
        ratio = t.median_ms / engine_ms
        print(f"{t.name:36} {t.best_ms:9.2f} {t.median_ms:10.2f} {ratio:9.2f}  {t.note}")
    floor_mb = sum(getattr(book, name).nbytes for name in FLOOR_COLUMNS) / 1e6
    print(
        f"\nfloor = one reduction over each of {', '.join(FLOOR_COLUMNS)}: {floor_mb:.0f} MB "
        "(the tick also reads contracts and the two cached tier bands, not counted)"
    )
    print(f"rows re-tiered per tick: mean {statistics.mean(retiered):.0f}, max {max(retiered)}")
    print(agreement)
    if polars is not None:
        print(polars_check)
    bars = _bars(timings)
    print("\nbars (DESIGN.md section 5, on medians):")
    for label, passed in bars:
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")
    if args.profile or not all(passed for _, passed in bars):
        _profile(book, ticks)
    agreed = agreement.startswith("AGREE") and (polars is None or polars_check.startswith("AGREE"))
    return 0 if all(passed for _, passed in bars) and agreed else 1


if __name__ == "__main__":
    raise SystemExit(main())
