"""What-if branches on the small two-traders store: no change gives the parent's end, the parent is
never written, bad input is one line with exit 2 and no branch, and the policies side by side."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.session.session import Session
from core.store.store import Store
from core.whatif import compare, runs
from core.whatif.branch import branch_dir, branch_path, list_branches
from tests.core.conftest import log_in


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished two-traders store (made once) and its end state's hash."""
    path = tmp_path_factory.mktemp("whatif") / "S.db"
    session = Session.start("assets/scenarios/two-traders.json", path)
    session.run_to_end()
    end = session.engine.state_hash()
    session.close()
    return path, end


@pytest.fixture
def parent(made: tuple[Path, str], tmp_path: Path) -> Path:
    """A copy of the store of its own for each test (the store is closed: its file is whole)."""
    path = tmp_path / "S.db"
    shutil.copyfile(made[0], path)
    return path


def _digest(path: Path) -> tuple[str, str]:
    """The store's bytes: its file and what its WAL holds (a reader in WAL mode may create the
    empty -wal and the -shm index beside it, as every SQLite reader does; neither is content)."""
    wal = path.with_name(path.name + "-wal")
    held = wal.read_bytes() if wal.exists() else b""
    return hashlib.sha256(path.read_bytes()).hexdigest(), hashlib.sha256(held).hexdigest()


def minor(text: str, decimals: int = 8) -> int:
    value = Decimal(text).scaleb(decimals)
    assert value == value.to_integral_value()
    return int(value)


def assert_covered(doc: dict[str, Any]) -> None:
    """Every run's deficit is exactly the sum of what covered it, in minor units."""
    for run in doc["runs"]:
        assert run["ledger_balanced"], run["name"]
        for d in (c["deficit"] for c in run["currencies"].values()):
            parts = ("fund", "injection", "clawback", "adl", "uncovered")
            assert minor(d["total"]) == sum(minor(d[p]) for p in parts), (run["name"], d)


def test_whatif_branch_without_changes_ends_with_the_parents_state_hash(
    parent: Path, made: tuple[Path, str]
) -> None:
    end = made[1]
    doc = runs.branch(parent, "1800", [], {}, name="same")
    original, same = doc["runs"]
    assert original["state_hash"] == same["state_hash"] == end
    assert same["changes"]["at"] == {"tick": 1800, "time": "2018-07-31T00:30:00Z"}
    assert [b.name for b in list_branches(parent)] == ["same"]
    # The branch is a store of its own: it reopens (snapshot at the fork plus its journal) to
    # the same end, and its result holds the parent's history before the fork too.
    session = Session.open(branch_path(parent, "same"), at=2000)
    assert session.engine.tick == 2000
    session.seek(session.engine.ticks_total - 1)
    assert session.engine.state_hash() == end
    assert len(session.result()["liquidations"]) == 1
    mine = session.result()
    session.close()
    # Every event before the fork came over (the parent's chunks are copied as stored).
    theirs = Session.open(parent, read_only=True)
    assert mine == theirs.result()
    theirs.close()
    assert_covered(doc)


def test_whatif_never_writes_the_parent_store(parent: Path) -> None:
    before = _digest(parent)
    runs.branch(parent, "0", [], {"deficit": "adl"}, name="adl")
    runs.branch(parent, "100", [], {}, name="later", with_names=("adl",))
    assert _digest(parent) == before


def test_whatif_carries_the_parents_journaled_commands(tmp_path: Path) -> None:
    """A command given in the console after the fork applies in the branch too, at its tick and
    with the authority it carried, so a branch with no changes still ends where the parent did."""
    path = tmp_path / "S.db"
    session = Session.start("assets/scenarios/two-traders.json", path)
    while session.tick < 100:
        session.step()
    assert session.store is not None
    log_in(session.store.db, "alice")
    session.submit(
        {"operator": "alice", "action": "warn", "account": "B", "message": "m", "reason": "r"}
    )
    session.run_to_end()
    end = session.engine.state_hash()
    session.close()
    doc = runs.branch(path, "50", [], {}, name="carry")
    assert doc["runs"][1]["state_hash"] == end


def test_whatif_adl_branch_moves_the_clawback_to_adl(parent: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    options = ["--at", "0", "--policy", "deficit=adl", "--name", "adl", "--quiet"]
    code = main(["whatif", str(parent), *options, "--out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    original, adl = (run["currencies"]["BTC"]["deficit"] for run in doc["runs"])
    assert original["clawback"] == "8" and original["adl"] == "0"
    assert adl["clawback"] == "0" and adl["adl"] == "8"
    (b,) = [row for row in doc["accounts"] if row["account"] == "B"]
    assert b["runs"]["original"]["paid"] == b["runs"]["adl"]["paid"] == "8"
    assert_covered(doc)


def test_whatif_policies_show_who_pays(parent: Path, tmp_path: Path) -> None:
    out = tmp_path / "policies.csv"
    assert main(["whatif", str(parent), "--policies", "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    totals = {r["run"]: r for r in rows if r["account"] == ""}
    assert set(totals) == {
        "original",
        "policies-clawback",
        "policies-adl",
        "policies-injection",
    }
    assert totals["policies-clawback"]["clawback"] == "8"
    assert totals["policies-adl"]["adl"] == "8"
    assert totals["policies-injection"]["injection"] == "8"
    assert totals["policies-injection"]["clawback"] == "0"
    b = {r["run"]: r for r in rows if r["account"] == "B"}
    assert b["policies-injection"]["paid"] == "0"
    assert b["policies-injection"]["difference"] == "8"  # B keeps what it would have paid


FREEZE_B = '{"operator": "x", "action": "freeze", "account": "B", "reason": "r"}'


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--at", "2018-07-31T00:00:00.5Z"], "--at"),
        (["--at", "2018-07-30T23:00:00Z"], "--at"),
        (["--at", "3601"], "--at"),
        (["--at", "2018-08-01T00:00:00Z"], "--at"),
        (["--at", "soon"], "--at"),
        (["--at", "10", "--action", "{not json"], "--action"),
        (["--at", "10", "--action", "no-such-file.json"], "--action"),
        (
            ["--at", "10", "--action", '{"operator": "x", "action": "fly", "reason": "r"}'],
            "--action[0].action",
        ),
        (["--at", "10", "--action", FREEZE_B.replace('"B"', '"Z"')], "--action[0].account"),
        (
            ["--at", "10", "--action", FREEZE_B[:-1] + ', "at": "2018-07-31T00:00:01Z"}'],
            "--action[0].at",
        ),
        (["--at", "10", "--policy", "deficit=socialize"], "--policy deficit"),
        (["--at", "10", "--policy", "fund_reservation=yes"], "--policy fund_reservation"),
        (["--at", "10", "--policy", "margin=cross"], "--policy"),
        (["--at", "10", "--name", "../escape"], "--name"),
        (["--at", "10", "--with", "nothing"], "--with"),
        (["--policies", "--at", "10"], "--at"),
    ],
)
def test_whatif_bad_input_names_the_option_and_leaves_no_branch(
    parent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    before = _digest(parent)
    code = main(["whatif", str(parent), *options, "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"risk-console: error: {named}: "), err
    assert not list(branch_dir(parent).glob("*.db")) if branch_dir(parent).exists() else True
    assert not (tmp_path / "c.json").exists()
    assert _digest(parent) == before


def test_whatif_a_branch_records_where_it_came_from(parent: Path) -> None:
    action = {"operator": "x", "action": "warn", "account": "B", "message": "m", "reason": "r"}
    runs.branch(parent, "2018-07-31T00:20:00Z", [action], {"deficit": "adl"}, name="warned")
    store = Store.open(branch_path(parent, "warned"), read_only=True)
    meta = json.loads(store.meta("whatif") or "{}")
    store.close()
    assert meta["parent"] == str(parent.resolve())
    assert meta["at_tick"] == 1200 and meta["at_time"] == "2018-07-31T00:20:00Z"
    assert meta["policy"] == {"deficit": "adl"}
    assert meta["actions"] == [{**action, "at": "2018-07-31T00:20:01Z"}]
    parent_session = Session.open(parent, at=1200, read_only=True)
    assert meta["parent_hash"] == parent_session.engine.state_hash()
    parent_session.close()


def test_whatif_csv_writes_text_a_spreadsheet_would_run_as_text() -> None:
    """An account id is the scenario's text: one that starts a formula is escaped in the
    comparison's CSV as in every CSV of the project, while signed amounts stay numbers."""
    paid = {"clawback": "0", "adl": "-1.5", "paid": "0", "adl_contracts": 0, "equity_end": "2"}
    doc = {
        "runs": [],
        "accounts": [
            {
                "account": "=HYPERLINK(1)",
                "currency": "BTC",
                "runs": {
                    "original": {**paid, "difference": None},
                    "b": {**paid, "difference": "-2"},
                },
            }
        ],
    }
    rows = list(csv.DictReader(compare.csv_text(doc).splitlines()))
    assert [r["account"] for r in rows] == ["'=HYPERLINK(1)"] * 2
    assert [(r["adl"], r["difference"]) for r in rows] == [("-1.5", ""), ("-1.5", "-2")]


def test_whatif_cancel_during_the_comparison_removes_the_finished_branch(parent: Path) -> None:
    """Cancel heard once the branch's run is over (while the original's outcome is read) stops
    the comparison and removes the branch's store, as a cancel during the run does."""
    runs.branch(parent, "3500", [], {}, name="early")
    early = _digest(branch_path(parent, "early"))
    before = _digest(parent)
    ran = {"to_end": False, "store_whole": False}

    def on_step(engine: Any, _events: list[Any]) -> None:
        ran["to_end"] = engine.tick == engine.ticks_total - 1

    def cancelled() -> bool:
        if ran["to_end"]:
            ran["store_whole"] = branch_path(parent, "cut").exists()
        return ran["to_end"]

    with pytest.raises(runs.Cancelled):
        runs.branch(
            parent, "3000", [], {}, name="cut", with_names=("early",), on_step=on_step,
            cancelled=cancelled,
        )  # fmt: skip
    assert ran["store_whole"]  # the branch had run to its end when Cancel was heard
    assert sorted(p.name for p in branch_dir(parent).glob("cut*")) == []
    assert [b.name for b in list_branches(parent)] == ["early"]
    assert _digest(branch_path(parent, "early")) == early and _digest(parent) == before


def test_whatif_cancel_is_heard_inside_the_adl_replay(parent: Path) -> None:
    """The replay that prices an original's ADL fills asks at every tick, not only once."""
    runs.branch(parent, "0", [], {"deficit": "adl"}, name="adl")
    path = branch_path(parent, "adl")
    session = Session.open(path, read_only=True)
    events = list(session.collector.events)
    session.close()
    assert_cancel_stops_the_adl_replay_at_the_third_ask(path, events)


def assert_cancel_stops_the_adl_replay_at_the_third_ask(path: Path, events: list[Any]) -> None:
    """Cancel turning true at its third ask stops pricing the ADL fills of `path` there: it is
    asked before each tick replayed, not once."""
    asked: list[int] = []

    def third_time() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(runs.Cancelled):
        runs.stored_adl_cost(path, events, cancelled=third_time)
    assert len(asked) == 3
