"""Exchange data in: ccxt tiers (every bracket of 349 Binance perpetuals), ccxt candles into price
paths, positions from CSV and Parquet, and the built-in binance-xrp-2021-11 built from them."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from assets.scenarios import make_binance_xrp_2021_11 as make
from console.cli.main import main
from core.engine.facade import Engine
from core.engine.result import ResultCollector
from core.model.errors import InputError
from core.model.instruments import Instrument
from core.model.units import Currency
from core.scenario.build import BuildRequest, MarketSource, build_scenario
from core.scenario.builtin import builtin_scenarios
from core.scenario.ccxt import candle_path, candle_seconds, read_candles, read_tiers
from core.scenario.parse import load_scenario, parse_scenario
from core.scenario.positions_import import read_positions
from tests.core.test_state_hashes import RECORDED

DATA = make.DATA
TIERS = DATA / "binance-usdm-leverage-tiers-2024-10.json"
CANDLES = DATA / "binance-xrpusdt-perp-5m-2021-11.json"
MARKS = DATA / "binance-xrpusdt-perp-mark-1h-2021-11.json"
SYMBOL = "XRP/USDT:USDT"


def test_the_derived_maintenance_amount_is_the_published_one_in_every_bracket() -> None:
    sources = read_tiers(TIERS)
    assert len(sources) == 349
    raw = json.loads(TIERS.read_text())
    brackets = 0
    for symbol, source in sources.items():
        published = [Decimal(tier["info"]["cum"]) for tier in raw[symbol]]
        derived = [level.maintenance_amount for level in source.derived().levels]
        assert derived == published, symbol
        # an instrument on the table: maintenance is continuous at every cap
        inst = Instrument(symbol, "linear", Decimal(1), source.currency, Decimal("0.0001"),
                          None, symbol, symbol, source.table())  # fmt: skip
        for level, above in zip(inst.tiers.levels, inst.tiers.levels[1:], strict=False):
            assert level.max is not None
            at_cap = Fraction(level.max) * Fraction(level.mmr) - Fraction(level.maintenance_amount)
            assert at_cap == Fraction(level.max) * Fraction(above.mmr) - Fraction(
                above.maintenance_amount
            )
        brackets += len(derived)
    assert brackets == 2805


def test_a_published_amount_that_differs_names_symbol_and_bracket(tmp_path: Path) -> None:
    raw = json.loads(TIERS.read_text())
    raw[SYMBOL][3]["info"]["cum"] = "1686.0"
    bad = tmp_path / "tiers.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"tiers.json XRP/USDT:USDT bracket 4 info.cum.*1686"):
        read_tiers(bad)


def test_the_path_runs_through_every_candle_in_the_order_that_fits_it() -> None:
    candles = read_candles(CANDLES)
    seconds = candle_seconds(candles, CANDLES)
    points = dict(candle_path(candles, seconds))
    quarter = timedelta(seconds=seconds // 4)
    for c in candles:
        first, second = points[c.time + quarter], points[c.time + 2 * quarter]
        assert {first, second} == {c.high, c.low}
        assert points[c.time] == c.open and points[c.time + 3 * quarter] == c.close
        if c.close > c.open:
            assert first == c.low  # a rising candle dips first
        elif c.close < c.open:
            assert first == c.high


def test_candles_out_of_time_order_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    rows = json.loads(CANDLES.read_text())
    rows[10], rows[11] = rows[11], rows[10]
    bad = tmp_path / "candles.json"
    bad.write_text(json.dumps(rows))
    out = tmp_path / "out.json"
    argv = ["scenario", "build", "--out", str(out), "--name", "x", "--tiers", str(TIERS),
            "--candles", f"{SYMBOL}={bad}"]  # fmt: skip
    assert main(argv) == 2
    assert not out.exists()
    with pytest.raises(InputError, match=r"candles.json row 12 column time: .*time order"):
        read_candles(bad)


def _scenario(**changes: object) -> dict:
    market = MarketSource(SYMBOL, CANDLES, name="XRPUSDT")
    request = BuildRequest(name="t", tiers=TIERS, markets=(market,), **changes)  # type: ignore[arg-type]
    return build_scenario(request)


def _instruments() -> tuple[list[Instrument], list[Currency]]:
    scenario = parse_scenario(_scenario())
    return list(scenario.instruments.values()), list(scenario.currencies.values())


HEADER = "account,symbol,side,contracts,entry_price,margin_mode,margin,leverage,balance\n"
GOOD = [
    "whale-1,XRPUSDT,long,2000000,1.1893,isolated,240000,10,",
    "whale-2,XRPUSDT,short,2000000,1.19,cross,,5,1000000.5",
    "fish,XRPUSDT,short,1000,1.2001,cross,,20,100",
]


def _csv(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "positions.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def test_positions_from_csv_and_parquet_give_the_same_columns(tmp_path: Path) -> None:
    instruments, currencies = _instruments()
    from_csv = read_positions(_csv(tmp_path, GOOD), instruments, currencies)
    assert from_csv.account_ids == ("whale-1", "whale-2", "fish")
    assert from_csv.entry_units.tolist() == [118930000, 119000000, 120010000]
    assert from_csv.iso_margin.tolist() == [240000_000000, 0, 0]
    assert from_csv.balances[:, 0].tolist() == [0, 1000000_500000, 100_000000]
    table = pacsv.read_csv(tmp_path / "positions.csv")  # typed by inference: ints, doubles
    table = table.set_column(4, "entry_price", pa.array(["1.1893", "1.19", "1.2001"]).cast(
        pa.decimal128(20, 6)))  # fmt: skip
    table = table.set_column(6, "margin", table.column("margin").cast(pa.decimal128(24, 2)))
    table = table.set_column(8, "balance", pa.array(["0", "1000000.5", "100"]).cast(pa.string()))
    pq.write_table(table.drop_columns([]), tmp_path / "positions.parquet")
    from_parquet = read_positions(tmp_path / "positions.parquet", instruments, currencies)
    for name in ("account", "instrument", "side", "contracts", "entry_units", "iso_margin"):
        assert np.array_equal(getattr(from_csv, name), getattr(from_parquet, name)), name


@pytest.mark.parametrize(
    ("rows", "header", "where"),
    [
        (GOOD, HEADER.replace(",leverage", ""), r"positions.csv column leverage: expected this "),
        ([GOOD[0], "fish,XRPUSDT,short,1000,1.2x,cross,,20,"], HEADER,
         r"positions.csv row 2 \(line 3\) column entry_price: expected a plain decimal.*'1.2x'"),
        ([*GOOD, "whale-1,XRPUSDT,short,5,1.2,cross,,20,"], HEADER,
         r"row 4 \(line 5\) column symbol: .*second XRPUSDT position of 'whale-1' .*row 1\)"),
        ([GOOD[0], "fish,BTCUSDT,short,1000,1.2,cross,,20,"], HEADER,
         r"row 2 \(line 3\) column symbol: expected one of XRPUSDT, found 'BTCUSDT'"),
        ([GOOD[0], "fish,XRPUSDT,short,1000,1.2,cross,,20,"], HEADER.replace("side", "x-side"),
         r"column side: expected this required column"),
        ([GOOD[0], "fish,XRPUSDT,short,1000,1.200000001,cross,,20,"], HEADER,
         r"row 2 \(line 3\) column entry_price: expected at most 8 decimals"),
        ([GOOD[0], "fish,XRPUSDT,short,1000,1.2,isolated,,20,"], HEADER,
         r"row 2 \(line 3\) column margin: expected the isolated margin"),
        ([GOOD[0], "fish,XRPUSDT,short,ten,1.2,cross,,20,"], HEADER,
         r"row 2 \(line 3\) column contracts: expected a plain decimal"),
    ],
)  # fmt: skip
def test_a_bad_row_names_file_row_and_column_and_nothing_is_written(
    tmp_path: Path, rows: list[str], header: str, where: str
) -> None:
    instruments, currencies = _instruments()
    path = _csv(tmp_path, rows, header)
    with pytest.raises(InputError, match=where):
        read_positions(path, instruments, currencies)
    out = tmp_path / "out.json"
    argv = ["scenario", "build", "--out", str(out), "--name", "x", "--tiers", str(TIERS),
            "--candles", f"{SYMBOL}={CANDLES}", "--as", f"{SYMBOL}=XRPUSDT",
            "--positions", str(path)]  # fmt: skip
    assert main(argv) == 2
    assert not out.exists()


def test_imported_positions_run_beside_a_crowd(tmp_path: Path) -> None:
    doc = _scenario(positions=_csv(tmp_path, GOOD), crowd_accounts=50, crowd_seed=1,
                    insurance_fund={"USDT": Decimal(100000)})  # fmt: skip
    assert [a["id"] for a in doc["accounts"]] == ["whale-1", "whale-2", "fish"]
    assert doc["accounts"][0]["positions"][0]["margin"] == "240000"
    assert doc["accounts"][1]["balances"] == {"USDT": "1000000.5"}
    scenario = parse_scenario(doc)
    engine = Engine(scenario)
    assert len(engine.book) > 3
    assert engine.positions_at_start[0]["entry_price"] == "1.1893"


def test_mark_candles_pin_the_mark_over_the_span_both_files_cover() -> None:
    market = MarketSource(SYMBOL, CANDLES, name="XRPUSDT", mark_candles=MARKS)
    doc = build_scenario(BuildRequest(name="m", tiers=TIERS, markets=(market,)))
    marks = doc["market"]["marks"]["XRPUSDT"]
    index = doc["market"]["indices"]["XRPUSDT-index"]
    assert doc["start"] == marks[0][0] == index[0][0] == "2021-11-15T06:00:00Z"
    assert marks[1][1] == "1.20763"  # the first hourly mark candle dips first (it closes higher)
    assert index[-1][0] <= "2021-11-19T10:00:00Z"


def _xrp(crowd: int | None = None) -> dict:
    doc = json.loads(builtin_scenarios()["binance-xrp-2021-11"].read_text())
    if crowd is not None:
        doc["crowd"]["accounts"] = crowd
    return doc


@pytest.mark.slow  # a week of ticks (9 s); the path's order is checked without a run above
def test_the_real_week_runs_to_its_end_through_every_high_and_low() -> None:
    engine = Engine(parse_scenario(_xrp(crowd=100)))
    collector = ResultCollector(engine)
    seen: dict[object, float] = {engine.now: engine.index_now["XRPUSDT-index"]}
    for events in engine.run():
        collector.feed(events)
        seen[engine.now] = engine.index_now["XRPUSDT-index"]
    candles = read_candles(CANDLES)
    quarter = timedelta(seconds=75)
    for c in candles:
        assert {seen[c.time + quarter], seen[c.time + 2 * quarter]} == {float(c.high), float(c.low)}
    assert max(seen.values()) == 1.2214 and min(seen.values()) == 1.0145
    result = collector.result()
    assert result["ledger"]["balanced"]


def test_the_built_in_is_what_the_command_builds_from_the_data(tmp_path: Path) -> None:
    out = tmp_path / "xrp.json"
    assert main(make.arguments(DATA, out)) == 0
    assert json.loads(out.read_text()) == _xrp()


@pytest.mark.slow
def test_the_built_in_runs_to_its_end_balanced_at_its_recorded_hash() -> None:
    engine = Engine(load_scenario(builtin_scenarios()["binance-xrp-2021-11"]))
    collector = ResultCollector(engine)
    for events in engine.run():
        collector.feed(events)
    assert collector.result()["ledger"]["balanced"]
    assert engine.state_hash() == RECORDED["binance-xrp-2021-11"]


def test_a_stores_positions_export_as_parquet_and_read_back(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    # no crowd: the generator may give an account several rows in one symbol, which an import
    # refuses as a duplicate position
    doc = _scenario(positions=_csv(tmp_path, GOOD), end=datetime(2021, 11, 15, 2, tzinfo=UTC))
    scenario_file = tmp_path / "short.json"
    scenario_file.write_text(json.dumps(doc))
    store, out = tmp_path / "run.sqlite", tmp_path / "positions.parquet"
    assert main(["run", str(scenario_file), "--out", str(tmp_path / "r.json"), "--db", str(store),
                 "--quiet"]) == 0  # fmt: skip
    argv = ["export", str(store), "--table", "positions", "--format", "parquet", "--out", str(out)]
    assert main(argv) == 0
    table = pq.read_table(out)
    assert table.schema.field("entry_price").type == pa.decimal128(38, 8)
    assert table.column("account").to_pylist()[:3] == ["whale-1", "whale-2", "fish"]
    assert str(table.column("entry_price")[0].as_py()) == "1.18930000"
    engine = Engine(parse_scenario(doc))
    for _ in engine.run():
        pass
    instruments, currencies = list(engine.instruments), list(engine.currencies)
    back = read_positions(out, instruments, currencies)
    held = engine.book.contracts > 0
    assert back.contracts.tolist() == engine.book.contracts[held].tolist()
    assert back.entry_units.tolist() == engine.book.entry_units[held].tolist()
    assert back.iso_margin.tolist() == engine.book.iso_margin[held].tolist()


@pytest.mark.slow  # 16 s; the same week run through the engine stays in the default tier
def test_the_real_week_published_as_a_feed_reaches_the_same_state_hash() -> None:
    from core.feed.consumer import FeedRun
    from core.feed.publish import scenario_feed

    doc = _xrp(crowd=100)
    own = Engine(parse_scenario(json.loads(json.dumps(doc))))
    for _ in own.run():
        pass
    run = FeedRun()
    for seq, message in enumerate(scenario_feed(doc), 1):
        run.apply(seq, message)
    assert run.ended and run.refused == []
    assert run.engine is not None and run.engine.state_hash() == own.state_hash()
