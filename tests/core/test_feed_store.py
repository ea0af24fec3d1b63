"""A feed consumed into a store: every applied message is recorded by its sequence number (with its
refusal), the result is that of a run without a store, a consumer killed with -9 resumes from its
store to the uninterrupted state hash, and a gap in the stream stops the run with the gap named."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from console.cli.main import main
from core.feed.publish import scenario_feed
from core.scenario.builtin import builtin_scenarios
from core.session.feed_session import FeedSession
from tests.core.nats_broker import Broker
from tests.core.test_feed import consume, two_traders_with_actions

ROOT = Path(__file__).resolve().parents[2]


def _write_jsonl(path: Path, messages: list[Any]) -> None:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))


def _feed_with_faults() -> list[dict[str, Any]]:
    """two-traders with its actions signed, a withdrawal B cannot make (it is frozen by then), an
    unsigned command and a tick with a bad index."""
    messages = list(scenario_feed(two_traders_with_actions()))
    unsigned = {
        "type": "command",
        "time": "2018-07-31T00:00:03Z",
        "command": {"operator": "alice", "action": "warn", "account": "A", "message": "x"},
    }
    bad_tick = {"type": "tick", "time": "2018-07-31T00:00:04Z", "indices": {"NOPE": "1"}}
    withdrawal = {
        "type": "transfer",
        "time": "2018-07-31T00:00:20Z",
        "account": "B",
        "currency": "BTC",
        "amount": "-0.5",
        "id": "w-1",
    }
    at = next(i for i, m in enumerate(messages) if m.get("time", "") > "2018-07-31T00:00:10Z")
    return [*messages[:2], unsigned, bad_tick, *messages[2:at], withdrawal, *messages[at:]]


def test_a_feed_stored_gives_the_result_of_one_not_stored_and_records_every_message(
    tmp_path: Path,
) -> None:
    messages = _feed_with_faults()
    feed = tmp_path / "feed.jsonl"
    _write_jsonl(feed, messages)
    plain, stored = tmp_path / "plain.json", tmp_path / "stored.json"
    store = tmp_path / "desk.db"
    assert main(["run", str(feed), "--out", str(plain), "--quiet"]) == 0
    assert main(["run", str(feed), "--out", str(stored), "--db", str(store), "--quiet"]) == 0
    result = json.loads(stored.read_text())
    assert result == json.loads(plain.read_text())
    assert result["state_hash"] == consume(messages).engine.state_hash()  # type: ignore[union-attr]
    refused = {r["seq"]: r["field"] for r in result["refused"] if "seq" in r}
    withdrawal = next(n for n, m in enumerate(messages, 1) if m["type"] == "transfer")
    assert refused == {3: "signature", 4: "indices.NOPE", withdrawal: "withdrawals_frozen"}
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT seq, message, refused FROM feed_messages ORDER BY seq").fetchall()
    assert [seq for seq, _, _ in rows] == list(range(1, len(messages) + 1))
    assert [json.loads(text) for _, text, _ in rows] == messages
    recorded = {seq: json.loads(r)["field"] for seq, _, r in rows if r is not None}
    assert recorded == refused
    # A finished feed's store resumes to the same result without reading the feed again.
    feed.unlink()
    again = tmp_path / "again.json"
    assert main(["resume", str(store), "--out", str(again), "--quiet"]) == 0
    assert json.loads(again.read_text()) == result


def test_a_store_resumed_part_way_reads_the_feed_after_its_last_message(tmp_path: Path) -> None:
    doc = json.loads(builtin_scenarios()["binance-xrp-2021-11"].read_text())
    doc["crowd"]["accounts"] = 30
    for name, points in doc["market"]["indices"].items():  # the week's first 1,500 ticks
        doc["market"]["indices"][name] = points[:1500]
    messages = list(scenario_feed(doc))
    whole = tmp_path / "whole.jsonl"
    _write_jsonl(whole, messages)
    part = tmp_path / "part.jsonl"
    cut = len(messages) * 2 // 3
    _write_jsonl(part, messages[:cut])
    store = tmp_path / "desk.db"
    feed = FeedSession(str(whole), store)
    try:  # the desk stops after `cut` messages, as if its feed went quiet
        for seq, message in enumerate(messages[:cut], start=1):
            feed.apply(seq, message)
    finally:
        feed.close()
    out = tmp_path / "resumed.json"
    assert main(["resume", str(store), "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["state_hash"] == consume(messages).engine.state_hash()  # type: ignore[union-attr]
    assert result["feed"]["messages"] == len(messages)
    with sqlite3.connect(store) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM feed_messages ORDER BY seq")]
    assert seqs == list(range(1, len(messages) + 1))


def _stored_messages(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=0.2) as db:
            return int(db.execute("SELECT count(*) FROM feed_messages").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("share", [0.2, pytest.param(0.6, marks=pytest.mark.slow)])
def test_a_consumer_killed_with_9_resumes_from_its_store(tmp_path: Path, share: float) -> None:
    broker = Broker(tmp_path / "js")
    try:
        doc = json.loads(builtin_scenarios()["binance-xrp-2021-11"].read_text())
        doc["crowd"]["accounts"] = 100
        for name, points in doc["market"]["indices"].items():  # the week's first 3,000 ticks
            doc["market"]["indices"][name] = points[:3000]
        path = tmp_path / "xrp.json"
        path.write_text(json.dumps(doc))
        url = f"{broker.url}/XRP"
        assert main(["publish", str(path), "--to", url, "--quiet"]) == 0
        total = sum(1 for _ in scenario_feed(doc))
        store, out = tmp_path / "desk.db", tmp_path / "result.json"
        desk = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "console.cli",
                "run",
                url,
                "--out",
                str(out),
                "--db",
                str(store),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while _stored_messages(store) < total * share and time.monotonic() < deadline:
            assert desk.poll() is None, "the desk finished before it could be killed"
            time.sleep(0.05)
        desk.send_signal(signal.SIGKILL)
        desk.wait(timeout=10)
        assert not out.exists()
        assert main(["resume", str(store), "--out", str(out), "--quiet"]) == 0
        result = json.loads(out.read_text())
        plain = consume(list(scenario_feed(doc)))
        assert plain.engine is not None and result["state_hash"] == plain.engine.state_hash()
        assert result["feed"] == {"messages": total, "refused": 0, "keys_registered": 0}
        with sqlite3.connect(store) as db:
            seqs = [r[0] for r in db.execute("SELECT seq FROM feed_messages ORDER BY seq")]
        assert seqs == list(range(1, total + 1))  # each message recorded once
    finally:
        broker.kill()


def test_a_gap_in_the_stream_stops_the_run_with_the_gap_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Broker(tmp_path / "js")
    try:
        url = f"{broker.url}/GAP"
        assert main(["publish", "two-traders", "--to", url, "--quiet"]) == 0

        async def delete_the_second_message() -> None:
            client = await nats.connect(broker.url)
            await client.jetstream().delete_msg("GAP", 2)
            await client.close()

        asyncio.run(delete_the_second_message())
        capsys.readouterr()
        out, store = tmp_path / "r.json", tmp_path / "desk.db"
        assert main(["run", url, "--out", str(out), "--db", str(store)]) == 2
        err = capsys.readouterr().err
        assert "gap" in err and "expected 2, found 3" in err and url in err
        assert not out.exists()
    finally:
        broker.kill()
