"""Table models over snapshot columns: Qt model contracts (qtmodeltester), numpy sorting and
filtering, the large-table path through the engine thread, log growth, copy and CSV export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from console.models.logs import EventsModel, LiquidationsModel
from console.models.positions import COLUMNS, LOCAL_ORDER_MAX, PositionsModel
from core.scenario.builtin import resolve_scenario
from core.session.session import Session
from core.session.snapshot import PositionTable, Snapshot, TableSpec, table_order
from core.session.snapshot_builder import SnapshotBuilder
from tests.console.conftest import assert_copies_and_exports

KEYS = [c.key for c in COLUMNS]


@pytest.fixture(scope="module")
def snaps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Snapshot]:
    """The demo 2,500 ticks in (liquidations under way), and again 500 ticks later."""
    store = tmp_path_factory.mktemp("okx") / "run.sqlite"
    session = Session.start(resolve_scenario("okx-2018-btc0928"), store)
    builder = SnapshotBuilder(session)
    for _ in range(2500):
        builder.record_tick(session.step())
    first = builder.build(TableSpec(), playing=False, speed=0, ticks_per_second=0, notice=None)
    for _ in range(500):
        builder.record_tick(session.step())
    second = builder.build(TableSpec(), playing=False, speed=0, ticks_per_second=0, notice=None)
    session.close()
    assert len(first.liquidations) > 10 and len(second.liquidations) > len(first.liquidations)
    return first, second


def feed_logs(model: Any, snap: Snapshot, log: str) -> None:
    model.set_log(
        getattr(snap, log),
        account_ids=snap.table.account_ids,
        symbols=snap.instruments,
        currencies=snap.table.currencies,
        decimals={o.code: o.decimals for o in snap.overview},
        start_epoch=snap.start_epoch,
        tick_seconds=snap.tick_seconds,
    )


def shown(model: PositionsModel, key: str) -> np.ndarray:
    assert model.table is not None
    return np.asarray(model.table.columns[key])[model.order]


def test_positions_model_passes_the_model_tester(qtmodeltester: Any, snaps: Any) -> None:
    model = PositionsModel()
    # The tester walks every row on each check: a riskiest slice of the demo's book keeps it to
    # seconds; every change below is still checked signal by signal as the tester stays connected.
    model.set_spec(replace(model.spec, max_margin_ratio=1.5))
    model.set_table(snaps[0].table)
    assert 0 < model.rowCount() < len(snaps[0].table)
    qtmodeltester.check(model, force_py=True)
    before = model.rowCount()
    model.set_spec(replace(model.spec, max_margin_ratio=2.0))  # rows come: inserted at the end
    model.set_table(snaps[1].table)
    assert model.rowCount() > before
    model.sort(KEYS.index("notional"), Qt.SortOrder.DescendingOrder)
    model.set_spec(replace(model.spec, open_only=False))
    assert model.rowCount() < len(snaps[1].table)


@pytest.mark.parametrize("log", ["liquidations", "events"])
def test_log_models_pass_the_model_tester(qtmodeltester: Any, snaps: Any, log: str) -> None:
    model = LiquidationsModel() if log == "liquidations" else EventsModel()
    feed_logs(model, snaps[0], log)
    qtmodeltester.check(model, force_py=True)
    feed_logs(model, snaps[1], log)  # growth: rows inserted at the top
    model.set_filter()
    feed_logs(model, snaps[0], log)  # a seek back: the log shrinks
    assert model.rowCount() == len(getattr(snaps[0], log))


def test_account_positions_model_passes_the_model_tester(qtmodeltester: Any, snaps: Any) -> None:
    account = PositionsModel(account=snaps[0].table.account_ids.index("mm-1"))
    account.set_table(snaps[0].table)
    qtmodeltester.check(account, force_py=True)
    assert account.rowCount() >= 1
    account.set_table(snaps[1].table)
    account.set_account(snaps[0].table.account_ids.index("mm-2"))


@pytest.mark.parametrize("key", ["margin_ratio", "notional", "equity", "distance_pct", "contracts"])
def test_sort_by_column_both_ways(snaps: Any, key: str) -> None:
    model = PositionsModel()
    model.set_table(snaps[0].table)
    column = KEYS.index(key)
    model.sort(column, Qt.SortOrder.AscendingOrder)
    values = shown(model, key).astype(float)
    finite = values[~np.isnan(values)]
    assert np.all(np.diff(finite) >= 0)
    assert not np.isnan(values[: finite.size]).any()  # NaN last
    model.sort(column, Qt.SortOrder.DescendingOrder)
    values = shown(model, key).astype(float)
    finite = values[~np.isnan(values)]
    assert np.all(np.diff(finite) <= 0)
    assert model.rowCount() == int((snaps[0].table.columns["contracts"] > 0).sum())


def test_sort_by_account_name_matches_python(snaps: Any) -> None:
    model = PositionsModel()
    model.set_table(snaps[0].table)
    model.sort(KEYS.index("account"), Qt.SortOrder.AscendingOrder)
    names = [model.cell_text(r, 0) for r in range(model.rowCount())]
    assert names == sorted(names)


def test_filters_are_numpy_masks(snaps: Any) -> None:
    table = snaps[0].table
    model = PositionsModel()
    model.set_table(table)
    model.set_spec(replace(model.spec, text="MM-"))
    assert model.rowCount() > 0
    assert all("mm-" in model.cell_text(r, 0) for r in range(model.rowCount()))
    model.set_spec(TableSpec(max_margin_ratio=1.2, min_notional=0.5))
    ratios, notional = shown(model, "margin_ratio"), shown(model, "notional")
    assert np.all(ratios <= 1.2) and np.all(notional >= 0.5)
    expected = (
        (table.columns["contracts"] > 0)
        & (table.columns["margin_ratio"] <= 1.2)
        & (table.columns["notional"] >= 0.5)
    ).sum()
    assert model.rowCount() == expected
    model.set_spec(TableSpec(open_only=False))
    assert model.rowCount() == len(table)


def synthetic_table(n: int, spec: TableSpec, seed: int = 1) -> PositionTable:
    rng = np.random.default_rng(seed)
    ratio = rng.lognormal(0.5, 1.0, n)
    ratio[rng.integers(0, n, n // 100)] = np.nan
    cols = {k: np.zeros(n) for k in KEYS}
    cols.update(
        account=np.arange(n) % 1000,
        symbol=np.zeros(n, dtype=np.int64),
        side=np.where(np.arange(n) % 2, 1, -1),
        contracts=rng.integers(0, 5, n),
        margin_ratio=ratio,
        notional=rng.random(n),
        flags=np.zeros(n, dtype=np.int16),
    )
    table = PositionTable(
        tuple(f"acct-{i:04d}" for i in range(1000)),
        ("SYM",),
        ("BTC",),
        MappingProxyType(cols),
        np.zeros(0, dtype=np.int64),
        spec,
    )
    return replace(table, order=table_order(table, spec))


def test_table_order_agrees_with_python_sorted() -> None:
    table = synthetic_table(5000, TableSpec(open_only=True))
    cols = table.columns
    rows = [r for r in range(len(table)) if cols["contracts"][r] > 0]
    expected = sorted(
        rows, key=lambda r: (np.isnan(cols["margin_ratio"][r]), cols["margin_ratio"][r], r)
    )
    assert table.order.tolist() == expected


def test_large_tables_are_ordered_on_the_engine_thread(qtbot: Any) -> None:
    n = LOCAL_ORDER_MAX + 50_000
    spec = TableSpec()
    model = PositionsModel()
    model.set_table(synthetic_table(n, spec))
    before = model.order.copy()
    new_spec = replace(spec, sort_key="notional", descending=True)
    with qtbot.waitSignal(model.spec_changed) as blocker:
        model.sort(KEYS.index("notional"), Qt.SortOrder.DescendingOrder)
    assert blocker.args == [new_spec]
    assert np.array_equal(model.order, before)  # not re-sorted on the UI thread
    model.set_table(synthetic_table(n, new_spec, seed=2))  # the engine thread's answer
    assert np.all(np.diff(shown(model, "notional")) <= 0)


def test_liquidation_filters_and_growth(qtbot: Any, snaps: Any) -> None:
    first, second = snaps
    model = LiquidationsModel()
    feed_logs(model, first, "liquidations")
    assert model.rowCount() == len(first.liquidations)
    newest = model.cell_text(0, 0)
    with qtbot.waitSignal(model.rowsInserted):
        feed_logs(model, second, "liquidations")
    assert model.rowCount() == len(second.liquidations)
    assert model.cell_text(0, 0) >= newest  # newest first
    model.set_filter(side=1)
    assert model.rowCount() > 0
    assert all(model.cell_text(r, 3) == "long" for r in range(model.rowCount()))
    model.set_filter(min_contracts=10_000)
    sizes = [int(model.cell_text(r, 4).replace(",", "")) for r in range(model.rowCount())]
    assert all(s >= 10_000 for s in sizes)
    account = model.cell_text(0, 1) if model.rowCount() else "mm-1"
    model.set_filter(text=account)
    assert all(account in model.cell_text(r, 1) for r in range(model.rowCount()))


def test_events_filter_by_kind_and_account(snaps: Any) -> None:
    snap = snaps[0]
    model = EventsModel()
    feed_logs(model, snap, "events")
    kinds = snap.events.text["kind"][: len(snap.events)]  # the view is the log's first n rows
    assert "LiquidationFilled" in kinds
    model.set_filter(kind="LiquidationFilled")
    assert model.rowCount() == kinds.count("LiquidationFilled") == len(snap.liquidations)
    mm1 = snap.table.account_ids.index("mm-1")
    mine = EventsModel(account=mm1)
    feed_logs(mine, snap, "events")
    assert mine.rowCount() == int((snap.events.columns["account"] == mm1).sum())
    assert all(mine.cell_text(r, 2) == "mm-1" for r in range(mine.rowCount()))


def test_csv_export_and_copy(qtbot: Any, snaps: Any, tmp_path: Path) -> None:
    from console.widgets.table import DataTable

    model = PositionsModel()
    model.set_table(snaps[0].table)
    model.set_spec(TableSpec(max_margin_ratio=1.5))
    view = DataTable(model, "accounts")
    qtbot.addWidget(view)
    assert_copies_and_exports(qtbot, view, tmp_path)


def test_the_instrument_tooltip_names_its_margin_convention() -> None:
    table = replace(
        synthetic_table(10, TableSpec()), conventions=("entry value, close fee 0.075%",)
    )
    model = PositionsModel()
    model.set_table(table)
    symbol = [c.key for c in model.columns].index("symbol")
    tip = model.data(model.index(0, symbol), Qt.ItemDataRole.ToolTipRole)
    assert tip == "SYM: margin convention entry value, close fee 0.075%"


def test_a_table_without_conventions_shows_mark() -> None:
    table = synthetic_table(10, TableSpec())
    assert table.convention_of(0) == "mark"


def test_a_selection_follows_its_position_when_rows_move_come_or_go(qtbot: Any, snaps: Any) -> None:
    from PySide6.QtCore import QItemSelectionModel
    from PySide6.QtWidgets import QTableView

    model = PositionsModel()
    model.set_table(snaps[0].table)
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    riskiest = np.flatnonzero(shown(model, "margin_ratio") <= 3.0)
    chosen = int(riskiest[len(riskiest) // 2])
    position = int(model.order[chosen])
    name = model.account_name(chosen)
    flags = (
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
    )
    view.selectionModel().setCurrentIndex(model.index(chosen, 0), flags)

    def selected() -> list[int]:
        return sorted({i.row() for i in view.selectionModel().selectedIndexes()})

    model.sort(KEYS.index("notional"), Qt.SortOrder.DescendingOrder)  # rows rearranged
    row = int(np.flatnonzero(model.order == position)[0])
    assert row != chosen and selected() == [row]
    assert view.currentIndex().row() == row and model.account_name(row) == name
    model.set_spec(replace(model.spec, max_margin_ratio=3.0))  # rows go
    assert position in model.order
    row = int(np.flatnonzero(model.order == position)[0])
    assert selected() == [row] and view.currentIndex().row() == row
    model.set_spec(replace(model.spec, max_margin_ratio=None))  # rows come
    row = int(np.flatnonzero(model.order == position)[0])
    assert selected() == [row]
    model.set_spec(replace(model.spec, text="no such account"))  # the position goes
    assert model.rowCount() == 0 and selected() == []


def test_a_paint_asks_every_role_of_a_cell_at_once_and_gets_what_data_answers(
    snaps: Any,
) -> None:
    """multiData answers from the row's cells made once per row; after a new table, a new order
    and a new theme it still answers exactly what `data` does, role by role."""
    from PySide6.QtCore import QModelRoleData, QModelRoleDataSpan

    roles = [
        Qt.ItemDataRole.DisplayRole,
        Qt.ItemDataRole.TextAlignmentRole,
        Qt.ItemDataRole.BackgroundRole,
        Qt.ItemDataRole.ForegroundRole,
        Qt.ItemDataRole.ToolTipRole,
        Qt.ItemDataRole.UserRole,
        Qt.ItemDataRole.FontRole,
        Qt.ItemDataRole.DecorationRole,
        Qt.ItemDataRole.CheckStateRole,
    ]
    model = PositionsModel()

    def check() -> int:
        answered = 0
        for r in range(0, model.rowCount(), max(1, model.rowCount() // 40)):
            for c in range(len(COLUMNS)):
                index = model.index(r, c)
                for role in roles:
                    asked = QModelRoleData(int(role))
                    model.multiData(index, QModelRoleDataSpan(asked))
                    assert asked.data() == model.data(index, role), (r, c, role)
                    answered += asked.data() is not None
        return answered

    model.set_table(snaps[0].table)
    assert check() > 0
    model.set_table(snaps[1].table)  # same rows, later values: the cells are made again
    check()
    model.sort(KEYS.index("upnl"), Qt.SortOrder.DescendingOrder)
    check()
    model.set_theme("dark")
    check()
    backgrounds = (
        model.data(model.index(r, 0), Qt.ItemDataRole.BackgroundRole)
        for r in range(model.rowCount())
    )
    shown_colours = {None if b is None else b.name() for b in backgrounds}
    assert len(shown_colours) > 1  # some rows are banded: the colour answer is exercised
