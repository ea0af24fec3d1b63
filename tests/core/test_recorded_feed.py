"""A feed's store opened to look at (the console's Open store, a report, `replay`): behind its head
each tick comes from its recorded messages, so any tick it is opened or sought to, and the head,
are the states the live run recorded; stepping ends at the head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.feed.publish import scenario_feed
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
