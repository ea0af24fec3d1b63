"""A feed's store opened to look at (the console's Open store, a report, `replay`): behind its head
each tick comes from its recorded messages, so any tick it is opened or sought to, and the head,
are the states the live run recorded; stepping ends at the head."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.feed.publish import scenario_feed
from core.model.errors import InputError
from core.model.operations import Refusal
from core.session.feed_session import replay
from core.session.session import Session
from core.store.store import Store
from tests.core.test_feed import two_traders_with_actions
from tests.core.test_whatif import _digest
from tests.core.test_whatif_feed import _feed_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """two-traders with its operators' commands through a feed into a store; its end hash."""
    folder = tmp_path_factory.mktemp("recorded-feed")
    path = _feed_store(folder, list(scenario_feed(two_traders_with_actions())))
    return path, json.loads((folder / "r.json").read_text())["state_hash"]


def test_a_feed_store_opens_at_its_head_with_the_live_runs_state(store: tuple[Path, str]) -> None:
    path, end = store
    before = _digest(path)
    session = Session.open(path, read_only=True)
    try:
        assert session.engine.state_hash() == end
        assert session.finished and session.tick == session.head
    finally:
        session.close()
    assert _digest(path) == before


def test_a_feed_store_opened_or_sought_to_a_tick_is_the_replay_of_its_messages_there(
    store: tuple[Path, str],
) -> None:
    path, end = store
    recorded = Store.open(path, read_only=True)
    hashes = recorded.recorded_hashes()
    recorded.close()
    ticks = sorted(hashes)
    assert len(ticks) > 3  # hashes recorded along the run: each replayed tick is checked on them
    middle = ticks[len(ticks) // 2] + 7  # between two recorded hashes and likely two messages
    there, _ = replay(path, until=middle)
    expected = there.engine.state_hash()
    there.close()
    opened = Session.open(path, at=middle, read_only=True)
    try:
        assert opened.tick == middle and opened.engine.state_hash() == expected
    finally:
        opened.close()
    session = Session.open(path, read_only=True)
    try:
        session.seek(middle)
        assert session.engine.state_hash() == expected
        seen = {}
        while not session.finished:  # every recorded hash on the way is checked by the replay
            session.step()
            if session.tick in hashes:
                seen[session.tick] = session.engine.state_hash()
        assert seen and all(hashes[t] == h for t, h in seen.items())
        assert session.engine.state_hash() == end
    finally:
        session.close()


def test_a_message_refused_live_moves_nothing_when_the_store_is_opened(tmp_path: Path) -> None:
    """A `tick` message the run refused (a mark the header does not pin) names a time past the
    next one: opened, the store must not hold the prices until then and leave the messages after
    it unapplied, as the live run did not."""
    messages = list(scenario_feed(two_traders_with_actions()))
    ticks = [i for i, m in enumerate(messages) if m["type"] == "tick"]
    k = ticks[0]  # after the first tick, naming a time past the second: a replay that waited
    ahead = datetime.fromisoformat(messages[ticks[1]]["time"]) + timedelta(minutes=30)
    bad = {"type": "tick", "time": ahead.isoformat().replace("+00:00", "Z"), "marks": {"NOPE": "1"}}
    path = _feed_store(tmp_path, [*messages[: k + 1], bad, *messages[k + 1 :]])
    end = json.loads((tmp_path / "r.json").read_text())["state_hash"]
    store = Store.open(path, read_only=True)
    assert len(store.refused_feed_seqs(0)) == 1
    snapshots, hashes = store.snapshot_ticks(), store.recorded_hashes()
    store.close()
    # Opened at a recorded hash before its second snapshot: every tick from the first is
    # replayed over the refused message, and each recorded hash on the way is checked.
    at = max(t for t in hashes if 0 < t < sorted(snapshots)[1])
    session = Session.open(path, at=at, read_only=True)
    try:
        assert session.engine.state_hash() == hashes[at]
    finally:
        session.close()
    replayed, _ = replay(path, start=0)
    assert replayed.engine.state_hash() == end
    replayed.close()


def test_a_feed_store_looked_at_refuses_to_go_past_its_head_or_take_commands(
    store: tuple[Path, str], tmp_path: Path
) -> None:
    """Opened writable (as the console opens a file), nothing makes up ticks past its head."""
    path = tmp_path / "copy.db"
    path.write_bytes(store[0].read_bytes())
    before = _digest(path)
    session = Session.open(path)
    try:
        with pytest.raises(InputError, match="expected a tick from 0 to"):
            session.seek(session.head + 3)
        with pytest.raises(Refusal, match="commands go through the feed"):
            session.submit({"operator": "alice", "action": "warn", "account": "A", "reason": "r"})
        with pytest.raises(Refusal, match="ends at its head"):
            session.step()
        assert session.tick == session.head
    finally:
        session.close()
    assert _digest(path) == before
