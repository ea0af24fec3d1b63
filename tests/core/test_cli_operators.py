"""The `operators` and `audit` commands, called through a parser built the way console/cli/main.py
builds its own, and once as a separate process reading its password from standard input."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from console.cli import operators as cli_operators
from core.desk import audit, operators
from core.desk.operators import ScryptParams
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operators, "DEFAULT_SCRYPT", ScryptParams(n=2**10, r=8, p=1))


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = tmp_path / "store.sqlite"
    connect(path, create=True).conn.close()
    return str(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="risk-console")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run")
    cli_operators.register(commands)
    return parser


def run(*argv: str, stdin: str = "") -> tuple[int | None, str]:
    out = io.StringIO()
    code = cli_operators.handle(
        _parser().parse_args(argv), clock=lambda: T0, stdin=io.StringIO(stdin), out=out
    )
    return code, out.getvalue()


def _err(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_other_commands_are_not_handled() -> None:
    assert cli_operators.handle(_parser().parse_args(["run"])) is None


def test_add_list_passwd_disable(store: str) -> None:
    added = run(
        "operators",
        "add",
        store,
        "alice",
        "--role",
        "operator",
        "--password-stdin",
        stdin="alice pass 1\n",
    )
    assert added == (0, "added alice (operator)\n")
    added = run(
        "operators",
        "add",
        store,
        "carol",
        "--role",
        "supervisor",
        "--password",
        "carol pass 1",
        "--reason",
        "new hire",
    )
    assert added == (0, "added carol (supervisor)\n")
    db = connect(store)
    assert operators.authenticate(db, "alice", "alice pass 1", at=T0).role == "operator"
    code, text = run("operators", "list", store)
    assert code == 0
    assert text.splitlines() == [
        "alice\toperator\tenabled\t2018-07-31T10:00:00.000Z",
        "carol\tsupervisor\tenabled\t2018-07-31T10:00:00.000Z",
    ]
    assert (
        run("operators", "passwd", store, "alice", "--password-stdin", stdin="second pass\r\n")[0]
        == 0
    )
    assert operators.authenticate(db, "alice", "second pass", at=T0).name == "alice"
    assert run("operators", "disable", store, "alice", "--reason", "left")[0] == 0
    assert run("operators", "role", store, "carol", "admin")[0] == 0
    code, text = run("operators", "list", store, "--json")
    rows = [json.loads(line) for line in text.splitlines()]
    assert [(r["name"], r["role"], r["disabled"]) for r in rows] == [
        ("alice", "operator", True),
        ("carol", "admin", False),
    ]
    log = audit.rows(db, kind="operator", newest_first=False)
    assert [e.reason for e in log] == [
        "operator added",
        "new hire",
        "password changed",
        "left",
        "role changed",
    ]
    assert all(e.operator.startswith(operators.LOCAL_PREFIX) for e in log)


@pytest.mark.parametrize(
    ("argv", "stdin", "field"),
    [
        (["operators", "add", "{store}", "alice", "--role", "operator", "--password-stdin"],
         "short\n", "password"),
        (["operators", "add", "{store}", "alice", "--role", "operator", "--password-stdin"],
         "", "password"),
        (["operators", "add", "{store}", "alice", "--role", "operator"], "", "password"),
        (["operators", "add", "{store}", "Alice!", "--role", "operator", "--password-stdin"],
         "long enough\n", "name"),
        (["operators", "disable", "{store}", "ghost"], "", "name"),
        (["operators", "list", "{store}.missing"], "", "STORE"),
        (["audit", "verify", "{store}", "--expect-head", "abc"], "", "expected_head"),
        (["audit", "list", "{store}", "--since", "noon"], "", "since"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_naming_the_field(
    store: str, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str, field: str
) -> None:
    before = audit.count(connect(store))
    code, _ = run(*(a.format(store=store) for a in argv), stdin=stdin)
    lines = _err(capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"risk-console: error: {field}: ")
    if not argv[-1].endswith(".missing"):
        assert audit.count(connect(store)) == before


def test_a_refused_change_exits_2_with_its_reason(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("operators", "demo", store) == (0, "added vera, alice, bob, carol, dave, admin\n")
    assert run("operators", "demo", store) == (0, "the store has operators already\n")
    assert run("operators", "disable", store, "admin")[0] == 2
    assert _err(capsys) == [
        "risk-console: refused (last_admin): admin is the last enabled admin; add another admin first"
    ]


def test_an_unknown_role_is_an_argument_error(store: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["operators", "add", store, "alice", "--role", "boss"])
    assert exit_.value.code == 2


def test_audit_verify_exit_codes(store: str) -> None:
    run("operators", "demo", store)
    db = connect(store)
    head = audit.head_hash(db)
    code, text = run("audit", "verify", store)
    assert (code, text) == (0, f"audit log sound: 6 rows, head {head}\n")
    assert run("audit", "verify", store, "--expect-head", head)[0] == 0
    db.conn.execute("DROP TRIGGER audit_log_no_update")
    db.conn.execute("UPDATE audit_log SET reason = 'nothing' WHERE seq = 4")
    code, text = run("audit", "verify", store)
    assert code == 1
    assert text.startswith("audit log broken at row 4: ")


def test_audit_verify_with_a_recorded_head_catches_a_cut_tail(store: str) -> None:
    run("operators", "demo", store)
    db = connect(store)
    head = audit.head_hash(db)
    db.conn.execute("DROP TRIGGER audit_log_no_delete")
    db.conn.execute("DELETE FROM audit_log WHERE seq = 6")
    # Put back as they were, the triggers no longer tell; the chain alone cannot see a cut tail.
    db.conn.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )
    assert run("audit", "verify", store)[0] == 0
    code, text = run("audit", "verify", store, "--expect-head", head)
    assert code == 1 and "row 6" in text


def test_audit_list_filters(store: str) -> None:
    run("operators", "demo", store)
    db = connect(store)
    operators.authenticate(db, "alice", "alice-demo", at=T0)
    code, text = run("audit", "list", store, "--kind", "login", "--json")
    assert code == 0
    rows = [json.loads(line) for line in text.splitlines()]
    assert [(r["seq"], r["operator"], r["kind"]) for r in rows] == [(7, "alice", "login")]
    code, text = run("audit", "list", store, "--operator", "system", "--limit", "2")
    assert [line.split("\t")[0] for line in text.splitlines()] == ["6", "5"]


def test_a_separate_process_reads_the_password_from_stdin(store: str) -> None:
    script = (
        "import sys, argparse\n"
        "from console.cli import operators as cli_operators\n"
        "p = argparse.ArgumentParser(prog='risk-console')\n"
        "cli_operators.register(p.add_subparsers(dest='command'))\n"
        "sys.exit(cli_operators.handle(p.parse_args(sys.argv[1:])))\n"
    )
    argv = [sys.executable, "-c", script, "operators", "add", store, "dave", "--role", "admin"]
    done = subprocess.run(
        [*argv, "--password-stdin"], input="dave pass 1\n", capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "added dave (admin)\n", "")
    assert operators.authenticate(connect(store), "dave", "dave pass 1", at=T0).role == "admin"
    # Without --password-stdin and without a terminal there is nobody to ask.
    done = subprocess.run(
        [*argv[:6], "erin", "--role", "viewer"], input="", capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.startswith("risk-console: error: password: ")
