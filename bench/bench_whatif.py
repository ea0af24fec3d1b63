"""What-if bench: branching a store at a tick (the state there from the last snapshot plus the
journal, read-only, and the branch store written at it) beside running the rest of the scenario
from there, beside the whole run from the start, all with a store, in one process.

The branch does not read the events before the original's snapshot (it copies their chunks as
stored), so it reaches the tick sooner than a seek does; the comparison after it reads them.

Run `python3 bench/bench_whatif.py [--accounts 1000000] [--at 0.5]` (the built-in cascade-2025,
its crowd resized; the issue's target is 1,000,000 accounts, the default is small). Bar: the
branch and the rest of its run cost no more than seeking to the tick plus the original's own run
of the rest (timed inside the run from the start)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.session.session import Session
from core.whatif.branch import Fork
from core.whatif.runs import branch_outcome, original_outcome

CASCADE = Path(__file__).resolve().parents[1] / "assets" / "scenarios" / "cascade-2025.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000, help="crowd accounts (20,000)")
    parser.add_argument(
        "--at", type=float, default=0.5, help="where to branch, as a fraction of the run (0.5)"
    )
    args = parser.parse_args(argv)
    doc = json.loads(CASCADE.read_text())
    doc["crowd"]["accounts"] = args.accounts
    with tempfile.TemporaryDirectory() as folder:
        parent = Path(folder) / "S.db"
        began = time.perf_counter()
        session = Session.start(doc, parent)
        ticks, positions = session.engine.ticks_total, len(session.engine.book)
        at = min(ticks - 2, int(args.at * (ticks - 1)))
        reached = began
        while not session.finished:
            session.step()
            if session.tick == at:
                reached = time.perf_counter()
        end_hash = session.engine.state_hash()
        session.close()
        from_start = time.perf_counter() - began
        rest = from_start - (reached - began)  # the original's own ticks after `at`, and its close

        # The peer's seek: the store opened at the tick as the console's seek opens it.
        began = time.perf_counter()
        Session.open(parent, at=at, read_only=True).close()
        seeked = time.perf_counter() - began

        began = time.perf_counter()
        fork = Fork(parent, str(at), "bench")
        forked = time.perf_counter() - began
        branch_session = fork.start()
        branched = time.perf_counter() - began
        run = fork.finish(branch_session)
        whole = time.perf_counter() - began
        began = time.perf_counter()
        outcomes = [original_outcome(parent), branch_outcome(fork, run)]
        compared = time.perf_counter() - began
    same = "same" if run.state_hash == end_hash else "DIFFERENT"
    print(
        f"cascade-2025, {args.accounts:,} accounts, {positions:,} positions, {ticks} ticks; "
        f"branch at tick {at}"
    )
    print(f"  seek to the tick (the store opened there, every event read): {seeked:.2f} s")
    print(
        f"  branch at the tick (the state there {forked:.2f} s, branch store written): "
        f"{branched:.2f} s"
    )
    print(f"  branch plus running the rest to the end: {whole:.2f} s (end state {same})")
    print(
        f"  then the comparison of the {len(outcomes)} runs (every event of each read): "
        f"{compared:.2f} s"
    )
    print(
        f"  the run from the start, with its store: {from_start:.2f} s (of it the rest {rest:.2f} s)"
    )
    peer = seeked + rest
    met = whole <= peer
    print(
        f"  branching costs {branched / from_start:.1%} of a run from the start; the branch's "
        f"whole run {whole / from_start:.1%}"
    )
    print(
        f"  bar: branch plus the rest {whole:.2f} s <= seek plus the original's rest {peer:.2f} s: "
        f"{'met' if met else 'MISSED'}"
    )
    return 0 if same == "same" and met else 1


if __name__ == "__main__":
    sys.exit(main())
