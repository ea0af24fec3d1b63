"""Desks live on one stream of a real nats-server: two consoles share a maker-checker flow (alice
asks for a force-reduce at one, carol approves it at the other) and end with the same requests,
audit entries and state hash as a headless desk; a console catches up on a stream published ahead
of it, showing how far behind it is; and (slow tier) the whole 2018 demo through the broker reaches
its recorded state hash at a console and a headless desk alike."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_snapshot

from console.cli.main import main
from core.feed.publish import scenario_feed
from core.feed.transports import open_writer
from core.scenario.builtin import builtin_scenarios
from tests.core.nats_broker import Broker
from tests.core.test_feed import consume, two_traders_with_actions
from tests.core.test_state_hashes import RECORDED

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "DEMO-USD-180731"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path / "js")
    yield running
    if running.process.poll() is None:
        running.kill()


def _desk(qtbot: Any, settings: Any, url: str, store: Path) -> Any:
    from console.window.main_window import MainWindow

    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    window.open_source(url, store)
    return window


def _store_rows(store: Path) -> dict[str, Any]:
    with sqlite3.connect(store) as db:
        return {
            "hash": db.execute(
                "SELECT state_hash FROM journal WHERE kind = 'tick' AND state_hash IS NOT NULL "
                "ORDER BY tick DESC LIMIT 1"
            ).fetchone()[0],
            "requests": db.execute(
                "SELECT id, action, operator, status, decided_by, decided_at FROM requests"
            ).fetchall(),
            "audit": db.execute(
                "SELECT at, operator, kind, subject, reason, before, after FROM audit_log "
                "WHERE kind NOT IN ('login', 'operator') ORDER BY seq"
            ).fetchall(),
        }


def _send(qtbot: Any, window: Any, raw: dict[str, Any]) -> str:
    """Give a command at a desk and wait until the desk says it is in the stream."""
    seen: list[Any] = []

    def sent(outcome: Any) -> bool:
        seen.append(outcome)
        return "sent as message" in outcome.text or not outcome.ok

    with qtbot.waitSignal(window.bridge.outcome, timeout=10_000, check_params_cb=sent):
        window.desk.submit(raw)
    assert seen[-1].ok, seen[-1].text
    return str(seen[-1].text)


def _tick(second: int) -> dict[str, Any]:
    return {"type": "tick", "time": f"2018-07-31T00:00:{second:02d}Z"}


def test_two_consoles_share_a_maker_checker_flow_on_one_stream(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path
) -> None:
    url = f"{broker.url}/DESKS"
    doc = two_traders_with_actions()
    doc["actions"] = []  # every command here comes from a desk
    messages = list(scenario_feed(doc))
    header, gap, rest = messages[0], messages[1], messages[2:]
    producer = open_writer(url)
    try:
        producer.write(header)
        producer.write(gap)  # A is liquidated on the gap; B's short stays open
        one = _desk(qtbot, settings, url, tmp_path / "one.db")
        two = _desk(qtbot, settings, url, tmp_path / "two.db")
        for window in (one, two):
            qtbot.waitUntil(lambda w=window: w.snapshot is not None and w.snapshot.tick == 1)
        with qtbot.waitSignal(one.bridge.operations_ready, timeout=10_000):
            one.desk.log_in("alice", "alice-demo")
        with qtbot.waitSignal(two.bridge.operations_ready, timeout=10_000):
            two.desk.log_in("carol", "carol-demo")
        ask = {"operator": "alice", "action": "force_reduce", "account": "B", "symbol": SYMBOL,
               "contracts": 4, "reason": "cut the exposure before settlement", "id": "fr-1"}  # fmt: skip
        assert "sent as message 3" in _send(qtbot, one, ask)
        producer.write(_tick(2))  # the request applies at the tick after it came back
        for window in (one, two):
            qtbot.waitUntil(
                lambda w=window: (
                    w.desk.state is not None and any(r.id == "fr-1" for r in w.desk.state.requests)
                ),
                timeout=15_000,
            )
        # alice approves her own request (refused everywhere), then carol approves at her desk;
        # each is in the stream (its outcome says so) before the next, and both before the tick
        _send(qtbot, one, {"operator": "alice", "action": "approve", "request": "fr-1",
                           "reason": "mine"})  # fmt: skip
        _send(qtbot, two, {"operator": "carol", "action": "approve", "request": "fr-1",
                           "reason": "agreed: B is too big into settlement"})  # fmt: skip
        producer.write(_tick(3))
        for message in rest:
            producer.write(message)
    finally:
        producer.close()
    for window in (one, two):
        qtbot.waitUntil(
            lambda w=window: (
                w.snapshot is not None
                and w.snapshot.feed is not None
                and w.snapshot.feed.state == "ended"
            ),
            timeout=30_000,
        )
        window.close()
        assert not window.bridge.running
    out = tmp_path / "headless.json"
    assert main(["run", url, "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    first, second = _store_rows(tmp_path / "one.db"), _store_rows(tmp_path / "two.db")
    assert first == second
    assert first["hash"] == result["state_hash"]
    assert [r[:5] for r in first["requests"]] == [
        ("fr-1", "force_reduce", "alice", "approved", "carol")
    ]
    assert [(operator, kind) for _, operator, kind, *_ in first["audit"]] == [
        ("alice", "request"),
        ("alice", "outcome"),  # awaits a supervisor
        ("alice", "approval"),
        ("carol", "approval"),
        ("alice", "outcome"),  # self-approval refused
        ("carol", "outcome"),  # approved: the force-reduce is sent to the book
    ]
    assert first["audit"][0][0] == "2018-07-31T00:00:01.000Z"  # the exchange's time, not a desk's
    assert [a["action"] for a in result["actions"]].count("force_reduce") == 1
    refused = [r for r in result["refused"] if r["operator"] == "alice"]
    assert refused and refused[0]["action"] == "approve"


def _catch_up(qtbot: Any, settings: Any, url: str, store: Path) -> tuple[Any, list[int]]:
    """A console opened on a stream published ahead of it, run until the feed's end; how far
    behind its status bar said it was, snapshot by snapshot."""
    window = _desk(qtbot, settings, url, store)
    behind: list[int] = []

    def caught_up(snap: Any) -> bool:
        if snap.feed is not None:
            behind.append(snap.feed.behind)
        return snap.feed is not None and snap.feed.state == "ended"

    wait_snapshot(qtbot, window.bridge, caught_up, timeout=400_000)
    # The status bar showed the desk far behind, then less and less, while views kept updating.
    assert "behind" not in window.feed_view.label.text()
    assert "ended" in window.feed_view.label.text()
    window.close()
    return window, behind


def test_a_producer_far_faster_than_the_console_is_caught_up_showing_how_far_behind(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path
) -> None:
    doc = json.loads(builtin_scenarios()["binance-xrp-2021-11"].read_text())
    doc["crowd"]["accounts"] = 100
    for name, points in doc["market"]["indices"].items():  # the week's first 1,000 ticks
        doc["market"]["indices"][name] = points[:1000]
    path = tmp_path / "xrp.json"
    path.write_text(json.dumps(doc))
    url = f"{broker.url}/XRP"
    assert main(["publish", str(path), "--to", url, "--quiet"]) == 0
    messages = list(scenario_feed(doc))
    _, behind = _catch_up(qtbot, settings, url, tmp_path / "desk.db")
    assert max(behind) > len(messages) // 2 and behind[-1] == 0
    assert sum(b > 0 for b in behind) >= 4  # the views kept updating on the way
    plain = consume(messages)
    assert plain.engine is not None
    assert _store_rows(tmp_path / "desk.db")["hash"] == plain.engine.state_hash()


@pytest.mark.slow
def test_the_published_demo_reaches_its_state_hash_at_a_console_and_a_headless_desk(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path
) -> None:
    url = f"{broker.url}/OKX"
    assert main(["publish", "okx-2018-btc0928", "--to", url, "--quiet"]) == 0
    total = sum(
        1 for _ in scenario_feed(json.loads(builtin_scenarios()["okx-2018-btc0928"].read_text()))
    )
    out = tmp_path / "headless.json"
    headless = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "run", url, "--out", str(out), "--quiet"], cwd=ROOT
    )
    try:
        _, behind = _catch_up(qtbot, settings, url, tmp_path / "desk.db")
        assert headless.wait(timeout=300) == 0
    finally:
        if headless.poll() is None:
            headless.kill()
    assert max(behind) > total // 2 and behind[-1] == 0
    assert _store_rows(tmp_path / "desk.db")["hash"] == RECORDED["okx-2018-btc0928"]
    assert json.loads(out.read_text())["state_hash"] == RECORDED["okx-2018-btc0928"]


def test_a_broker_killed_under_a_console_says_reconnecting_then_catches_up(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path
) -> None:
    import signal

    url = f"{broker.url}/OUTAGE"
    messages = list(scenario_feed(two_traders_with_actions()))
    producer = open_writer(url)
    for message in messages[:2]:
        producer.write(message)
    producer.close()
    window = _desk(qtbot, settings, url, tmp_path / "desk.db")
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.tick == 1)
    # The feed plays itself: no play, step, seek or speed at a desk on a feed.
    controls = (window.play_action, window.step_action, window.end_action, window.slider)
    assert not any(control.isEnabled() for control in (*controls, window.speed))
    broker.kill(signal.SIGKILL)
    qtbot.waitUntil(lambda: window.snapshot.feed.state == "reconnecting", timeout=15_000)
    assert "reconnecting" in window.feed_view.label.text()
    assert window.feed_view.label.property("warn") is True
    broker.start()
    qtbot.waitUntil(lambda: window.snapshot.feed.state == "connected", timeout=15_000)
    producer = open_writer(url)
    for message in messages[2:]:
        producer.write(message)
    producer.close()
    qtbot.waitUntil(lambda: window.snapshot.feed.state == "ended", timeout=30_000)
    window.close()
    plain = consume(messages)
    assert plain.engine is not None
    assert _store_rows(tmp_path / "desk.db")["hash"] == plain.engine.state_hash()
    with sqlite3.connect(tmp_path / "desk.db") as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM feed_messages ORDER BY seq")]
    assert seqs == list(range(1, len(messages) + 1))
