"""Store benchmarks, each beside its naive peer in the same run: journal writes per second
(batched, one transaction per tick, against one commit per event) and the restart of a
1,000,000-account store (last snapshot plus journal tail, against rebuilding from the scenario and
replaying every tick).

Run `python3 bench/bench_store.py` (about two minutes; `--quick` skips the 1M restart).
Bars (DESIGN.md section 5): 300,000 journal events per second or more; restart under 3 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.engine.facade import Engine
from core.model.events import Event, FundPosting, LiquidationFilled, LiquidationStarted
from core.scenario.parse import load_scenario
from core.session.collection import pace_for_runs
from core.session.session import Session
from core.store import queries
from core.store.store import Store

TICKS = 40
EVENTS_PER_TICK = 5_000
NAIVE_EVENTS = 3_000
WRITE_TARGET = 300_000
RESTART_TARGET_S = 3.0
LIVE_TICKS = 120
CASCADE = Path(__file__).resolve().parents[1] / "assets" / "scenarios" / "cascade-2025.json"
START = datetime(2025, 10, 10, 21, tzinfo=UTC)


def tick_events(tick: int) -> list[Event]:
    """A cascade tick's worth of events: starts, fills and fund postings, a third each."""
    now = START + timedelta(seconds=tick)
    events: list[Event] = []
    for n in range(EVENTS_PER_TICK // 3):
        account = f"crowd-{tick * EVENTS_PER_TICK + n}"
        events.append(
            LiquidationStarted(
                now, account, "BTC-USDT-SWAP", "long", 120, False, 101_234.5, 0, "USDT"
            )
        )
        events.append(
            LiquidationFilled(
                now,
                now,
                account,
                "BTC-USDT-SWAP",
                "long",
                120,
                False,
                Decimal("101230.1"),
                101_234.5,
                5_280_000,
                0,
                0,
                "USDT",
                1,
            )
        )
        events.append(FundPosting(now, "USDT", "surplus_in", 5_280_000, 50_000_000_000_000 + n))
    return events


def bench_batched(folder: Path) -> float:
    store = Store.create(folder / "batched.sqlite", {"format": "bench"}, {})
    batches = [tick_events(t) for t in range(1, TICKS + 1)]
    began = time.perf_counter()
    for tick, events in enumerate(batches, start=1):
        with store.transaction():
            store.write_tick(tick, START + timedelta(seconds=tick), [], events, None)
    elapsed = time.perf_counter() - began
    store.close()
    return TICKS * (EVENTS_PER_TICK // 3) * 3 / elapsed


def bench_commit_per_event(folder: Path) -> float:
    store = Store.create(folder / "naive.sqlite", {"format": "bench"}, {})
    events = tick_events(1)[:NAIVE_EVENTS]
    began = time.perf_counter()
    for event in events:
        with store.transaction():
            store.write_tick(1, START, [], [event], None)
    elapsed = time.perf_counter() - began
    store.close()
    return len(events) / elapsed


def bench_restart(folder: Path) -> tuple[float, float, int]:
    """(restart s, naive rebuild s, positions): a 1M-account cascade store with LIVE_TICKS ticks
    journaled after its first snapshot."""
    path = folder / "cascade.sqlite"
    session = Session.start(CASCADE, path)
    for _ in range(LIVE_TICKS):
        session.step()
    expected = session.engine.state_hash()
    positions = len(session.engine.book)
    session.close()

    began = time.perf_counter()
    restarted = Session.open(path)
    restart_s = time.perf_counter() - began
    assert restarted.engine.state_hash() == expected
    restarted.update_account_state()  # a big book's table, as its export writes it
    restarted.close()

    bench_queries(path)

    began = time.perf_counter()
    engine = Engine(load_scenario(CASCADE))
    for _ in range(LIVE_TICKS):
        engine.step()
    naive_s = time.perf_counter() - began
    assert engine.state_hash() == expected
    return restart_s, naive_s, positions


def _best_ms(run: Callable[[], object], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best * 1e3


def bench_queries(path: Path) -> None:
    """The console's queries on the 1M-account store, beside the same SQL forced to scan."""
    store = Store.open(path)
    db = store.db
    rows = db["account_state"].count
    scan = "SELECT * FROM account_state NOT INDEXED WHERE currency = 'USDT' AND positions > 0 "
    cases = [
        (
            "top 50 accounts by notional",
            lambda: queries.top_accounts(db, "USDT", "notional"),
            lambda: list(db.query(scan + "ORDER BY notional DESC LIMIT 50")),
        ),
        (
            "top 50 accounts by risk",
            lambda: queries.top_accounts(db, "USDT", "risk"),
            lambda: list(db.query(scan + "ORDER BY margin_ratio LIMIT 50")),
        ),
        (
            "one account's history",
            lambda: queries.account_history(db, "crowd-654321"),
            lambda: list(
                db.query("SELECT * FROM events NOT INDEXED WHERE account = 'crowd-654321'")
            ),
        ),
        ("the fund's history", lambda: queries.fund_history(db, "USDT"), None),
        (
            "liquidations in 10 minutes",
            lambda: queries.liquidations_between(
                db, "2025-10-10T21:00:00Z", "2025-10-10T21:10:00Z"
            ),
            None,
        ),
    ]
    print(
        f"\nqueries on the same store ({rows:,} account rows); the peer is the same SQL forced to scan"
    )
    print(f"{'name':44} {'ms':>12} {'scan ms':>10}")
    for name, indexed, scanned in cases:
        fast = _best_ms(indexed)
        slow = f"{_best_ms(scanned, 2):10.1f}" if scanned else f"{'-':>10}"
        print(f"{name:44} {fast:12.2f} {slow}")
    store.close()


def main() -> int:
    pace_for_runs()  # the collector's pace of the console and the command line
    quick = "--quick" in sys.argv
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        batched = bench_batched(folder)
        naive = bench_commit_per_event(folder)
        print(
            f"journal writes: {TICKS} ticks of {EVENTS_PER_TICK:,} events (liquidation started, "
            f"filled, fund posting), WAL, synchronous=NORMAL; the naive peer commits each event"
        )
        print(f"{'name':44} {'events/s':>12} {'x naive':>8}  >= {WRITE_TARGET:,}")
        for name, rate in (
            ("one transaction per tick (executemany)", batched),
            ("one commit per event", naive),
        ):
            print(f"{name:44} {rate:12,.0f} {rate / naive:8.1f}  {rate >= WRITE_TARGET}")
        ok &= batched >= WRITE_TARGET
        if not quick:
            restart_s, naive_s, positions = bench_restart(folder)
            print(
                f"\nrestart: a store of cascade-2025 ({positions:,} positions) with {LIVE_TICKS} ticks "
                "after its last snapshot; both rebuild the same state hash"
            )
            print(f"{'name':44} {'seconds':>12} {'x fast':>8}  < {RESTART_TARGET_S} s")
            for name, seconds in (
                ("last snapshot + journal tail (Session.open)", restart_s),
                ("from the scenario, replaying every tick", naive_s),
            ):
                print(
                    f"{name:44} {seconds:12.2f} {seconds / restart_s:8.1f}  {seconds < RESTART_TARGET_S}"
                )
            ok &= restart_s < RESTART_TARGET_S
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
