"""The audit chain against someone who has the store file but not the key file or the anchor:
appended, cut and rewritten chains, dropped triggers and a dropped table; legacy stores; the key
file itself."""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from console.cli import operators as cli_operators
from core.desk import audit
from core.desk.audit_key import Anchor, load_key, read_anchors, write_anchor
from core.model.errors import InputError
from core.model.operations import Refusal
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)
INSERT = (
    "INSERT INTO audit_log (seq, at, operator, kind, subject, reason, before, after, prev_hash, "
    "hash) VALUES (:seq, :at, :operator, :kind, :subject, :reason, :before, :after, :prev_hash, "
    ":hash)"
)


@pytest.fixture
def store(tmp_path: Path, audit_key_file: Path) -> Path:
    """Six keyed rows, under a key of this test's own (some tests break the key file)."""
    path = tmp_path / "store.sqlite"
    db = connect(path, create=True)
    _fill(db, 6)
    db.conn.close()
    return path


def _fill(db: sqlite_utils.Database, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        audit.append(
            db,
            at=T0 + timedelta(minutes=i),
            operator="carol",
            kind="approval",
            subject=f"request:cut-{i}",
            reason=f"approved {i}",
            after={"step": i},
        )


def _run(*argv: str) -> tuple[int | None, str]:
    parser = argparse.ArgumentParser(prog="risk-console")
    cli_operators.register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    out = io.StringIO()
    code = cli_operators.handle(parser.parse_args(argv), clock=lambda: T0, out=out)
    return code, out.getvalue()


def _forge(db: sqlite_utils.Database, seq: int, prev_hash: str, key: bytes | None = None) -> str:
    """Write row `seq` the way someone with the file would: the documented hash, given a key."""
    fields = {
        "seq": seq,
        "at": "2018-07-31T12:00:00.000Z",
        "operator": "mallory",
        "kind": "approval",
        "subject": "request:inject-1",
        "reason": "approved",
        "before": None,
        "after": None,
    }
    digest = audit.row_hash(prev_hash, fields, key)
    db.conn.execute(INSERT, fields | {"prev_hash": prev_hash, "hash": digest})
    return digest


def _rewrite(db: sqlite_utils.Database, key: bytes | None) -> None:
    """Replace the whole log by a shorter one whose every hash is right (for `key`)."""
    db.conn.execute("DROP TRIGGER audit_log_no_delete")
    db.conn.execute("DELETE FROM audit_log")
    prev = audit.GENESIS_HASH
    for seq in (1, 2, 3):
        prev = _forge(db, seq, prev, key)
    db.conn.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )


def test_appended_audit_rows_with_correct_hashes_are_caught(store: Path) -> None:
    db = connect(store)
    head = audit.head_hash(db)
    # The documented sha256 of the row's bytes, linked to the head: right in every way but the key.
    _forge(db, 7, head)
    result = audit.verify(db, expected_head=head)
    assert (result.ok, result.broken_seq, result.rows) == (False, 7, 6)
    assert "not keyed" in (result.problem or "")
    assert _run("audit", "verify", str(store), "--expect-head", head)[0] == 1
    # And no later row can be written on top of it.
    with pytest.raises(InputError) as error:
        _fill(db, 1, start=7)
    assert error.value.field == "audit key"


def test_a_row_appended_with_another_key_is_caught(store: Path) -> None:
    db = connect(store)
    _forge(db, 7, audit.head_hash(db), key=os.urandom(32))
    result = audit.verify(db)
    assert result.broken_seq == 7 and "does not match" in (result.problem or "")


def test_a_cut_audit_tail_is_caught_by_the_anchor(store: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "elsewhere" / "anchors.jsonl"
    code, line = _run("audit", "anchor", str(store), "--out", str(anchors))
    assert code == 0
    recorded = read_anchors(anchors)
    assert [(a.rows, a.head) for a in recorded] == [(6, audit.head_hash(connect(store)))]
    assert line.strip().startswith("{") and recorded[0].head in line
    db = connect(store)
    _fill(db, 2, start=6)  # rows after the anchor do not matter
    assert _run("audit", "verify", str(store), "--anchor", str(anchors))[0] == 0
    db.conn.execute("DROP TRIGGER audit_log_no_delete")
    db.conn.execute("DELETE FROM audit_log WHERE seq >= 5")
    db.conn.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )
    assert audit.verify(db).ok  # triggers back, the chain alone cannot see the cut
    code, text = _run("audit", "verify", str(store), "--anchor", str(anchors))
    assert code == 1
    assert text.startswith("audit log broken at row 5: ") and "removed from the end" in text


def test_a_rewritten_chain_is_caught(store: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    assert _run("audit", "anchor", str(store), "--out", str(anchors))[0] == 0
    db = connect(store)
    # Rewritten without the key: no row is keyed, which verify reports without any anchor.
    _rewrite(db, key=None)
    result = audit.verify(db)
    assert not result.ok and "no row of the 3 is keyed" in (result.problem or "")
    # Rewritten with a key of the forger's own: the first row does not match the real key.
    _rewrite(db, key=os.urandom(32))
    assert audit.verify(db).broken_seq == 1
    # Rewritten by someone holding the key: only the anchor kept elsewhere shows it.
    _rewrite(db, key=load_key())
    assert audit.verify(db).ok
    result = audit.verify(db, anchors=read_anchors(anchors))
    assert not result.ok and result.broken_seq == 4
    _fill(db, 3, start=10)
    result = audit.verify(db, anchors=read_anchors(anchors))
    assert result.broken_seq == 6 and "rewritten" in (result.problem or "")


def test_dropped_audit_triggers_are_reported(store: Path) -> None:
    db = connect(store)
    db.conn.execute("DROP TRIGGER audit_log_no_update")
    result = audit.verify(db)
    assert not result.ok and result.broken_seq is None
    assert result.problem == (
        "the append-only triggers are missing (audit_log_no_update): someone dropped them"
    )
    code, text = _run("audit", "verify", str(store))
    assert (code, text) == (1, f"audit log unsound: {result.problem}\n")
    # A broken row and the dropped trigger are both named.
    db.conn.execute("UPDATE audit_log SET reason = 'nothing' WHERE seq = 2")
    result = audit.verify(db)
    assert result.broken_seq == 2 and "triggers are missing" in (result.problem or "")


def test_a_dropped_audit_table_is_one_line(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = connect(store)
    db.conn.execute("DROP TABLE audit_log")
    db.conn.close()
    code, text = _run("audit", "verify", str(store))
    assert (code, text) == (1, "audit log unsound: the store has no audit_log table (dropped)\n")
    assert _run("audit", "list", str(store)) == (2, "")
    assert _run("audit", "anchor", str(store))[0] == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"risk-console: error: STORE: {store}: no such table: audit_log"]


def _legacy_store(path: Path) -> sqlite_utils.Database:
    """A store as written before keyed chains: rows hashed with plain sha256."""
    db = connect(path, create=True)
    prev = audit.GENESIS_HASH
    for seq in (1, 2, 3):
        prev = _forge(db, seq, prev)
    return db


def test_a_legacy_chain_is_reported_and_keyed_by_a_seal(tmp_path: Path) -> None:
    db = _legacy_store(tmp_path / "old.sqlite")
    result = audit.verify(db)
    assert not result.ok and "before keyed chains" in (result.problem or "")
    with pytest.raises(InputError) as error:
        _fill(db, 1)
    assert error.value.field == "audit key" and "audit seal" in str(error.value)
    assert audit.count(db) == 3
    sealed = audit.seal(db, at=T0, operator="local:root", reason="checked against ticket 12")
    assert sealed.seq == 4
    assert sealed.after_value() == {"legacy_rows": 3, "legacy_head": sealed.prev_hash}
    _fill(db, 2)
    result = audit.verify(db)
    assert (result.ok, result.rows, result.legacy_rows) == (True, 6, 3)
    assert result.message().endswith("(3 legacy rows before keying)")
    with pytest.raises(Refusal):
        audit.seal(db, at=T0, operator="local:root")


def test_the_key_file_is_private_and_refused_when_it_is_not(
    store: Path, audit_key_file: Path
) -> None:
    assert audit_key_file.stat().st_mode & 0o777 == 0o600
    audit_key_file.chmod(0o644)
    result = audit.verify(connect(store))
    assert not result.ok and (result.problem or "").startswith("audit key: ")
    assert "chmod 600" in (result.problem or "")
    with pytest.raises(InputError) as error:
        _fill(connect(store), 1, start=6)
    assert error.value.field == "audit key"


def test_a_store_whose_key_is_missing_is_not_written_with_a_new_one(
    store: Path, audit_key_file: Path
) -> None:
    audit_key_file.unlink()
    db = connect(store)
    with pytest.raises(InputError) as error:
        _fill(db, 1, start=6)
    assert "no audit key" in str(error.value)
    assert not audit_key_file.exists()
    result = audit.verify(db)
    assert result.broken_seq == 1 and "no audit key" in (result.problem or "")


def test_the_anchor_is_kept_outside_the_store(store: Path) -> None:
    with pytest.raises(InputError):
        write_anchor(store, Anchor(1, "0" * 64, "t", str(store)), store)
    assert sqlite3.connect(store).execute("SELECT count(*) FROM audit_log").fetchone() == (6,)
