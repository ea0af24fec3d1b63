"""The cascade-2025 replay (1,000,000 accounts through a 15% crash) in liquidations per second,
beside a per-liquidation Python loop measured in the same run.

Run `python3 bench/bench_cascade.py [--accounts 1000000]`. Bar (DESIGN.md section 5): 50,000
liquidations per second or more over the whole replay. The peer does, one liquidation at a time
in plain Python, what the engine does for each (flag check, bankruptcy price, takeover posting,
exact PnL of the fill, fund posting, the two events) on a sample of the replay's liquidated
positions, plus a per-position flag check of the whole book every tick (timed on a slice);
both are extrapolated to the replay and the output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.engine.facade import Engine
from core.engine.ledger import CLEARING, INSURANCE_FUND, OUTSIDE, Ledger, Reason, trader
from core.model.events import AdlFill, LiquidationFilled, LiquidationStarted
from core.risk.pnl import realized_pnl_minor
from core.scenario.parse import parse_scenario
from core.session.collection import pace_for_runs
from core.session.session import Session

SCENARIO = Path(__file__).resolve().parents[1] / "assets" / "scenarios" / "cascade-2025.json"
TARGET = 50_000.0
PEER_SAMPLE = 20_000


def replay(doc: dict[str, Any]) -> dict[str, Any]:
    began = time.perf_counter()
    engine = Engine(parse_scenario(doc))
    setup = time.perf_counter() - began
    book = engine.book
    opening = (book.contracts.copy(), book.iso_margin.copy(), book.balances[:, 0].copy())
    path = 0.0
    liquidate = engine._liquidate

    def timed() -> None:
        nonlocal path
        start = time.perf_counter()
        liquidate()
        path += time.perf_counter() - start

    engine._liquidate = timed  # type: ignore[method-assign]
    counts = {"filled": 0, "started": 0, "adl": 0}
    rows: list[int] = []
    began = time.perf_counter()
    for events in engine.run():
        for event in events:
            if isinstance(event, LiquidationFilled):
                counts["filled"] += 1
                if len(rows) < PEER_SAMPLE and not event.partial:
                    rows.append(engine.book.account_index[event.account])
            elif isinstance(event, LiquidationStarted):
                counts["started"] += 1
            elif isinstance(event, AdlFill):
                counts["adl"] += 1
    seconds = time.perf_counter() - began
    return {
        "engine": engine,
        "setup": setup,
        "seconds": seconds,
        "path": path,
        "sample_accounts": rows,
        "hash": engine.state_hash(),
        "opening": opening,
        **counts,
    }


def peer_seconds_per_liquidation(
    engine: Engine, accounts: list[int], opening: tuple[np.ndarray, ...]
) -> float:
    """One liquidation at a time in plain Python, on the opening positions of the sampled
    accounts, valued at their entry moved 15% against them."""
    book = engine.book
    opening_contracts, opening_margin, opening_cash = opening
    inst = engine.instruments[0]
    decimals = engine.decimals(0)
    cv, unit = float(inst.contract_value), float(inst.price_unit)
    mmr = float(inst.tiers.levels[0].mmr)
    first_row = {int(a): int(r) for r, a in reversed(list(enumerate(book.account.tolist())))}
    rows = [first_row[a] for a in accounts if a in first_row]
    ledger = Ledger()
    positions = []
    for row in rows:
        account = int(book.account[row])
        side, contracts = int(book.side[row]), int(opening_contracts[row])
        entry = int(book.entry_units[row])
        margin = int(opening_margin[row]) or int(opening_cash[account]) or 1
        ledger.post(OUTSIDE, trader(account), "USDT", margin, Reason.DEPOSIT)
        positions.append((row, account, side, contracts, entry, margin))
    ledger.post(OUTSIDE, INSURANCE_FUND, "USDT", 10**15, Reason.DEPOSIT)
    now, ids, symbol = engine.now, book.account_ids, inst.symbol
    events: list[object] = []
    began = time.perf_counter()
    for _row, account, side, contracts, entry, margin in positions:
        entry_price = entry * unit
        mark = entry_price * (0.85 if side > 0 else 1.15)
        upnl = side * contracts * cv * (mark - entry_price)
        equity = margin / 1e6 + upnl
        if equity > contracts * cv * mark * mmr:
            continue
        bankruptcy = entry_price - side * (margin / 1e6) / (contracts * cv)
        ledger.post(trader(account), CLEARING, "USDT", margin, Reason.REALIZED_PNL)
        events.append(
            LiquidationStarted(
                now, ids[account], symbol, "long", contracts, False, bankruptcy, 0, "USDT"
            )
        )
        price_units = max(1, round(mark / unit))
        net = margin + realized_pnl_minor(inst, decimals, side, contracts, entry, price_units)
        if net >= 0:
            ledger.post(CLEARING, INSURANCE_FUND, "USDT", net, Reason.LIQUIDATION_SURPLUS)
        else:
            ledger.post(INSURANCE_FUND, CLEARING, "USDT", -net, Reason.DEFICIT_COVER)
        events.append(
            LiquidationFilled(
                now,
                now,
                ids[account],
                symbol,
                "long" if side > 0 else "short",
                contracts,
                False,
                Decimal(price_units) * inst.price_unit,
                bankruptcy,
                max(net, 0),
                max(-net, 0),
                max(-net, 0),
                "USDT",
                1,
            )
        )
    seconds = time.perf_counter() - began
    return seconds / max(1, len(events) // 2)


def peer_seconds_per_check(engine: Engine, sample: int = 200_000) -> float:
    """A per-position loop's flag check (equity against maintenance at the mark), per position."""
    book = engine.book
    inst = engine.instruments[0]
    cv, unit, mmr = float(inst.contract_value), float(inst.price_unit), 0.005
    mark = float(engine.marks[0])
    rows = list(
        zip(
            book.side[:sample].tolist(),
            book.contracts[:sample].tolist(),
            (book.entry_units[:sample] * unit).tolist(),
            (book.iso_margin[:sample] / 1e6).tolist(),
            strict=True,
        )
    )
    began = time.perf_counter()
    flagged = 0
    for side, contracts, entry, margin in rows:
        equity = margin + side * contracts * cv * (mark - entry)
        if contracts and equity <= contracts * cv * mark * mmr:
            flagged += 1
    return (time.perf_counter() - began) / max(1, len(rows))


def replay_with_journal(doc: dict[str, Any]) -> tuple[float, str]:
    """The same replay through a Session writing a store (setup and the first snapshot excluded)."""
    with tempfile.TemporaryDirectory() as folder:
        session = Session.start(doc, Path(folder) / "cascade.sqlite")
        began = time.perf_counter()
        session.run_to_end()
        seconds = time.perf_counter() - began
        state = session.engine.state_hash()
        session.close()
    return seconds, state


def main() -> int:
    pace_for_runs()  # the collector's pace of the console and the command line
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument(
        "--no-journal", dest="journal", action="store_false", help="skip the journaled replay"
    )
    args = parser.parse_args()
    doc = json.loads(SCENARIO.read_text())
    doc["crowd"]["accounts"] = args.accounts
    run = replay(doc)
    engine = run["engine"]
    book = engine.book
    per_liquidation = peer_seconds_per_liquidation(engine, run["sample_accounts"], run["opening"])
    per_check = peer_seconds_per_check(engine)
    liquidations = run["filled"]
    peer_detect = per_check * len(book) * engine.tick
    peer_total = liquidations * per_liquidation + peer_detect
    rate = liquidations / run["seconds"]
    path_rate = liquidations / run["path"]
    peer_rate = liquidations / peer_total
    print(f"cascade-2025: {args.accounts:,} accounts, {len(book):,} positions, {engine.tick} ticks")
    print(f"  setup (crowd, book, ledger)        {run['setup']:8.2f} s (not in the rate)")
    print(
        f"  replay                              {run['seconds']:8.2f} s  "
        f"{liquidations:,} liquidations ({run['started']:,} takeovers, "
        f"{liquidations - run['started']:,} partial steps), {run['adl']:,} ADL fills"
    )
    print(f"  engine                              {rate:11,.0f} liquidations/s (whole replay)")
    print(
        f"  liquidation path (detect, execute)  {run['path']:8.2f} s  "
        f"{path_rate:11,.0f} liquidations/s; the rest is ledger check, surveillance, prices"
    )
    print(
        f"  per-liquidation Python loop         {peer_rate:11,.0f} liquidations/s "
        f"({peer_total:.1f} s, extrapolated from samples: {liquidations * per_liquidation:.1f} s "
        f"for {liquidations:,} liquidations at {per_liquidation * 1e6:.1f} us each, measured on "
        f"{min(PEER_SAMPLE, len(run['sample_accounts'])):,}; {peer_detect:.1f} s to check "
        f"{len(book):,} positions on {engine.tick} ticks at {per_check * 1e9:.0f} ns each)"
    )
    print(f"  engine / loop                       {rate / peer_rate:8.1f}x")
    if args.journal:
        journaled_s, journal_hash = replay_with_journal(doc)
        assert journal_hash == run["hash"], "the journaled replay reached another state"
        print(
            f"  replay with the store's journal     {journaled_s:8.2f} s  "
            f"{liquidations / journaled_s:11,.0f} liquidations/s (every tick and event committed)"
        )
        rate = liquidations / journaled_s
    print(f"  state {run['hash'][:16]}")
    ok = rate >= TARGET
    print(
        f"  bar: >= {TARGET:,.0f} liquidations/s over the replay"
        f"{', journal included' if args.journal else ''}: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
