"""The console's snapshot as the engine thread builds it, without Qt: the overview's at-risk
figures and the table's order, checked against plain recomputations of the same engine state."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.session.snapshot import AT_RISK_RATIO, TableSpec, describe, table_order
from core.session.snapshot_builder import SnapshotBuilder


def _cascade(ticks: int) -> tuple[Session, SnapshotBuilder]:
    doc: dict[str, Any] = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = 3000
    session = Session.start(doc)
    builder = SnapshotBuilder(session)
    for _ in range(ticks):
        builder.record_tick(session.step())
    return session, builder


def test_the_overview_counts_each_account_and_cross_group_at_risk_once() -> None:
    session, builder = _cascade(300)
    snap = builder.build(TableSpec(), playing=False, speed=0, ticks_per_second=0, notice=None)
    engine, book = session.engine, session.engine.book
    valuation = engine.valuation
    risky = (book.contracts > 0) & (valuation.margin_ratio <= AT_RISK_RATIO)
    assert risky.any()
    (overview,) = snap.overview
    assert overview.at_risk_accounts == np.unique(book.account[risky]).size
    groups = np.unique(book.group[risky & ~book.isolated])
    expected = valuation.group_equity[groups].sum() + valuation.equity[risky & book.isolated].sum()
    assert overview.at_risk_equity == float(expected)


def test_while_playing_the_order_is_kept_between_sorts_and_a_step_sorts_at_once() -> None:
    session, builder = _cascade(100)
    spec = TableSpec()
    first = builder.build(spec, playing=True, speed=0, ticks_per_second=0, notice=None)
    assert np.array_equal(first.table.order, table_order(first.table, spec))
    builder._order_cost = 3600.0  # a sort as dear as an hour: never due while playing
    builder.record_tick(session.step())
    kept = builder.build(spec, playing=True, speed=0, ticks_per_second=0, notice=None)
    assert kept.table.order is first.table.order
    stepped = builder.build(
        spec, playing=False, speed=0, ticks_per_second=0, notice=None, fresh=True
    )
    assert np.array_equal(stepped.table.order, table_order(stepped.table, spec))
    other = TableSpec(sort_key="notional", descending=True)
    resorted = builder.build(other, playing=True, speed=0, ticks_per_second=0, notice=None)
    assert np.array_equal(resorted.table.order, table_order(resorted.table, other))


def test_the_event_log_writes_each_text_when_it_is_read_as_describe_does() -> None:
    session, builder = _cascade(300)
    log = builder.events.view()
    events = session.collector.events
    texts = log.text["text"]
    assert len(texts) == len(log) > 100
    assert texts._texts == {}  # type: ignore[attr-defined]  # nothing written yet
    described = [describe(e, builder.decimals)[2] for e in events[-len(log) :]]
    assert texts[-1] == described[-1] and texts[0] == described[0]
    assert texts[10:20] == described[10:20]
    assert list(texts) == described
    assert list(log.text["kind"]) == [type(e).__name__ for e in events[-len(log) :]]


def test_a_store_opened_part_way_shows_its_timelines_and_logs_so_far(tmp_path: Any) -> None:
    """A store reopened at a tick: its recorded prices and every fund movement before it, and
    the liquidations and events up to it, as a builder that watched the run from the start."""
    doc: dict[str, Any] = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = 3000
    session = Session.start(doc, tmp_path / "run.sqlite")
    watched = SnapshotBuilder(session)
    for _ in range(400):
        watched.record_tick(session.step())
    session.close()
    reopened = Session.open(tmp_path / "run.sqlite", at=300, read_only=True)
    try:
        builder = SnapshotBuilder(reopened)
        opened = builder.series
        # The logs and counters so far too: the liquidations up to the tick, as they were seen.
        liqs = {k: a[: builder.liqs.n] for k, a in builder.liqs.arrays.items()}
        seen = {k: a[: watched.liqs.n] for k, a in watched.liqs.arrays.items()}
        upto = seen["tick"] <= 300
        assert 0 < upto.sum() == builder.liqs.n
        for column in ("tick", "account", "contracts", "deficit"):
            assert np.array_equal(liqs[column], seen[column][upto]), column
        code = reopened.engine.currency_codes[0]
        assert builder.money[code]["liqs"] == int(upto.sum())
        events_seen = watched.events.arrays["tick"][: watched.events.n]
        assert builder.events.n == (events_seen <= 300).sum()
    finally:
        reopened.close()
    code, symbol = session.engine.currency_codes[0], session.engine.instruments[0].symbol
    fund, mark = opened[f"fund:{code}"], opened[f"mark:{symbol}"]
    assert np.array_equal(fund[:301], watched.series[f"fund:{code}"][:301])
    assert np.isnan(fund[301:]).all()  # nothing past the tick it was opened at
    assert len(np.unique(fund[:301])) > 1  # the crash moved the fund before tick 300
    recorded = np.flatnonzero(np.isfinite(mark[:300]))
    assert recorded.size > 10 and recorded[0] == 0
    assert np.array_equal(mark[recorded], watched.series[f"mark:{symbol}"][recorded])
