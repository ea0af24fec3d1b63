"""The garbage collector's pace for a process that runs the engine: its session keeps every event
of the run, and CPython's default pace rescanned them all over and over (20% of a cascade's run)."""

from __future__ import annotations

import gc

# A young collection every 50,000 new objects, not 700. The engine works on numpy columns and
# makes few objects but its events, which its session keeps to the end of the run: at the default
# pace a 1M-account cascade's session spent 2.0-2.3 s of its 9.4-9.8 s in collections (six full
# ones), 3.2-3.9 s of 21.5-23.9 s with its store; at this one 0.7-0.8 s and 0.65 s, with no full
# collection. The console's worker also freezes a loaded state (gc.freeze), which no pace scans.
YOUNG_THRESHOLD = 50_000


def pace_for_runs() -> None:
    """Set the process's collection thresholds for engine runs (the console, the command line,
    the benchmarks). Cycles are still collected, later."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
