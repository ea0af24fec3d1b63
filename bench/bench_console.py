"""Console bars beside naive peers in one run: sorting a 1M-row position table (numpy argsort
through the table model vs Python sorted() over row tuples) and redrawing a 1M-point chart
(pyqtgraph with clip-to-view and peak downsampling vs the same curve drawn in full).

Run `python3 bench/bench_console.py`. Bars (DESIGN.md section 5): sort < 200 ms, redraw < 15 ms.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.session.snapshot import TABLE_KEYS, PositionTable, TableSpec, table_order

ROWS = 1_000_000
SORT_BAR_MS = 200.0
REDRAW_BAR_MS = 15.0


def table(rows: int, seed: int = 5) -> PositionTable:
    rng = np.random.default_rng(seed)
    cols = {k: rng.random(rows) for k in TABLE_KEYS}
    cols.update(
        account=np.arange(rows) % 200_000,
        symbol=np.zeros(rows, dtype=np.int64),
        side=np.where(rng.random(rows) < 0.5, 1, -1).astype(np.int8),
        contracts=rng.integers(1, 1000, rows),
        margin_ratio=rng.lognormal(0.7, 1.0, rows),
        flags=np.zeros(rows, dtype=np.int16),
    )
    return PositionTable(
        tuple(f"crowd-{i}" for i in range(200_000)),
        ("BTC-USDT-SWAP",),
        ("USDT",),
        MappingProxyType(cols),
        np.zeros(0, dtype=np.int64),
        TableSpec(),
    )


def best_ms(run: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best * 1000


def bench_sort() -> tuple[float, float]:
    from console.models.positions import PositionsModel

    t = table(ROWS)
    model = PositionsModel()
    model.set_table(replace(t, order=table_order(t, TableSpec())))
    specs = [TableSpec(sort_key="notional", descending=True), TableSpec(sort_key="margin_ratio")]

    def engine() -> None:
        for spec in specs:
            # What the engine thread does for a new spec, and the model applying the result.
            model.spec = spec
            model.set_table(replace(t, order=table_order(t, spec), spec=spec))

    cols = t.columns
    tuples = list(
        zip(cols["notional"].tolist(), cols["margin_ratio"].tolist(), range(ROWS), strict=True)
    )

    def peer() -> None:
        sorted(tuples, key=lambda r: -r[0])
        sorted(tuples, key=lambda r: r[1])

    return best_ms(engine, 5) / 2, best_ms(peer, 2) / 2


def bench_redraw() -> tuple[float, float, float]:
    """(the same 1M points again, a curve growing 1,000 points a redraw so its axes move, the
    same points at full resolution)."""
    from PySide6.QtWidgets import QApplication

    from console.widgets.plots import Plot

    app = QApplication.instance() or QApplication([])
    x = np.arange(ROWS, dtype=np.float64)
    y = np.cumsum(np.random.default_rng(1).normal(size=ROWS))
    results = []
    for fast, grow in ((True, False), (True, True), (False, False)):
        plot = Plot("bench", "value", "x")
        plot.resize(1200, 500)
        plot.show()
        curve = plot.curve("mark", "light", "y")
        if not fast:
            curve.setDownsampling(auto=False, ds=1)
            curve.setClipToView(False)
            plot.getPlotItem().setDownsampling(auto=False, ds=1)
            plot.getPlotItem().setClipToView(False)
        curve.setData(x, y)
        app.processEvents()

        lengths = iter(range(ROWS - 100_000, ROWS, 1000)) if grow else None

        def redraw(plot: Plot = plot, curve: object = curve, lengths: object = lengths) -> None:
            n = next(lengths) if lengths is not None else ROWS  # type: ignore[call-overload]
            curve.setData(x[:n], y[:n], skipFiniteCheck=True)  # type: ignore[attr-defined]
            plot.grab()  # renders the whole plot now, offscreen or not

        results.append(best_ms(redraw, 7))
        plot.close()
        plot.deleteLater()
        app.processEvents()
    return results[0], results[1], results[2]


def main() -> int:
    sort_ms, sort_peer = bench_sort()
    print(f"sort 1M rows (numpy argsort + model remap): {sort_ms:7.1f} ms   "
          f"peer Python sorted() over row tuples: {sort_peer:7.1f} ms ({sort_peer / sort_ms:.1f}x)   "
          f"bar < {SORT_BAR_MS:.0f} ms: {'met' if sort_ms < SORT_BAR_MS else 'MISSED'}")  # fmt: skip
    draw_ms, grow_ms, draw_peer = bench_redraw()
    print(f"redraw 1M points (clip-to-view + peak downsampling): {draw_ms:7.1f} ms   "
          f"peer full-resolution curve: {draw_peer:7.1f} ms ({draw_peer / draw_ms:.1f}x)   "
          f"bar < {REDRAW_BAR_MS:.0f} ms: {'met' if draw_ms < REDRAW_BAR_MS else 'MISSED'}")  # fmt: skip
    print(
        f"redraw 1M points growing 1,000 a redraw (its axes and grid move): {grow_ms:7.1f} ms "
        "(no bar: what a live chart costs)"
    )
    return 0 if sort_ms < SORT_BAR_MS and draw_ms < REDRAW_BAR_MS else 1


if __name__ == "__main__":
    sys.exit(main())
