"""What-if branches of a feed's store: the parent's recorded messages replayed after the fork (which
may fall between the ticks of one message), the same outcome as a branch of the scenario's own
store, an unfinished feed branched to its last message, and a branch that never follows the feed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.feed.publish import scenario_feed
from core.scenario.builtin import builtin_scenarios
from core.session.feed_session import FeedSession, replay
from core.session.session import Session
from core.whatif import runs
from core.whatif.branch import branch_path, read_info
from tests.core.test_feed import two_traders_with_actions
from tests.core.test_whatif import (
    _digest,
    assert_cancel_stops_the_adl_replay_at_the_third_ask,
    assert_covered,
)


def _feed_store(folder: Path, messages: list[dict[str, Any]], name: str = "S.db") -> Path:
    feed, store = folder / "feed.jsonl", folder / name
    feed.write_text("".join(json.dumps(m) + "\n" for m in messages))
    assert main(["run", str(feed), "--out", str(folder / "r.json"), "--db", str(store)]) == 0
    return store


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """two-traders with its operators' commands, through a feed into a store; its end hash."""
    folder = tmp_path_factory.mktemp("feed-whatif")
    store = _feed_store(folder, list(scenario_feed(two_traders_with_actions())))
    return store, json.loads((folder / "r.json").read_text())["state_hash"]


def test_a_feed_store_branch_without_changes_ends_with_the_parents_state_hash(
    made: tuple[Path, str],
) -> None:
    parent, end = made
    before = _digest(parent)
    # Tick 1800 lies between the ticks of one message (two-traders' prices move rarely).
    doc = runs.branch(parent, "1800", [], {}, name="same", top=0)
    assert [run["state_hash"] for run in doc["runs"]] == [end, end]
    assert doc["runs"][1]["changes"]["at"] == {"tick": 1800, "time": "2018-07-31T00:30:00Z"}
    assert _digest(parent) == before, "the original store was written"
    path = branch_path(parent, "same")
    with sqlite3.connect(path) as db:
        whatif = json.loads(db.execute("SELECT value FROM meta WHERE key = 'whatif'").fetchone()[0])
        seqs = [r[0] for r in db.execute("SELECT seq FROM feed_messages ORDER BY seq")]
    with sqlite3.connect(parent) as db:
        theirs = [r[0] for r in db.execute("SELECT seq FROM feed_messages ORDER BY seq")]
    # It holds every message of its parent: those before the fork copied, the rest replayed.
    assert seqs == theirs and whatif["feed"]["until"] == theirs[-1]
    assert 0 < whatif["feed"]["seq"] < theirs[-1]
    assert read_info(path).at_tick == 1800
    # Reopened, it replays its own messages from its snapshot at the fork to the same end, and
    # its events are the parent's, history before the fork included.
    session, _ = replay(path)
    mine = (session.engine.state_hash(), session.result()["liquidations"])
    session.close()
    session, _ = replay(parent)
    assert mine == (end, session.result()["liquidations"]) and mine[1]
    session.close()


# In the slow tier (8.7-14.5 s) to keep the suite within its 10 minutes; the branch without changes
# above still checks a feed store's branch against its parent in the main suite.
@pytest.mark.slow
def test_a_feed_store_branch_gives_the_outcome_of_a_branch_of_the_scenarios_store(
    made: tuple[Path, str], tmp_path: Path
) -> None:
    """The same incident by file or by feed: ADL instead of the clawback, from the start, and a
    freeze at tick 3, give the same figures either way."""
    feed_store = made[0]
    scenario_store = tmp_path / "S.db"
    session = Session.start(two_traders_with_actions(), scenario_store)
    session.run_to_end()
    session.close()
    freeze = {"operator": "carol", "action": "freeze", "account": "A", "reason": "what-if"}
    outcomes = []
    for store in (feed_store, scenario_store):
        adl = runs.branch(store, "0", [], {"deficit": "adl"}, name="adl-0", top=10)
        frozen = runs.branch(store, "3", [freeze], {}, name="freeze-3", top=10)
        assert_covered(adl)
        assert_covered(frozen)
        # Per currency: liquidations, the fund's path, the deficit's cover, the clawbacks;
        # per account what it paid; the branches are named alike on both stores.
        outcomes.append(
            [
                [run["currencies"] for run in doc["runs"]] + [doc["accounts"]]
                for doc in (adl, frozen)
            ]
        )
    assert outcomes[0] == outcomes[1]
    original, adl = (figures["BTC"]["deficit"] for figures in outcomes[0][0][:2])
    assert original["clawback"] == adl["adl"] == original["total"] != "0"


def test_an_unfinished_feed_store_branches_to_its_last_recorded_message(tmp_path: Path) -> None:
    doc = json.loads(builtin_scenarios()["binance-xrp-2021-11"].read_text())
    doc["crowd"]["accounts"] = 30
    for name, points in doc["market"]["indices"].items():
        doc["market"]["indices"][name] = points[:600]
    messages = list(scenario_feed(doc))
    store = tmp_path / "desk.db"
    feed = FeedSession(str(tmp_path / "gone.jsonl"), store)
    try:  # the desk stops part-way, as if its feed went quiet
        for seq, message in enumerate(messages[: len(messages) // 2], start=1):
            feed.apply(seq, message)
        head, end = feed.session.engine.tick, feed.session.engine.state_hash()  # type: ignore[union-attr]
    finally:
        feed.close()
    doc = runs.branch(store, str(head // 3), [], {}, name="half", top=0)
    assert [run["state_hash"] for run in doc["runs"]] == [end, end]
    session, _ = replay(branch_path(store, "half"))
    assert session.engine.tick == head
    session.close()


def test_a_feed_stores_branch_never_follows_the_feed(
    made: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    parent = made[0]
    runs.branch(parent, "5", [], {}, name="still", top=0)
    path = branch_path(parent, "still")
    before = _digest(path)
    capsys.readouterr()
    assert main(["resume", str(path), "--out", str(path.with_suffix(".json"))]) == 2
    assert "never follows the feed" in capsys.readouterr().err
    assert _digest(path) == before


def test_cancel_is_heard_inside_the_replay_of_a_feed_store(
    made: tuple[Path, str], tmp_path: Path
) -> None:
    """Pricing a feed store's ADL fills replays its recorded messages: the comparison's cancel
    check is asked at every tick of that replay, not only before it."""
    parent = tmp_path / "S.db"
    parent.write_bytes(made[0].read_bytes())
    runs.branch(parent, "0", [], {"deficit": "adl"}, name="adl", top=0)
    path = branch_path(parent, "adl")
    with sqlite3.connect(path) as db:  # a feed's store: its ticks are replayed from messages
        assert db.execute("SELECT count(*) FROM feed_messages").fetchone()[0] > 0
    before = _digest(path)
    assert_cancel_stops_the_adl_replay_at_the_third_ask(path, runs.at_end(path)[1])
    assert _digest(path) == before
