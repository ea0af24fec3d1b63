"""Nothing half-written: results, exports and new stores appear whole or not at all, a full disk is
one clear line that keeps the previous file, and a store killed at its creation is recoverable."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import EXIT_WRITE_FAILED, main
from core.model import files
from core.model.errors import InputError, WriteError
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.store import queries
from core.store.schema import connect

ROOT = Path(__file__).resolve().parents[2]

# Runs the command line in a child with a file size limit (RLIMIT_FSIZE: a write past it fails
# with EFBIG, like a full disk, or kills the child with SIGXFSZ mid-write) and an optional
# SIGKILL at a named point: just before a rename, or just after a store's creation.
CHILD = """
import os, resource, signal, sys
limit, on_limit, kill_at = int(sys.argv[1]), sys.argv[2], sys.argv[3]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
# Python itself starts with SIGXFSZ ignored.
signal.signal(signal.SIGXFSZ, signal.SIG_DFL if on_limit == "kill" else signal.SIG_IGN)
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def then_die(function):
    def call(*args, **kwargs):
        function(*args, **kwargs)
        die()
    return call

if kill_at == "rename":
    os.replace = die
elif kill_at == "store-created":
    from core.store.store import Store
    Store.create = classmethod(then_die(Store.create.__func__))
elif kill_at == "run-started":
    from core.session.session import Session
    Session.start = classmethod(then_die(Session.start.__func__))
from console.cli.main import main
sys.exit(main(sys.argv[4:]))
"""


def child(
    *args: str, limit: int = 0, on_limit: str = "fail", kill_at: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(limit), on_limit, kill_at, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tiny_scenario(folder: Path, minutes: int = 1) -> Path:
    """The two-traders scenario cut to `minutes` (a minute: 62 ticks)."""
    doc: dict[str, Any] = json.loads(builtin_scenarios()["two-traders"].read_text())
    end = f"2018-07-31T00:{minutes:02d}:01Z"
    doc["instruments"][0]["expiry"] = end
    for series in (doc["market"]["indices"], doc["market"]["marks"]):
        for points in series.values():
            points[-1][0] = end
    path = folder / f"tiny-{minutes}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(scenario, a finished store of it, its final state hash)."""
    folder = tmp_path_factory.mktemp("tiny")
    scenario = tiny_scenario(folder)
    store = folder / "done.sqlite"
    session = Session.start(scenario, store)
    session.run_to_end()
    final = session.result()["state_hash"]
    session.close()
    return scenario, store, final


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{files.TEMP_SUFFIX}*"))


def test_a_kill_during_the_result_write_keeps_the_previous_result(
    tiny: tuple[Path, Path, str], tmp_path: Path
) -> None:
    scenario, _, _ = tiny
    out = tmp_path / "result.json"
    assert main(["run", str(scenario), "--out", str(out), "--quiet"]) == 0
    previous = out.read_bytes()
    assert len(previous) > 1000
    # The kernel kills the run 1000 bytes into writing its result.
    killed = child("run", str(scenario), "--out", str(out), limit=1000, on_limit="kill")
    assert killed.returncode == -signal.SIGXFSZ
    assert out.read_bytes() == previous
    # Killed with the new result complete, just before the rename.
    killed = child("run", str(scenario), "--out", str(out), kill_at="rename")
    assert killed.returncode == -signal.SIGKILL
    assert out.read_bytes() == previous
    assert temporaries(tmp_path)
    # The next write of the same file clears what the killed writers left.
    assert main(["run", str(scenario), "--out", str(out), "--quiet"]) == 0
    assert temporaries(tmp_path) == []
    assert json.loads(out.read_bytes()) == json.loads(previous)


def test_a_full_disk_gives_one_clear_line_and_keeps_the_previous_file(
    tiny: tuple[Path, Path, str], tmp_path: Path
) -> None:
    scenario, store, _ = tiny
    out, table = tmp_path / "result.json", tmp_path / "journal.csv"
    assert main(["run", str(scenario), "--out", str(out), "--quiet"]) == 0
    table.write_text("kept\n")
    before = {path: path.read_bytes() for path in (out, table)}
    # The store is open elsewhere (its WAL index exists): reading it needs no new file.
    reader = sqlite3.connect(store)
    reader.execute("SELECT count(*) FROM journal").fetchone()
    for command, path in (
        (["run", str(scenario), "--out", str(out)], out),
        (["export", str(store), "--table", "journal", "--out", str(table)], table),
        (["report", str(store), "--out", str(tmp_path / "report.json")], None),
    ):
        failed = child(*command, limit=1000)
        assert failed.returncode == EXIT_WRITE_FAILED, failed.stderr
        lines = failed.stderr.splitlines()
        assert len(lines) == 1, failed.stderr
        assert "disk is full" in lines[0]
        if path is not None:
            assert str(path) in lines[0] and "previous file is unchanged" in lines[0]
    reader.close()
    assert {path: path.read_bytes() for path in before} == before
    assert not (tmp_path / "report.json").exists()
    assert temporaries(tmp_path) == []


def test_a_full_disk_during_a_run_leaves_the_store_resumable(tmp_path: Path) -> None:
    # Ten minutes: a journal (in the store's WAL) larger than the new store itself.
    scenario = tiny_scenario(tmp_path, minutes=10)
    plain = Session.start(scenario, None)
    plain.run_to_end()
    final = plain.result()["state_hash"]
    probe = Session.start(scenario, tmp_path / "probe.sqlite")
    created = (tmp_path / "probe.sqlite").stat().st_size
    probe.close()
    store = tmp_path / "full.sqlite"
    # Room for the new store and a few ticks of its journal, not for the whole run.
    failed = child(
        "run", str(scenario), "--out", str(tmp_path / "r.json"), "--db", str(store),
        limit=created + 32_768,
    )  # fmt: skip
    assert failed.returncode == EXIT_WRITE_FAILED, failed.stderr
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and str(store) in lines[0] and "resume" in lines[0], failed.stderr
    session = Session.open(store)
    assert session.store is not None
    assert 0 < session.tick < session.engine.ticks_total - 1
    assert session.store.journal_gaps() == []
    session.run_to_end()
    assert session.result()["state_hash"] == final
    session.close()


def test_a_full_disk_while_creating_a_store_writes_nothing(
    tiny: tuple[Path, Path, str], tmp_path: Path
) -> None:
    scenario, _, _ = tiny
    store = tmp_path / "new.sqlite"
    failed = child("run", str(scenario), "--out", os.devnull, "--db", str(store), limit=20_000)
    assert failed.returncode == EXIT_WRITE_FAILED, failed.stderr
    assert len(failed.stderr.splitlines()) == 1 and "nothing was written" in failed.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_bogus_table_does_not_empty_the_target(
    tiny: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, store, _ = tiny
    keep = tmp_path / "keep.csv"
    keep.write_text("precious\n")
    assert main(["export", str(store), "--table", "bogus", "--out", str(keep)]) == 2
    assert "--table" in capsys.readouterr().err
    db = connect(store)
    with pytest.raises(InputError, match="--format"):
        queries.export_to(db, "journal", "xml", keep)
    db.conn.close()
    assert main(["report", str(store), "--out", str(keep.with_suffix(".txt"))]) == 2
    assert keep.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv"]


def test_audit_verify_on_an_empty_file_does_not_create_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.sqlite"
    for path in (empty, missing):
        for command in (["audit", "verify"], ["operators", "list"], ["replay"], ["export"]):
            extra = ["--table", "journal"] if command == ["export"] else []
            assert main([*command, str(path), *extra]) == 2
            lines = capsys.readouterr().err.splitlines()
            assert len(lines) == 1 and str(path) in lines[0], lines
            assert ("is empty: not a store" if path == empty else "no store at") in lines[0]
    assert empty.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite"]


def test_a_kill_right_after_store_creation_is_recoverable(
    tiny: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario, _, final = tiny
    store, out = tmp_path / "s.sqlite", tmp_path / "r.json"
    run = ["run", str(scenario), "--out", str(out), "--db", str(store)]
    # Killed between the store's creation and its first tick: no store, a clear word from
    # resume, and a new run on the same path goes ahead (clearing the leftover).
    killed = child(*run, kill_at="store-created")
    assert killed.returncode == -signal.SIGKILL
    assert main(["resume", str(store), "--out", str(out)]) == 2
    assert "killed before its first tick" in capsys.readouterr().err
    assert main([*run, "--quiet"]) == 0
    assert "removed" in capsys.readouterr().err
    assert json.loads(out.read_text())["state_hash"] == final
    assert temporaries(tmp_path) == []
    # Killed just after the first tick: the store is whole, and resumes to the same end.
    again = tmp_path / "t.sqlite"
    killed = child(
        "run", str(scenario), "--out", str(out), "--db", str(again), kill_at="run-started"
    )
    assert killed.returncode == -signal.SIGKILL
    assert main(["resume", str(again), "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["state_hash"] == final
    # A store whose creation an older version left cut short (schema, no rows) is replaced.
    cut = tmp_path / "cut.sqlite"
    connect(cut, create=True).conn.close()
    assert main(["resume", str(cut), "--out", str(out)]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main(["run", str(scenario), "--out", str(out), "--db", str(cut), "--quiet"]) == 0
    assert main(["resume", str(cut), "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["state_hash"] == final


def test_a_write_error_names_the_target_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("before")
    with pytest.raises(WriteError) as caught, files.replacing(target) as handle:
        handle.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value).startswith(f"{target}: cannot write: the disk is full")
    assert target.read_text() == "before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
