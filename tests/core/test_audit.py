"""The hash-chained audit log: appends, transactions, filters, and tampering named by verify."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlite_utils

from core.desk import audit
from core.desk.audit_key import load_key
from core.model.errors import InputError
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    return connect(tmp_path / "store.sqlite", create=True)


def _fill(db: sqlite_utils.Database, n: int = 6) -> list[audit.AuditEntry]:
    people = ["alice", "carol", "bob"]
    kinds = ["login", "action", "request", "approval"]
    return [
        audit.append(
            db,
            at=T0 + timedelta(minutes=i),
            operator=people[i % 3],
            kind=kinds[i % 4],
            subject=f"account:{1000 + i}",
            reason=f"reason {i}",
            before={"flags": "none"} if i % 2 else None,
            after={"flags": "frozen", "step": i},
        )
        for i in range(n)
    ]


def _tamper(db: sqlite_utils.Database, *statements: str) -> None:
    """Edit the log as someone with write access to the file would: drop the triggers first."""
    db.conn.execute("DROP TRIGGER audit_log_no_update")
    db.conn.execute("DROP TRIGGER audit_log_no_delete")
    for sql in statements:
        db.conn.execute(sql)


def test_rows_chain_from_genesis_and_hash_the_documented_bytes(
    db: sqlite_utils.Database, audit_key_file: Path
) -> None:
    entries = _fill(db)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].prev_hash == audit.GENESIS_HASH
    for previous, entry in itertools.pairwise(entries):
        assert entry.prev_hash == previous.hash
    assert audit.head_hash(db) == entries[-1].hash
    # The format an outside tool verifies with, given the key file:
    # HMAC-SHA256(key, prev_hash + canonical JSON of the fields).
    e = entries[1]
    payload = json.dumps(
        {
            "seq": e.seq,
            "at": e.at,
            "operator": e.operator,
            "kind": e.kind,
            "subject": e.subject,
            "reason": e.reason,
            "before": e.before,
            "after": e.after,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    key = bytes.fromhex(audit_key_file.read_text())
    assert e.hash == hmac.new(key, (e.prev_hash + payload).encode(), hashlib.sha256).hexdigest()
    assert e.at == "2018-07-31T10:01:00.000Z"


def test_before_and_after_are_canonical_json(db: sqlite_utils.Database) -> None:
    entry = audit.append(
        db,
        at="2018-07-31T12:00:00+02:00",
        operator="carol",
        kind="settings",
        subject="threshold:concentration",
        reason="tightened",
        before={"z": 1, "a": "Zürich"},
        after={"share": Decimal("0.150"), "since": T0, "list": [3, 1]},
    )
    assert entry.before == '{"a":"Zürich","z":1}'
    assert entry.after == ('{"list":[3,1],"share":"0.150","since":"2018-07-31T10:00:00.000Z"}')
    assert entry.at == "2018-07-31T10:00:00.000Z"
    stored = db.conn.execute("SELECT before, after FROM audit_log").fetchone()
    assert stored == (entry.before, entry.after)
    assert audit.rows(db)[0].after_value()["share"] == "0.150"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"operator": ""}, "operator"),
        ({"operator": None}, "operator"),
        ({"subject": "  "}, "subject"),
        ({"kind": "Login!"}, "kind"),
        ({"kind": ""}, "kind"),
        ({"at": datetime(2018, 7, 31, 10)}, "at"),
        ({"at": "yesterday"}, "at"),
        ({"after": {"ratio": float("nan")}}, "after"),
        ({"before": {"obj": object()}}, "before"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    db: sqlite_utils.Database, change: dict[str, object], field: str
) -> None:
    _fill(db, 2)
    head = audit.head_hash(db)
    fields: dict[str, object] = {
        "at": T0,
        "operator": "alice",
        "kind": "action",
        "subject": "account:1",
        "reason": "r",
    } | change
    with pytest.raises(InputError) as error:
        audit.append(db, **fields)  # type: ignore[arg-type]
    assert error.value.field == field
    assert audit.count(db) == 2
    assert audit.head_hash(db) == head


def test_append_leaves_the_callers_transaction_to_the_caller(
    db: sqlite_utils.Database, tmp_path: Path
) -> None:
    _fill(db, 1)
    other = sqlite3.connect(tmp_path / "store.sqlite")
    db.conn.execute("BEGIN IMMEDIATE")
    audit.append(db, at=T0, operator="alice", kind="action", subject="account:1", reason="x")
    assert db.conn.in_transaction
    # Not committed yet: another connection still sees one row.
    assert other.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 1
    db.conn.execute("ROLLBACK")
    assert audit.count(db) == 1

    with db.atomic():
        audit.append(db, at=T0, operator="alice", kind="action", subject="account:1", reason="y")
        audit.append(db, at=T0, operator="carol", kind="approval", subject="req:1", reason="ok")
    assert other.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 3

    with pytest.raises(RuntimeError), db.conn:
        db.conn.execute("BEGIN IMMEDIATE")
        audit.append(db, at=T0, operator="alice", kind="action", subject="account:1", reason="z")
        raise RuntimeError("the action failed after its audit row")
    assert audit.count(db) == 3
    assert audit.verify(db).ok
    other.close()


def test_the_store_refuses_to_update_or_delete_audit_rows(db: sqlite_utils.Database) -> None:
    _fill(db, 3)
    assert audit.is_append_only(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("UPDATE audit_log SET reason = 'nothing happened' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.conn.execute("DELETE FROM audit_log WHERE seq = 3")
    assert audit.count(db) == 3
    assert audit.verify(db).ok


def test_verify_a_sound_log_and_an_empty_one(db: sqlite_utils.Database) -> None:
    empty = audit.verify(db)
    assert (empty.ok, empty.rows, empty.head_hash) == (True, 0, audit.GENESIS_HASH)
    entries = _fill(db)
    result = audit.verify(db)
    assert result.ok and result.rows == 6 and result.head_hash == entries[-1].hash
    assert entries[-1].hash in result.message()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET reason = 'routine check' WHERE seq = 3",
        "UPDATE audit_log SET operator = 'mallory' WHERE seq = 3",
        'UPDATE audit_log SET after = \'{"flags":"none","step":2}\' WHERE seq = 3',
        "UPDATE audit_log SET at = '2018-07-31T09:00:00.000Z' WHERE seq = 3",
        "UPDATE audit_log SET hash = substr(hash, 2) || substr(hash, 1, 1) WHERE seq = 3",
    ],
)
def test_verify_names_a_changed_row(db: sqlite_utils.Database, statement: str) -> None:
    _fill(db)
    _tamper(db, statement)
    result = audit.verify(db)
    assert not result.ok
    assert result.broken_seq == 3
    assert result.rows == 2  # rows before the break are sound
    assert "row 3" in result.message()


def test_verify_names_a_changed_row_that_was_re_hashed_at_the_next_link(
    db: sqlite_utils.Database,
) -> None:
    entries = _fill(db)
    e = entries[2]
    fields = {
        "seq": e.seq,
        "at": e.at,
        "operator": e.operator,
        "kind": e.kind,
        "subject": e.subject,
        "reason": "nothing to see",
        "before": e.before,
        "after": e.after,
    }
    # Even someone holding the key cannot re-hash one row without breaking the next link.
    forged = audit.row_hash(e.prev_hash, fields, load_key())
    _tamper(db, f"UPDATE audit_log SET reason = 'nothing to see', hash = '{forged}' WHERE seq = 3")
    result = audit.verify(db)
    assert result.broken_seq == 4
    assert "prev_hash" in (result.problem or "")
    # Without the key, the re-hashed row is caught by itself.
    plain = audit.row_hash(e.prev_hash, fields)
    db.conn.execute(f"UPDATE audit_log SET hash = '{plain}' WHERE seq = 3")
    result = audit.verify(db)
    assert result.broken_seq == 3
    assert "not keyed" in (result.problem or "")


def test_verify_names_a_deleted_row(db: sqlite_utils.Database) -> None:
    _fill(db)
    _tamper(db, "DELETE FROM audit_log WHERE seq = 4")
    result = audit.verify(db)
    assert result.broken_seq == 4
    assert "missing" in (result.problem or "")


def test_verify_names_a_deleted_row_hidden_by_renumbering(db: sqlite_utils.Database) -> None:
    _fill(db)
    _tamper(
        db,
        "DELETE FROM audit_log WHERE seq = 2",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2",
    )
    result = audit.verify(db)
    assert result.broken_seq == 2
    assert "prev_hash" in (result.problem or "")


def test_verify_names_reordered_rows(db: sqlite_utils.Database) -> None:
    _fill(db)
    _tamper(
        db,
        "UPDATE audit_log SET seq = 100 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = 100",
    )
    result = audit.verify(db)
    assert result.broken_seq == 2


def test_verify_names_an_appended_row_with_a_wrong_prev_hash(db: sqlite_utils.Database) -> None:
    _fill(db)
    fields = {
        "seq": 7,
        "at": "2018-07-31T11:00:00.000Z",
        "operator": "carol",
        "kind": "approval",
        "subject": "request:cut-1",
        "reason": "approved",
        "before": None,
        "after": None,
    }
    wrong_prev = "ab" * 32
    # Its own hash is consistent with its content; only the link to row 6 is wrong.
    forged = audit.row_hash(wrong_prev, fields)
    db.conn.execute(
        "INSERT INTO audit_log (seq, at, operator, kind, subject, reason, before, after, "
        "prev_hash, hash) VALUES (:seq, :at, :operator, :kind, :subject, :reason, :before, "
        ":after, :prev, :hash)",
        fields | {"prev": wrong_prev, "hash": forged},
    )
    result = audit.verify(db)
    assert result.broken_seq == 7
    assert result.rows == 6


def test_verify_names_a_row_inserted_before_the_first(db: sqlite_utils.Database) -> None:
    _fill(db, 2)
    db.conn.execute(
        "INSERT INTO audit_log VALUES (0, '2018-01-01T00:00:00.000Z', 'x', 'action', 's', '', "
        f"NULL, NULL, '{audit.GENESIS_HASH}', '{'0' * 64}')"
    )
    assert audit.verify(db).broken_seq == 0


def test_expected_head_catches_rows_cut_from_the_end(db: sqlite_utils.Database) -> None:
    entries = _fill(db)
    recorded = entries[-1].hash
    assert audit.verify(db, expected_head=recorded).ok
    _fill(db, 2)  # later rows do not matter: the recorded head is still in the chain
    assert audit.verify(db, expected_head=recorded).ok
    _tamper(db, "DELETE FROM audit_log WHERE seq >= 6")
    # The chain alone cannot see a cut tail; only the dropped triggers give it away.
    chain_only = audit.verify(db)
    assert chain_only.broken_seq is None and "triggers" in (chain_only.problem or "")
    cut = audit.verify(db, expected_head=recorded)
    assert not cut.ok and cut.broken_seq == 6
    with pytest.raises(InputError) as error:
        audit.verify(db, expected_head="not-a-hash")
    assert error.value.field == "expected_head"


def test_rows_filter_page_and_count(db: sqlite_utils.Database) -> None:
    _fill(db, 12)
    assert [e.seq for e in audit.rows(db, limit=3)] == [12, 11, 10]
    assert [e.seq for e in audit.rows(db, limit=3, offset=3, newest_first=False)] == [4, 5, 6]
    carol = audit.rows(db, operator="carol")
    assert [e.seq for e in carol] == [11, 8, 5, 2]
    assert audit.count(db, operator="carol") == 4
    assert {e.kind for e in audit.rows(db, kind="approval")} == {"approval"}
    window = audit.rows(db, since=T0 + timedelta(minutes=2), until="2018-07-31T10:05:00Z")
    assert [e.seq for e in window] == [5, 4, 3]
    assert audit.count(db, since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5)) == 3
    both = audit.rows(db, operator="alice", kind="login")
    assert [(e.seq, e.operator, e.kind) for e in both] == [(1, "alice", "login")]
    for bad, field in (
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"since": "x"}, "since"),
    ):
        with pytest.raises(InputError) as error:
            audit.rows(db, **bad)  # type: ignore[arg-type]
        assert error.value.field == field
