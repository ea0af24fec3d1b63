"""Snapshots cannot execute: a pickle put in a store is refused and never run, a blob that does
not match its digest or its shape is refused with one line, and the JSON-plus-arrays format gives
back the same state (replay, resume, seek reach the recorded state hashes)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import sqlite3
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from console.cli.main import main
from core.engine.ledger import AccountKind
from core.model.errors import InputError, SnapshotFormatError
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.store.state_classes import check_state
from core.store.state_format import MAGIC, dump, load
from core.store.store import Store

Edit = Callable[[dict[str, Any], list[np.ndarray]], None]


def cascade_doc(accounts: int = 300) -> dict[str, Any]:
    doc = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = accounts
    return doc


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small cascade run to its end with a store: (store path, final state hash)."""
    path = tmp_path_factory.mktemp("snap") / "run.sqlite"
    session = Session.start(cascade_doc(), path)
    session.run_to_end()
    final = session.result()["state_hash"]
    session.close()
    return path, final


def _copy(run: tuple[Path, str], tmp_path: Path) -> Path:
    target = tmp_path / "store.sqlite"
    shutil.copy(run[0], target)
    return target


def _rewrite(path: Path, table: str, column: str, change: Callable[[bytes], bytes]) -> None:
    """Replace every blob of `table` by `change(blob)`, its digest updated as an attacker would."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT tick, {column} FROM {table}").fetchall()
        for tick, blob in rows:
            new = change(blob)
            conn.execute(
                f"UPDATE {table} SET {column} = ?, digest = ? WHERE tick = ?",
                (new, hashlib.sha256(new).hexdigest(), tick),
            )


def _refused(path: Path, capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Replay and resume both exit 2 with one error line (no traceback) naming the snapshot."""
    out = path.with_suffix(".result.json")
    for command in (["replay", str(path)], ["resume", str(path), "--out", str(out)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "snapshot" in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert not out.exists()
    with pytest.raises(InputError):
        Session.open(path)
    return lines[0]


def _os_system_pickle(command: str) -> bytes:
    """A pickle that calls os.system(command), naming it through a module the old allow-list let
    through: STACK_GLOBAL resolves the dotted name `os.system` under `core.desk.operators`."""

    def text(value: str) -> bytes:
        data = value.encode()
        return b"\x8c" + bytes([len(data)]) + data

    return (
        b"\x80\x04"
        + text("core.desk.operators")
        + text("os.system")
        + b"\x93"
        + text(command)
        + b"\x85R."
    )


def test_a_snapshot_pickle_naming_os_system_is_refused(
    run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(run, tmp_path)
    marker = tmp_path / "ran"
    attack = _os_system_pickle(f"touch {marker}")
    # The old blob layout: b"P" and a raw pickle; the event chunks get one too.
    _rewrite(path, "snapshots", "state", lambda _: b"P" + attack)
    _rewrite(path, "event_chunks", "events", lambda _: b"P" + attack)
    line = _refused(path, capsys, "format")
    assert "run the scenario again" in line
    assert not marker.exists()


def test_a_pickle_inside_the_new_layout_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    attack = _os_system_pickle(f"touch {marker}")
    tree = orjson.dumps({"arrays": [], "root": None})
    for blob in (
        MAGIC + struct.pack("<cQ", b"R", len(attack)) + attack,
        MAGIC + struct.pack("<cQ", b"R", len(tree)) + tree + attack,
        MAGIC + struct.pack("<cQ", b"Z", len(attack)) + zlib.compress(attack),
    ):
        with pytest.raises(SnapshotFormatError):
            load(blob)
    buffer = io.BytesIO()
    np.save(buffer, np.array([attack], dtype=object), allow_pickle=True)
    array = buffer.getvalue()
    tree = orjson.dumps({"arrays": [[0, len(array)]], "root": ["a", 0, 0]})
    with pytest.raises(SnapshotFormatError, match="unreadable array"):
        load(MAGIC + struct.pack("<cQ", b"R", len(tree)) + tree + array)
    assert not marker.exists()


def test_values_of_every_kind_come_back_as_they_were() -> None:
    kinds = [
        AccountKind.TRADER,
        AccountKind.TRADER,  # an enum member twice is the same member, not a reference
        2**70,
        -(2**63),
        float("nan"),
        float("-inf"),
        -0.0,
        Decimal("1234.50000000"),
        Fraction(1, 3),
        datetime(2018, 7, 31, 12, 17, 14, 5, tzinfo=UTC),
        datetime(2018, 7, 31),
        timedelta(days=2, seconds=3, microseconds=4),
        np.int64(7),
        np.float64(0.5),
        np.bool_(True),
        {("BTC-USD", "BTC"): 1, 3: frozenset({"a", "b"}), None: {"x", "y"}},
        np.arange(6, dtype=np.int8).reshape(2, 3),
        (),
        [],
    ]
    shared = [1, 2]
    back = load(dump([kinds, shared, shared], compress=True))
    assert back[1] is back[2] and back[1] == shared
    for before, after in zip(kinds, back[0], strict=True):
        assert type(after) is type(before)
        if isinstance(before, np.ndarray):
            assert after.dtype == before.dtype and (after == before).all()
        elif isinstance(before, float) and before != before:
            assert after != after
        else:
            assert after == before and repr(after) == repr(before)


def test_a_snapshot_that_does_not_match_its_digest_is_refused(
    run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(run, tmp_path)
    with sqlite3.connect(path) as conn:
        tick, blob = conn.execute(
            "SELECT tick, state FROM snapshots ORDER BY tick DESC LIMIT 1"
        ).fetchone()
        flipped = bytearray(blob)
        flipped[len(blob) // 2] ^= 0x01
        conn.execute("UPDATE snapshots SET state = ? WHERE tick = ?", (bytes(flipped), tick))
    _refused(path, capsys, "does not match its digest")


def _unpack(blob: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    mode, length = struct.unpack_from("<cQ", blob, len(MAGIC))
    body = blob[len(MAGIC) + 9 :]
    body = zlib.decompress(body) if mode == b"Z" else body
    document = orjson.loads(body[:length])
    data = body[length:]
    arrays = [
        np.load(io.BytesIO(data[at : at + size]), allow_pickle=False)
        for at, size in document["arrays"]
    ]
    return document, arrays


def _pack(document: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    files = []
    for array in arrays:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        files.append(buffer.getvalue())
    offsets, at = [], 0
    for data in files:
        offsets.append([at, len(data)])
        at += len(data)
    document = {**document, "arrays": offsets}
    tree = orjson.dumps(document)
    return MAGIC + struct.pack("<cQ", b"R", len(tree)) + tree + b"".join(files)


def _engine_fields(document: dict[str, Any]) -> dict[str, Any]:
    engine = document["root"][2]
    assert engine[2] == "Engine"
    return engine[3]  # type: ignore[no-any-return]


def _book_fields(document: dict[str, Any]) -> dict[str, Any]:
    book = _engine_fields(document)["book"]
    assert book[2] == "PositionBook"
    return book[3]  # type: ignore[no-any-return]


def _drop_a_field(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    del _engine_fields(document)["uncovered"]


def _add_a_field(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    _engine_fields(document)["__class__"] = "os.system"


def _float_contracts(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    index = _book_fields(document)["contracts"][2]
    arrays[index] = arrays[index].astype(np.float64)


def _short_contracts(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    index = _book_fields(document)["contracts"][2]
    arrays[index] = arrays[index][:-1]


def _text_tick(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    fields = _engine_fields(document)
    fields["tick"] = str(fields["tick"])


def _text_amount(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    limits = _engine_fields(document)["surveillance"][3]["thresholds"][3]
    name = next(k for k, v in limits.items() if type(v) in (int, float))
    limits[name] = "1e9"


def _unknown_class(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    _engine_fields(document)["ledger"][2] = "core.desk.operators.os.system"


def _a_list_for_a_tuple(document: dict[str, Any], arrays: list[np.ndarray]) -> None:
    _engine_fields(document)["tick"] = [1, 2]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_drop_a_field, ("Engine", "uncovered")),
        (_add_a_field, ("Engine", "__class__")),
        (_float_contracts, ("PositionBook.contracts", "float64")),
        (_short_contracts, ("PositionBook.account", "(299,)")),
        (_text_tick, ("Engine.tick",)),
        (_text_amount, ("Thresholds",)),
        (_unknown_class, ("core.desk.operators.os.system", "may not hold")),
        (_a_list_for_a_tuple, ("holds",)),
    ],
)
def test_a_snapshot_of_another_shape_is_refused(
    run: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Edit,
    words: tuple[str, ...],
) -> None:
    path = _copy(run, tmp_path)

    def change(blob: bytes) -> bytes:
        document, arrays = _unpack(blob)
        edit(document, arrays)
        return _pack(document, arrays)

    _rewrite(path, "snapshots", "state", change)
    _refused(path, capsys, *words)


def test_an_event_chunk_of_other_values_is_refused(
    run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(run, tmp_path)
    _rewrite(path, "event_chunks", "events", lambda _: dump({"not": "events"}, compress=True))
    _refused(path, capsys, "event chunk")


def test_a_store_rebuilt_from_its_snapshots_replays_and_resumes_to_the_same_state(
    run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, final = run
    assert main(["replay", str(path)]) == 0
    assert final in capsys.readouterr().out
    partial = tmp_path / "partial.sqlite"
    session = Session.start(cascade_doc(), partial)
    for _ in range(450):
        session.step()
    session.close()
    out = tmp_path / "result.json"
    assert main(["resume", str(partial), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["state_hash"] == final
    store = Store.open(path)
    recorded = store.recorded_hashes()
    store.close()
    session = Session.open(path)
    for tick in (900, 100, 400):  # a hash every 100 ticks, and at the end
        session.seek(tick)
        assert session.engine.state_hash() == recorded[tick]
    # Between two snapshots: the journal replayed from the one before.
    plain = Session.start(cascade_doc(), None)
    for _ in range(417):
        plain.step()
    session.seek(417)
    assert session.engine.state_hash() == plain.engine.state_hash()
    session.close()


SPEC_EXAMPLE = Path(__file__).parent / "data" / "scenario_spec_example.json"


@pytest.mark.parametrize(
    "source",
    # The demo's third (25 s) in the slow tier keeps the suite within its 10 minutes.
    ["two-traders", pytest.param("okx-2018-btc0928", marks=pytest.mark.slow), "spec example"],
)
def test_a_dumped_engine_steps_on_exactly_as_the_original(source: str) -> None:
    path = SPEC_EXAMPLE if source == "spec example" else builtin_scenarios()[source]
    session = Session.start(json.loads(path.read_text()))
    # A third of the run, at most 4,500 ticks: past the demo's whale liquidation (tick 4,423).
    for _ in range(min(session.engine.ticks_total // 3, 4500)):
        session.step()
    blob = dump((session.engine, session.collector), compress=True)
    engine, collector = load(blob)
    assert collector.engine is engine
    assert dump((engine, collector), compress=True) == blob
    steps = min(200, engine.ticks_total - 1 - engine.tick)
    for i in range(steps):
        assert engine.step() == session.engine.step()
        # A hash is a pass over the book: every 20th tick and the last (a state that parted
        # stays parted; the events are compared at every tick).
        if i % 20 == 0 or i == steps - 1:
            assert engine.state_hash() == session.engine.state_hash()


def test_random_edits_of_a_snapshot_give_a_refusal_never_a_traceback() -> None:
    session = Session.start(json.loads(builtin_scenarios()["two-traders"].read_text()))
    for _ in range(300):
        session.step()
    recorded = session.engine.state_hash()
    blob = dump((session.engine, session.collector), compress=False)
    document, arrays = _unpack(blob)
    places: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            places.append((node, key))
            if isinstance(child, (list, dict)):
                collect(child)

    collect(document["root"])
    rng = np.random.default_rng(12)
    odd = [None, "x", -1, 2**40, 1.5, [], ["o"], ["r", 10**6], {"a": 1}, ["l", 7], ["a", 9, 0]]
    refused = 0
    for _ in range(300):
        node, key = places[int(rng.integers(len(places)))]
        before = node[key]
        node[key] = odd[int(rng.integers(len(odd)))]
        try:
            check_state(load(_pack(document, arrays)), recorded)
        except InputError:
            refused += 1
        finally:
            node[key] = before
    assert refused > 200


def _cascade_events(ticks: int = 450) -> list[Any]:
    session = Session.start(cascade_doc())
    for _ in range(ticks):
        session.step()
    return session.collector.events


def test_a_long_list_of_events_is_written_by_column_and_comes_back_equal() -> None:
    events = _cascade_events()
    kinds = {type(e) for e in events}
    assert len(events) > 200 and len(kinds) >= 4
    blob = dump(events, compress=False)
    document, _ = _unpack(blob)
    assert document["root"][0] == "L"  # by column, not one tagged object per event
    back = load(blob)
    assert [type(e) for e in back] == [type(e) for e in events]
    assert back == events
    assert [repr(e) for e in back[:200]] == [repr(e) for e in events[:200]]


def test_random_edits_of_an_event_chunk_give_a_refusal_never_a_traceback() -> None:
    events = _cascade_events(300)
    document, arrays = _unpack(dump(events, compress=False))
    places: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            if isinstance(child, list) and len(child) > 50:
                places.append((child, int(len(child) // 2)))  # one value in a long column
            places.append((node, key))
            if isinstance(child, (list, dict)):
                collect(child)

    collect(document["root"])
    rng = np.random.default_rng(5)
    odd = [None, "x", -1, 2**62, 1.5, [], ["c"], ["cD", ["x"]], {"a": 1}, "2018-07-31T00:00+05:00"]
    refused = unchanged = 0
    for _ in range(300):
        node, key = places[int(rng.integers(len(places)))]
        before = node[key]
        node[key] = odd[int(rng.integers(len(odd)))]
        try:
            unchanged += load(_pack(document, arrays)) == events
        except SnapshotFormatError:
            refused += 1
        finally:
            node[key] = before
    assert refused > 150 and refused + unchanged < 300  # some edits give other, valid events


# A store written before core/ became packages (tests/core/data/before_packages: the scenario, its
# store after `operators demo` and one warning, and the audit key it was written with). Its
# snapshots name classes by their old modules (`core.positions.PositionBook`).
BEFORE_PACKAGES = Path(__file__).parent / "data" / "before_packages"
BEFORE_PACKAGES_STATE = "88ada00db2fb810374114ef17a26a4854015f00f9b39b6b3b37cac8539d59d2f"


def test_a_store_written_before_the_packages_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.db"
    shutil.copyfile(BEFORE_PACKAGES / "store.db", path)
    key = tmp_path / "audit.key"
    shutil.copyfile(BEFORE_PACKAGES / "key", key)
    key.chmod(0o600)
    monkeypatch.setenv("RISK_CONSOLE_AUDIT_KEY", str(key))
    blob = sqlite3.connect(path).execute("SELECT state FROM snapshots LIMIT 1").fetchone()[0]
    kind, _ = struct.unpack_from("<cQ", blob, len(MAGIC))
    assert kind == b"Z"
    assert b'"core.positions.PositionBook"' in zlib.decompress(blob[len(MAGIC) + 9 :])

    assert main(["replay", str(path)]) == 0
    assert BEFORE_PACKAGES_STATE in capsys.readouterr().out
    assert main(["audit", "verify", str(path)]) == 0
    assert "sound" in capsys.readouterr().out


# A cascade's first 271 events as snapshot format 2 wrote them (numbers and texts one per value),
# written by the code before format 3 from the same scenario and ticks as _cascade_events().
EVENTS_FORMAT_2 = Path(__file__).parent / "data" / "events_format2.snap"


def test_an_event_chunk_of_format_2_still_reads_to_the_same_events() -> None:
    blob = EVENTS_FORMAT_2.read_bytes()
    assert blob[len(MAGIC) - 1] == 2
    assert load(blob) == _cascade_events()


def test_an_event_chunks_numbers_are_arrays_and_its_repeated_texts_are_coded() -> None:
    events = _cascade_events()
    document, arrays = _unpack(dump(events, compress=False))
    tags = {
        name: column[0] for _, columns in document["root"][3] for name, column in columns.items()
    }
    assert tags["contracts"] == "ca" and tags["partial"] == "ca" and tags["symbol"] == "cs"
    assert tags["time"] == "csT" and tags["fill_price"] == "csD"
    contracts = [c["contracts"] for _, c in document["root"][3] if "contracts" in c]
    assert all(len(c) == 2 and arrays[c[1]].dtype == np.int64 for c in contracts)


def test_edits_of_an_event_chunks_arrays_give_a_refusal_never_a_traceback() -> None:
    events = _cascade_events(300)
    document, arrays = _unpack(dump(events, compress=False))
    refused = 0
    for k in range(1, len(arrays)):  # array 0 is the order of the records
        kept = arrays[k]
        for odd in (kept[:-1], kept.astype(np.int32), np.full_like(kept, 255)):
            arrays[k] = odd
            try:
                load(_pack(document, arrays))
            except SnapshotFormatError:
                refused += 1
        arrays[k] = kept
    assert len(arrays) > 10 and refused >= 2 * (len(arrays) - 1)


def test_equal_decimals_of_other_exponents_come_back_each_as_it_was() -> None:
    events = _cascade_events()
    filled = [i for i, e in enumerate(events) if type(e).__name__ == "LiquidationFilled"]
    assert len(filled) >= 2
    for i, price in zip(filled[:2], (Decimal("6000.0"), Decimal("6000.00")), strict=True):
        events[i] = dataclasses.replace(events[i], fill_price=price)
    back = load(dump(events, compress=False))
    assert [str(back[i].fill_price) for i in filled[:2]] == ["6000.0", "6000.00"]


def test_an_int_column_beyond_int64_is_written_as_tagged_values_and_comes_back() -> None:
    events = _cascade_events()
    i = next(k for k, e in enumerate(events) if type(e).__name__ == "LiquidationFilled")
    events[i] = dataclasses.replace(events[i], surplus=2**70)
    back = load(dump(events, compress=False))
    assert back[i].surplus == 2**70 and back == events
