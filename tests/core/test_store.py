"""The store: what a run writes, replay and seek from snapshots, operator commands in the journal,
recovery after kill -9, clear errors for files that are not stores, queries and export."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq
import pytest
import sqlite_utils

from console.cli.main import main
from core.desk.queries import DeskQueries, ReportRange
from core.model.errors import InputError
from core.scenario.builtin import builtin_scenarios, resolve_scenario
from core.session.session import BIG_BOOK, Session
from core.store import queries
from core.store.schema import SCHEMA_VERSION, check_new, connect, connect_read_only, store_uri
from core.store.store import Store
from tests.core.conftest import log_in

ROOT = Path(__file__).resolve().parents[2]


def cascade_doc(accounts: int = 3000) -> dict[str, Any]:
    doc = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = accounts
    return doc


# The store records a state hash every 100 ticks; the run's own at ticks between snapshots.
SEEK_TICKS = (850, 5, 433, 899, 120)
HASHES_ON_THE_WAY: dict[int, str] = {}


@pytest.fixture(scope="module")
def cascade_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A small cut of the cascade run to the end with a store: (store path, result)."""
    path = tmp_path_factory.mktemp("store") / "cascade.sqlite"
    session = Session.start(cascade_doc(), path)
    while not session.finished:
        session.step()
        if session.tick in SEEK_TICKS:
            HASHES_ON_THE_WAY[session.tick] = session.engine.state_hash()
    result = session.result()
    session.close()
    return path, result


def test_a_run_writes_its_events_and_result_figures(
    cascade_run: tuple[Path, dict[str, Any]],
) -> None:
    path, result = cascade_run
    store = Store.open(path)
    db = store.db
    assert db["liquidations"].count == len(result["liquidations"]) > 100
    assert db["adl"].count == len(result["adl"])
    assert store.head_tick() == 900
    assert store.journal_gaps() == []
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    first = result["liquidations"][0]
    row = next(db["liquidations"].rows_where(order_by="seq", limit=1))
    assert (row["account"], row["contracts"], row["fill_price"]) == (
        first["account"],
        first["contracts"],
        first["fill_price"],
    )
    fund = list(db["fund_history"].rows_where(order_by="seq"))
    end = result["insurance_fund"]["USDT"]["end"]
    assert fund and fund[-1]["balance_after"] == int(Decimal(end) * 10**6)
    assert store.recorded_hashes()[900] == result["state_hash"]
    store.close()


def test_replay_rebuilds_the_run_state_hash(
    cascade_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, result = cascade_run
    assert main(["replay", str(path)]) == 0
    assert result["state_hash"] in capsys.readouterr().out


def test_seek_back_and_forth_gives_the_recorded_states(
    cascade_run: tuple[Path, dict[str, Any]],
) -> None:
    path, result = cascade_run
    session = Session.open(path)
    for tick in SEEK_TICKS:
        session.seek(tick)
        assert session.tick == tick
        assert session.engine.state_hash() == HASHES_ON_THE_WAY[tick]
        assert not session.live or tick == session.head
    session.seek(900)
    assert session.result()["state_hash"] == result["state_hash"]
    session.close()


def test_a_live_command_is_journaled_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "two.sqlite"
    session = Session.start(builtin_scenarios()["two-traders"], path)
    session.step()
    session.flush()  # the writer thread shares the store's connection until it has caught up
    assert session.store is not None
    log_in(session.store.db, "alice")
    session.submit(
        {"operator": "alice", "action": "warn", "account": "B", "message": "watch", "reason": "r"}
    )
    session.submit({"operator": "alice", "action": "freeze", "account": "B", "reason": "check"})
    for _ in range(5):
        session.step()
    assert [a["action"] for a in session.result()["actions"]] == ["warn", "freeze"]
    expected = session.engine.state_hash()
    session.close()
    reopened = Session.open(path)
    assert reopened.tick == 6
    assert reopened.engine.state_hash() == expected
    assert [a["action"] for a in reopened.result()["actions"]] == ["warn", "freeze"]
    reopened.close()


def test_a_bad_command_names_the_field_and_journals_nothing(tmp_path: Path) -> None:
    path = tmp_path / "two.sqlite"
    session = Session.start(builtin_scenarios()["two-traders"], path)
    with pytest.raises(InputError, match=r"command\.account"):
        session.submit({"operator": "alice", "action": "freeze", "account": "Z", "reason": "r"})
    assert session.store is not None
    assert session.store.pending_commands(0) == []
    session.close()


def test_a_command_given_before_a_crash_applies_after_resume(tmp_path: Path) -> None:
    path = tmp_path / "two.sqlite"
    session = Session.start(builtin_scenarios()["two-traders"], path)
    session.step()
    session.flush()  # the writer thread shares the store's connection until it has caught up
    assert session.store is not None
    log_in(session.store.db, "alice")
    session.submit({"operator": "alice", "action": "freeze", "account": "B", "reason": "check"})
    session.close()  # as if killed before the next tick
    resumed = Session.open(path)
    resumed.step()
    assert [a["action"] for a in resumed.result()["actions"]] == ["freeze"]
    resumed.close()


# ----- recovery ---------------------------------------------------------------------------


def _run_and_kill(scenario: Path, store: Path, after: float) -> None:
    """Start `risk-console run --db` in its own process and kill -9 it after `after` seconds."""
    command = ["run", str(scenario), "--out", os.devnull, "--db", str(store)]
    process = subprocess.Popen(
        [sys.executable, "-m", "console.cli", *command],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(after)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def crash_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, str], str]:
    """The scenario file of the crash test, the state hash of an uninterrupted run at every tick,
    and its final result's state hash."""
    folder = tmp_path_factory.mktemp("crash")
    scenario = folder / "cascade.json"
    scenario.write_text(json.dumps(cascade_doc(2000)))
    session = Session.start(scenario, None)
    hashes = {session.tick: session.engine.state_hash()}
    while not session.finished:
        session.step()
        hashes[session.tick] = session.engine.state_hash()
    final = session.result()["state_hash"]
    return scenario, hashes, final


def _check_recovery(case: tuple[Path, dict[int, str], str], store: Path, after: float) -> None:
    scenario, hashes, final = case
    _run_and_kill(scenario, store, after)
    try:
        session = Session.open(store)
    except InputError as error:
        # Killed before its first tick was in: there is no store (it appears whole or not at all).
        assert "no store at" in str(error)
        return
    assert session.store is not None
    assert session.store.journal_gaps() == []
    session.engine.ledger.check()
    assert session.engine.state_hash() == hashes[session.tick]
    session.run_to_end()
    assert session.result()["state_hash"] == final
    session.close()


@pytest.mark.parametrize("after", [0.9, 1.6, 2.4])
def test_a_run_killed_mid_tick_resumes_to_the_same_state(
    crash_case: tuple[Path, dict[int, str], str], tmp_path: Path, after: float
) -> None:
    _check_recovery(crash_case, tmp_path / "killed.sqlite", after)


@pytest.mark.slow
def test_fifty_kills_at_random_moments_all_recover(
    crash_case: tuple[Path, dict[int, str], str], tmp_path: Path
) -> None:
    moments = random.Random(7).sample(range(50, 400), 50)
    for n, centiseconds in enumerate(moments):
        _check_recovery(crash_case, tmp_path / f"killed-{n}.sqlite", centiseconds / 100)


def test_resume_command_finishes_the_run(
    crash_case: tuple[Path, dict[int, str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, _, final = crash_case
    store = tmp_path / "partial.sqlite"
    session = Session.start(scenario, store)
    for _ in range(300):
        session.step()
    session.close()
    out = tmp_path / "result.json"
    assert main(["resume", str(store), "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["state_hash"] == final


# ----- files that are not stores ----------------------------------------------------------


def test_files_that_are_not_stores_get_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE things (a)")
    newer = tmp_path / "newer.sqlite"
    connect(newer, create=True).conn.close()
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    cases = {
        garbage: "not a readable SQLite store",
        foreign: "another program",
        newer: f"schema version {SCHEMA_VERSION + 1}",
        tmp_path / "missing.sqlite": "no store at",
    }
    for path, message in cases.items():
        before = path.read_bytes() if path.exists() else None
        assert main(["replay", str(path)]) == 2
        assert message in capsys.readouterr().err
        assert (path.read_bytes() if path.exists() else None) == before


def test_a_store_path_with_uri_characters_opens(tmp_path: Path) -> None:
    # Unescaped in a URI, this folder name would cut the path at `?` (opening the decoy `a`),
    # start a fragment at `#` and read `%20` as a space.
    folder = tmp_path / "a?b#c%20d"
    folder.mkdir()
    path = folder / "run.sqlite"
    decoy = tmp_path / "a"
    other = Session.start({**json.loads(builtin_scenarios()["two-traders"].read_text()),
                           "start": "2018-07-30T00:00:00Z"}, decoy)  # fmt: skip
    other.close()
    session = Session.start(builtin_scenarios()["two-traders"], path)
    for _ in range(3):
        session.step()
    expected = session.engine.state_hash()
    session.close()
    uri = store_uri(path, "ro")
    assert unquote(urlparse(uri).path) == str(path.resolve()) and urlparse(uri).query == "mode=ro"
    conn = connect_read_only(path)
    try:
        assert DeskQueries(sqlite_utils.Database(conn)).report_range() == ReportRange(
            "2018-07-31T00:00:00Z", "2018-07-31T00:00:03Z"
        )
    finally:
        conn.close()
    with pytest.raises(InputError, match="exists already"):
        check_new(path)
    reopened = Session.open(path)
    assert reopened.tick == 3 and reopened.engine.state_hash() == expected
    reopened.close()
    with pytest.raises(sqlite3.OperationalError):
        connect_read_only(folder / "missing.sqlite").execute("SELECT 1")
    assert sorted(p.name for p in folder.iterdir()) == ["run.sqlite"]


def test_a_truncated_store_is_refused(
    cascade_run: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = cascade_run
    damaged = tmp_path / "damaged.sqlite"
    data = path.read_bytes()
    damaged.write_bytes(data[: len(data) // 3])
    assert main(["replay", str(damaged)]) == 2
    assert "STORE" in capsys.readouterr().err


def test_a_new_run_never_overwrites_a_store(
    cascade_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, _ = cascade_run
    before = path.stat().st_size
    assert main(["run", "two-traders", "--out", str(tmp_path / "r.json"), "--db", str(path)]) == 2
    assert path.stat().st_size == before


# ----- queries and export -----------------------------------------------------------------


def test_top_accounts_by_notional_and_risk(cascade_run: tuple[Path, dict[str, Any]]) -> None:
    path, _ = cascade_run
    store = Store.open(path)
    by_notional = queries.top_accounts(store.db, "USDT", "notional", limit=20)
    notionals = [r["notional"] for r in by_notional]
    assert len(notionals) == 20 and notionals == sorted(notionals, reverse=True)
    everything = list(
        store.db.query("SELECT max(notional) AS m FROM account_state WHERE positions > 0")
    )
    assert notionals[0] == everything[0]["m"]
    page2 = queries.top_accounts(store.db, "USDT", "notional", limit=20, offset=20)
    assert page2[0]["notional"] <= notionals[-1]
    by_risk = [r["margin_ratio"] for r in queries.top_accounts(store.db, "USDT", "risk", limit=20)]
    assert by_risk == sorted(by_risk)
    with pytest.raises(InputError, match="by"):
        queries.top_accounts(store.db, "USDT", "size")
    with pytest.raises(InputError, match="limit"):
        queries.top_accounts(store.db, "USDT", limit=0)
    store.close()


def test_account_history_fund_history_and_liquidations_in_a_range(
    cascade_run: tuple[Path, dict[str, Any]],
) -> None:
    path, result = cascade_run
    store = Store.open(path)
    liquidated = result["liquidations"][3]
    history = queries.account_history(store.db, liquidated["account"])
    kinds = {h["kind"] for h in history}
    assert {"LiquidationStarted", "LiquidationFilled"} <= kinds
    assert [h["tick"] for h in history] == sorted(h["tick"] for h in history)
    fund = queries.fund_history(store.db, "USDT", limit=10_000)
    assert len(fund) == store.db["fund_history"].count
    balances = [f["balance_after"] for f in fund]
    signed = {"surplus_in": 1, "injection": 1, "deficit_out": -1}
    for before, row, after in zip(balances, fund[1:], balances[1:], strict=False):
        assert after == before + signed[row["kind"]] * row["amount"]
    start, end = "2025-10-10T21:05:00Z", "2025-10-10T21:10:00Z"
    inside = queries.liquidations_between(store.db, start, end, limit=10_000)
    expected = [r for r in result["liquidations"] if start <= r["finished"] <= end]
    assert [(r["account"], r["contracts"]) for r in inside] == [
        (r["account"], r["contracts"]) for r in expected
    ]
    store.close()


def test_clawback_allocations_are_the_runs(tmp_path: Path) -> None:
    path = tmp_path / "two.sqlite"
    session = Session.start(builtin_scenarios()["two-traders"], path)
    session.run_to_end()
    clawback = session.result()["clawbacks"][0]
    session.close()
    store = Store.open(path)
    rows = queries.clawback_allocations(store.db, 1)
    assert [(r["account"], r["amount"]) for r in rows] == sorted(
        ((a["account"], int(Decimal(a["amount"]) * 10**8)) for a in clawback["allocations"]),
        key=lambda pair: -pair[1],
    )
    history = queries.account_history(store.db, rows[0]["account"])
    assert history[-1]["kind"] == "ClawbackDeduction"
    assert history[-1]["amount"] == -rows[0]["amount"]
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_round_trips(
    cascade_run: tuple[Path, dict[str, Any]], tmp_path: Path, fmt: str
) -> None:
    path, _ = cascade_run
    out = tmp_path / f"liquidations.{fmt}"
    assert (
        main(["export", str(path), "--table", "liquidations", "--format", fmt, "--out", str(out)])
        == 0
    )
    store = Store.open(path)
    stored = list(store.db["liquidations"].rows_where(order_by="seq"))
    store.close()
    if fmt == "json":
        exported = json.loads(out.read_text())
    else:
        exported = list(csv.DictReader(io.StringIO(out.read_text())))
        stored = [{k: "" if v is None else str(v) for k, v in row.items()} for row in stored]
    assert exported == stored


def test_export_never_writes_password_material(tmp_path: Path) -> None:
    from core.desk.operators import ensure_demo_operators

    path = tmp_path / "two.sqlite"
    Session.start(builtin_scenarios()["two-traders"], path).close()
    store = Store.open(path)
    ensure_demo_operators(store.db, at="2026-01-01T00:00:00Z")
    buffer = io.StringIO()
    queries.export_table(store.db, "operators", "json", buffer)
    rows = json.loads(buffer.getvalue())
    assert rows and all("password_hash" not in r and "salt" not in r for r in rows)
    store.close()


def test_threshold_changes_are_journaled_and_alerts_stored(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    session = Session.start(cascade_doc(1500), path)
    for _ in range(10):
        session.step()
    with pytest.raises(InputError, match="near_liquidation"):
        session.set_thresholds({"near_liquidation": "-1"})
    before, after = session.set_thresholds({"near_liquidation": "1.5"})
    assert (before.near_liquidation, after.near_liquidation) == (1.2, 1.5)
    for _ in range(400):
        session.step()
    expected = session.engine.state_hash()
    raised = len(session.result()["alerts"])
    session.close()
    reopened = Session.open(path)
    assert reopened.engine.surveillance.thresholds.near_liquidation == 1.5
    assert reopened.engine.state_hash() == expected
    assert reopened.store is not None
    assert reopened.store.db["alerts"].count == raised > 0
    reopened.close()


def test_a_store_deleted_under_its_wal_leaves_nothing_in_the_next_one_at_that_path(
    tmp_path: Path,
) -> None:
    """An operator removes a store but not its -wal and -shm (another process still had it
    open): a new store at that path must not take the old run's pages from them."""
    path = tmp_path / "desk.sqlite"
    old = Session.start(resolve_scenario("two-traders"), path)
    for _ in range(50):
        old.step()
    old.flush()
    stale = {s: (tmp_path / f"desk.sqlite{s}").read_bytes() for s in ("-wal", "-shm")}
    old.close()
    for leftover in tmp_path.glob("desk.sqlite*"):
        leftover.unlink()
    for suffix, data in stale.items():
        (tmp_path / f"desk.sqlite{suffix}").write_bytes(data)
    new = Session.start(resolve_scenario("two-traders"), path)
    for _ in range(100):
        new.step()
    new.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT max(tick) FROM journal").fetchone() == (100,)


@pytest.mark.slow  # a book above BIG_BOOK (9 s)
def test_a_big_books_account_table_is_written_when_exported(tmp_path: Path) -> None:
    """Over BIG_BOOK positions no run or close writes the per-account table; its export brings it
    to the store's last tick."""
    path = tmp_path / "big.sqlite"
    session = Session.start(cascade_doc(BIG_BOOK + 1), path)
    for _ in range(3):
        session.step()
    expected = sorted(queries.account_state_rows(session.engine))
    session.close()
    store = Store.open(path)
    assert store.db["account_state"].count == 0
    store.close()

    out = tmp_path / "accounts.parquet"
    argv = ["export", str(path), "--table", "account_state", "--format", "parquet"]
    assert main([*argv, "--out", str(out)]) == 0
    exported = pq.read_table(out)
    assert exported.num_rows == len(expected) > BIG_BOOK // 2
    assert set(exported.column("tick").to_pylist()) == {3}
    store = Store.open(path)
    assert sorted(store.db.execute("SELECT * FROM account_state").fetchall()) == expected
    store.close()
