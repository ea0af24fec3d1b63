"""Operator key files and the commands signed with them: a key file's round trip, a wrong password
and a damaged file refused naming the field, `keys new` and `keys show`; and through a real
nats-server, an admin rotating carol's key with `send --register`, after which only her new key
signs for her, while forged, altered, replayed, unsigned and non-admin commands are refused."""

from __future__ import annotations

import copy
import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from console.cli.main import main
from core.feed import keys
from core.feed.nats_stream import NatsWriter, message_at
from core.feed.publish import scenario_feed
from core.feed.signing import demo_key, public_hex, sign, verify
from core.model.errors import InputError
from core.model.passwords import DEFAULT_SCRYPT, ScryptParams
from tests.core.test_feed import two_traders_with_actions

CHEAP = ScryptParams(n=2**10, r=8, p=1)  # the format is the same at any cost; tests stay quick
PASSWORD = "carol-key-pw"


def made(tmp_path: Path, operator: str = "carol") -> tuple[Path, keys.KeyFile]:
    key_file, _ = keys.new_key(operator, PASSWORD, CHEAP)
    path = keys.key_path(operator, tmp_path / "keys")
    keys.write_key_file(path, key_file)
    return path, key_file


def test_a_key_file_round_trips_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    path, key_file = made(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    read = keys.read_key_file(path)
    assert read == key_file
    key = keys.unlock(read, PASSWORD, path)
    assert public_hex(key) == read.public_key
    command = {"operator": "carol", "action": "freeze", "account": "B", "reason": "r"}
    assert verify(
        read.public_key, sign(key, "2018-07-31T00:00:05Z", command), "2018-07-31T00:00:05Z", command
    )
    # The raw private key is nowhere in the file, in hex or otherwise.
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    assert raw.hex() not in path.read_text() and raw not in path.read_bytes()
    # An existing key file is kept: it may be the only copy of a registered key.
    with pytest.raises(InputError) as existing:
        keys.write_key_file(path, keys.new_key("carol", PASSWORD, CHEAP)[0])
    assert existing.value.field == "key_file" and keys.read_key_file(path) == key_file


def test_key_files_stretch_passwords_at_the_cost_of_the_password_hashes() -> None:
    assert keys.new_key("carol", PASSWORD)[0].params == DEFAULT_SCRYPT


@pytest.mark.parametrize("password", ["carol-key-PW", "carol-key-pw ", "short"])
def test_a_wrong_password_is_refused_naming_the_password(tmp_path: Path, password: str) -> None:
    path, _ = made(tmp_path)
    with pytest.raises(InputError) as wrong:
        keys.unlock(keys.read_key_file(path), password, path)
    assert wrong.value.field == "password" and "wrong password for carol's key" in str(wrong.value)


def _rewritten(change: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    """An edit made with care: the checksum is recomputed, so only the cipher can tell."""

    def edit(text: str) -> str:
        doc = json.loads(text)
        change(doc)
        body = {k: v for k, v in doc.items() if k != "checksum"}
        doc["checksum"] = hashlib.sha256(
            orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        return json.dumps(doc)

    return edit


def _flip(hex_text: str) -> str:
    return ("0" if hex_text[0] != "0" else "1") + hex_text[1:]


def _stale(text: str) -> str:
    """An edit by hand (or a disk's damage) that leaves the checksum as it was."""
    doc = json.loads(text)
    doc["cipher"]["ciphertext"] = _flip(doc["cipher"]["ciphertext"])
    return json.dumps(doc)


OTHER_KEY = public_hex(demo_key("mallory"))
ALTERATIONS: dict[str, tuple[Callable[[str], str], str, str]] = {
    "truncated": (lambda t: t[: len(t) // 2], "key_file", "not JSON"),
    "a ciphertext digit, checksum stale": (
        _stale,
        "key_file.checksum",
        "checksum does not match",
    ),
    "the ciphertext": (
        _rewritten(lambda d: d["cipher"].update(ciphertext=_flip(d["cipher"]["ciphertext"]))),
        "key_file",
        "does not decrypt",
    ),
    "another public key": (
        _rewritten(lambda d: d.update(public_key=OTHER_KEY)),
        "key_file",
        "does not decrypt",
    ),
    "another operator": (
        _rewritten(lambda d: d.update(operator="alice")),
        "key_file",
        "does not decrypt",
    ),
    "a short nonce": (
        _rewritten(lambda d: d["cipher"].update(nonce="00")),
        "key_file.cipher.nonce",
        "expected 24 hex digits",
    ),
    "another format": (
        _rewritten(lambda d: d.update(format="risk-operator-key/0")),
        "key_file.format",
        "expected 'risk-operator-key/1'",
    ),
}


@pytest.mark.parametrize("alteration", list(ALTERATIONS))
def test_an_altered_key_file_is_refused_as_damaged(tmp_path: Path, alteration: str) -> None:
    path, _ = made(tmp_path)
    edit, field, reason = ALTERATIONS[alteration]
    path.write_text(edit(path.read_text()))
    with pytest.raises(InputError) as damaged:
        keys.unlock(keys.read_key_file(path), PASSWORD, path)  # the right password
    assert damaged.value.field == field
    assert f"{path} is damaged" in str(damaged.value) and reason in str(damaged.value)


def test_keys_new_and_show_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(keys.KEYS_ENV, str(tmp_path / "keys"))
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    new = ["keys", "new", "--operator", "carol", "--password-file", str(secret)]
    assert main(new) == 0
    public = capsys.readouterr().out.strip()
    assert main(["keys", "show", "--operator", "carol"]) == 0
    assert capsys.readouterr().out.strip() == public
    path = tmp_path / "keys" / "carol.key.json"
    assert keys.unlock(keys.read_key_file(path), PASSWORD, path).public_key() is not None
    # A second `new` keeps the key it would replace; --replace makes another.
    assert main(new) == 2
    assert "--operator" in capsys.readouterr().err and keys.read_key_file(path).public_key == public
    assert main([*new, "--replace"]) == 0
    assert capsys.readouterr().out.strip() not in ("", public)
    # --dir over the environment; a folder without the file is one line naming it.
    elsewhere = tmp_path / "elsewhere"
    assert main(["keys", "show", "--operator", "carol", "--dir", str(elsewhere)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key_file" in err and str(elsewhere) in err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert main(["keys", "new", "--operator", "dave", "--password-file", str(empty)]) == 2
    assert "--password-file" in capsys.readouterr().err
    assert not (tmp_path / "keys" / "dave.key.json").exists()


# ----- commands sent into a feed ---------------------------------------------------------

OPERATORS = [
    {"name": "alice", "role": "operator"},
    {"name": "bob", "role": "operator"},
    {"name": "carol", "role": "supervisor"},
    {"name": "admin", "role": "admin"},
]


def _desk_feed() -> list[dict[str, Any]]:
    """two-traders with four operators and no actions: header (demo keys), ticks, end."""
    doc = two_traders_with_actions()
    doc["operators"], doc["actions"] = copy.deepcopy(OPERATORS), []
    return list(scenario_feed(doc))


def _new_key(tmp_path: Path, operator: str, capsys: pytest.CaptureFixture[str]) -> str:
    secret = tmp_path / f"{operator}.pw"
    secret.write_text(f"{operator}-key-pw\n")
    folder = str(tmp_path / "keys")
    assert (
        main(
            ["keys", "new", "--operator", operator, "--dir", folder, "--password-file", str(secret)]
        )
        == 0
    )
    return capsys.readouterr().out.strip()


def _send(tmp_path: Path, url: str, operator: str, *rest: str) -> int:
    secret = str(tmp_path / f"{operator}.pw")
    folder = str(tmp_path / "keys")
    return main(
        ["send", url, "--operator", operator, "--dir", folder, "--password-file", secret, *rest]
    )


def _signed(key: Ed25519PrivateKey, time: str, command: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "command",
        "time": time,
        "command": command,
        "signature": sign(key, time, command),
    }


def test_an_admin_rotates_carols_key_through_a_broker_and_only_her_new_key_signs(
    broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{broker}/DESK"
    admin_public = _new_key(tmp_path, "admin", capsys)
    carol_public = _new_key(tmp_path, "carol", capsys)
    messages = _desk_feed()
    header, first_tick, *rest = messages
    assert first_tick["time"] == "2018-07-31T00:00:01Z" and rest[0]["type"] == "tick"
    # The exchange lists its admin's own key in the header; carol has only her demo key there.
    for operator in header["scenario"]["operators"]:
        if operator["name"] == "admin":
            operator["public_key"] = admin_public
    market = NatsWriter(url)
    try:
        assert [market.write(header), market.write(first_tick)] == [1, 2]
        register = ["--register", "carol", "--public-key", carol_public, "--reason", "her own key"]
        assert _send(tmp_path, url, "admin", *register, "--at", "2018-07-31T00:00:02Z") == 0
        assert "as message 3" in capsys.readouterr().out
        warn = '{"action": "warn", "account": "B", "message": "margin call", "reason": "watch B"}'
        assert _send(tmp_path, url, "carol", warn, "--at", "2018-07-31T00:00:03Z") == 0
        sent = message_at(url, 4)
        assert sent["command"]["operator"] == "carol"
        time = "2018-07-31T00:00:04Z"
        freeze = {"operator": "carol", "action": "freeze", "account": "B", "reason": "stop B"}
        old = _signed(demo_key("carol"), time, freeze)  # her key before the rotation
        bob_registers = {
            "operator": "bob",
            "action": "register_key",
            "subject": "carol",
            "public_key": public_hex(demo_key("bob")),
            "reason": "take over carol",
        }
        by_bob = _signed(demo_key("bob"), time, bob_registers)  # bob is no admin
        altered = {**sent, "command": {**sent["command"], "account": "A"}}
        unsigned = {**sent, "signature": ""}
        admin_key = keys.unlock(
            keys.read_key_file(tmp_path / "keys" / "admin.key.json"), "admin-key-pw"
        )
        forged = _signed(admin_key, time, freeze)  # another operator's real key, carol's name
        tampered = [old, by_bob, sent, altered, unsigned, forged]
        assert [market.write(m) for m in tampered] == [5, 6, 7, 8, 9, 10]
        freeze_text = json.dumps({k: v for k, v in freeze.items() if k != "operator"})
        assert _send(tmp_path, url, "carol", freeze_text, "--at", "2018-07-31T00:00:05Z") == 0
        capsys.readouterr()

        # Bad input: exit 2, one line naming the option, nothing published.
        bad = [
            (
                ("carol", freeze_text, "--key-file", str(tmp_path / "keys" / "admin.key.json")),
                "--key-file",
            ),
            (("carol", *register, "--at", "2018-07-31T00:00:06Z"), "--operator"),
            (
                ("admin", "--register", "carol", "--public-key", "zz", "--reason", "r"),
                "--public-key",
            ),
            (
                ("admin", "--register", "mallory", "--public-key", carol_public, "--reason", "r"),
                "--register",
            ),
            (
                ("carol", freeze_text.replace('"B"', '"Z"'), "--at", "2018-07-31T00:00:06Z"),
                "COMMAND.account",
            ),
            (("carol", json.dumps({**bob_registers, "operator": "carol"})), "COMMAND"),
            (("carol", freeze_text, "--at", "yesterday"), "--at"),
            (("mallory", freeze_text), "--operator"),
        ]
        for arguments, option in bad:
            where = [] if "--key-file" in arguments else ["--dir", str(tmp_path / "keys")]
            secret = ["--password-file", str(tmp_path / "carol.pw")]
            code = main(["send", url, *where, *secret, "--operator", *arguments])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1 and f"error: {option}:" in err, (
                arguments,
                err,
            )
        (tmp_path / "carol.pw").write_text("not-her-password\n")
        assert _send(tmp_path, url, "carol", freeze_text, "--at", "2018-07-31T00:00:06Z") == 2
        assert "error: password: wrong password" in capsys.readouterr().err
        # The stream moved by the one command sent after the tampered six, no more.
        assert [market.write(m) for m in rest] == [12, 13]
    finally:
        market.close()

    out = tmp_path / "desk.json"
    assert main(["run", url, "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    refused = [
        (r["seq"], r["field"], r["reason"].split(": ", 2)[-1].split(":")[0])
        for r in result["refused"]
    ]
    assert refused == [
        (5, "signature", "not carol's signature over this command"),
        (6, "command.operator", "bob is operator"),
        (7, "signature", "replayed"),
        (8, "signature", "not carol's signature over this command"),
        (9, "signature", "unsigned"),
        (10, "signature", "not carol's signature over this command"),
    ]
    actions = [(a["operator"], a["action"], a.get("seq")) for a in result["actions"]]
    assert actions == [
        ("admin", "register_key", 3),
        ("carol", "warn", None),
        ("carol", "freeze", None),
    ]
    registration = result["actions"][0]
    assert registration["subject"] == "carol" and registration["public_key"] == carol_public
    assert result["feed"] == {"messages": 13, "refused": 6, "keys_registered": 1}


def test_a_command_sent_into_a_jsonl_feed_is_appended_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    carol_public = _new_key(tmp_path, "carol", capsys)
    header, first_tick, *rest = _desk_feed()
    for operator in header["scenario"]["operators"]:
        if operator["name"] == "carol":
            operator["public_key"] = carol_public
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(m) + "\n" for m in (header, first_tick)))
    freeze = '{"action": "freeze", "account": "B", "reason": "stop B"}'
    assert _send(tmp_path, str(feed), "carol", freeze, "--at", "2018-07-31T00:00:05Z") == 0
    assert _send(tmp_path, str(feed), "carol", freeze) == 0  # now: a whole second, in 2020s
    lines = [json.loads(line) for line in feed.read_text().splitlines()]
    assert len(lines) == 4 and lines[2]["command"]["operator"] == "carol"
    assert lines[3]["time"].endswith("Z") and lines[3]["time"] > "2020"
    with feed.open("a") as handle:
        handle.write("".join(json.dumps(m) + "\n" for m in rest))
    out = tmp_path / "desk.json"
    assert main(["run", str(feed), "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert [(a["operator"], a["action"], a["time"]) for a in result["actions"]] == [
        ("carol", "freeze", "2018-07-31T00:00:05Z")
    ]
    # The command sent at the real now lies past this replayed exchange's end: never applied.
    assert result["feed"]["refused"] == 0
