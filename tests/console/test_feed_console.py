"""The console's own parts on a live feed: File > Connect to feed… (the URL checked, the recent ones
remembered), a producer that falls silent raises the alert, and a command is signed with the
operator's key file, unlocked by the password of the login (no key file: refused at the desk)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from console.dialogs.connect_dialog import RECENT, ConnectDialog, ConnectState
from console.worker.operations import Outcome
from core.feed import keys
from core.feed.publish import scenario_feed
from core.feed.signing import public_hex
from core.feed.transports import open_writer
from core.model.errors import InputError
from core.model.passwords import ScryptParams
from tests.core.nats_broker import Broker
from tests.core.test_feed import two_traders_with_actions

CHEAP = ScryptParams(n=2**10, r=8, p=1)


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    running = Broker(tmp_path / "js")
    yield running
    if running.process.poll() is None:
        running.kill()


def _window(qtbot: Any, settings: Any) -> Any:
    from console.window.main_window import MainWindow

    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    return window


def test_the_connect_state_names_the_url_and_keeps_the_recent_ones() -> None:
    for bad in ("", "okx-2018-btc0928", "-", "nats://host:4222/", "nats://h:1/a/b", "http://x/S"):
        with pytest.raises(InputError) as error:
            ConnectState(url=bad).check()
        assert error.value.field == "URL"
    state = ConnectState(url=" nats://127.0.0.1:4222/DESK ")
    assert state.check() == "nats://127.0.0.1:4222/DESK"
    recent: list[str] = []
    for n in range(RECENT + 3):
        recent = ConnectState(recent=recent).remember(f"nats://h:1/S{n}")
    recent = ConnectState(recent=recent).remember("nats://h:1/S5")
    assert (
        len(recent) == RECENT
        and recent[0] == "nats://h:1/S5"
        and recent.count("nats://h:1/S5") == 1
    )


def test_file_connect_opens_the_feed_and_remembers_it(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path
) -> None:
    url = f"{broker.url}/CONNECT"
    writer = open_writer(url)
    for message in list(scenario_feed(two_traders_with_actions()))[:2]:
        writer.write(message)
    writer.close()
    window = _window(qtbot, settings)
    window.feed_view.show_connect()
    dialog = window.feed_view.dialog
    assert isinstance(dialog, ConnectDialog) and dialog.url_edit.count() == 0
    dialog.url_edit.setCurrentText("not a feed")
    dialog.accept()
    assert dialog.isVisible() and dialog.error.text().startswith("URL:")
    dialog.url_edit.setCurrentText(url)
    dialog.accept()
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.feed is not None)
    qtbot.waitUntil(lambda: window.snapshot.tick == 1, timeout=15_000)
    assert window.feed_view.label.isVisible() and "connected" in window.feed_view.label.text()
    window.feed_view.show_connect()  # the next time, the URL is offered first
    assert window.feed_view.dialog.url_edit.itemText(0) == url
    window.feed_view.dialog.reject()
    window.close()


def test_a_silent_producer_raises_the_alert(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path
) -> None:
    url = f"{broker.url}/QUIET"
    writer = open_writer(url)
    for message in list(scenario_feed(two_traders_with_actions()))[:2]:
        writer.write(message)
    writer.close()
    window = _window(qtbot, settings)
    window.bridge.worker.silent_seconds = 1.0  # set before the feed opens, then only read
    window.feed_view.silent_after = 1.0
    window.open_source(url, tmp_path / "desk.db")
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.tick == 1)
    qtbot.waitUntil(
        lambda: (window.snapshot.notice or "").startswith("Producer silent for"), timeout=10_000
    )
    assert window.feed_view.label.property("warn") is True
    assert window.snapshot.feed.state == "connected"  # the link is up; the producer is not
    window.close()


def test_a_command_is_signed_with_the_key_file_the_login_unlocks(
    qtbot: Any, settings: Any, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "keys"
    monkeypatch.setenv(keys.KEYS_ENV, str(folder))
    carol_file, carol_key = keys.new_key("carol", "carol-demo", CHEAP)  # her login's password
    keys.write_key_file(keys.key_path("carol", folder), carol_file)
    messages = list(scenario_feed(two_traders_with_actions()))
    header = json.loads(json.dumps(messages[0]))
    for operator in header["scenario"]["operators"]:
        if operator["name"] == "carol":  # the exchange registered her own key, not a demo one
            operator["public_key"] = carol_file.public_key
    url = f"{broker.url}/KEYS"
    writer = open_writer(url)
    writer.write(header)
    writer.write(messages[1])
    window = _window(qtbot, settings)
    window.open_source(url, tmp_path / "desk.db")
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.tick == 1)
    with qtbot.waitSignal(window.bridge.operations_ready, timeout=10_000):
        window.desk.log_in("carol", "carol-demo")
    seen: list[Outcome] = []

    def sent(outcome: Outcome) -> bool:
        seen.append(outcome)
        return "sent as message" in outcome.text or not outcome.ok

    freeze = {"operator": "carol", "action": "freeze", "account": "B", "reason": "her own key"}
    with qtbot.waitSignal(window.bridge.outcome, timeout=10_000, check_params_cb=sent):
        window.desk.submit(freeze)
    assert seen[-1].ok, seen[-1].text
    # bob has no key file and no key in the header: the desk refuses to sign for him.
    with qtbot.waitSignal(window.bridge.operations_ready, timeout=10_000):
        window.desk.log_in("bob", "bob-demo")
    with qtbot.waitSignal(window.bridge.outcome, timeout=10_000, check_params_cb=sent):
        window.desk.submit({"operator": "bob", "action": "warn", "account": "B", "message": "m",
                            "reason": "r"})  # fmt: skip
    assert not seen[-1].ok and "signing key" in seen[-1].text
    writer.write({"type": "tick", "time": "2018-07-31T00:00:02Z"})
    for message in messages[2:]:
        writer.write(message)
    writer.close()
    qtbot.waitUntil(lambda: window.snapshot.feed.state == "ended", timeout=30_000)
    window.close()
    with sqlite3.connect(tmp_path / "desk.db") as db:
        rows = db.execute("SELECT message, refused FROM feed_messages").fetchall()
    commands = [json.loads(m) for m, r in rows if json.loads(m)["type"] == "command"]
    assert len([c for c in commands if c["command"].get("reason") == "her own key"]) == 1
    refusals = {json.loads(m)["command"]["reason"]: r for m, r in rows if '"command"' in m}
    assert refusals["her own key"] is None  # the desk verified her signature
    # the publisher signed its own copy of a carol command with her demo key: not hers any more
    assert json.loads(refusals["stop B"])["field"] == "signature"
    assert public_hex(carol_key) == carol_file.public_key
