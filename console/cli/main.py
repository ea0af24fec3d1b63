"""The `risk-console` command line: run a scenario headless and write its result."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.cli import actions as cli_actions
from console.cli import feed as cli_feed
from console.cli import keys as cli_keys
from console.cli import operators as cli_operators
from console.cli import report as cli_report
from console.cli import scenario as cli_scenario
from console.cli import whatif as cli_whatif
from console.cli.launch import launch_if_gui, window_option_before
from core.model import files
from core.model.errors import InputError, WriteError
from core.model.events import ActionRecorded, ActionRefused
from core.model.operations import Refusal, refusal_text
from core.scenario.builtin import builtin_scenarios, resolve_scenario
from core.session.collection import pace_for_runs
from core.store.schema import store_write_error

if TYPE_CHECKING:
    from core.session.session import Session

EXIT_BAD_INPUT = 2
# A file or the store could not be written (full disk, quota, read-only folder); what was there
# before is kept.
EXIT_WRITE_FAILED = 3


class _Parser(argparse.ArgumentParser):
    """The command line's parser; `commands` names its subcommands (any other first word is a
    window's PATH, console/cli/launch.py)."""

    commands: frozenset[str] = frozenset()


def _parser() -> _Parser:
    parser = _Parser(
        prog="risk-console",
        description="Risk-operator console for crypto-derivatives exchanges: liquidations, insurance "
        "fund, clawback and auto-deleveraging, replayed from risk-scenario/1 files.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a scenario headless and write its result (risk-result/1)",
        description="Run SCENARIO from start to end and write the result JSON. "
        "Bad input exits with code 2 and a one-line error naming the field.",
    )
    run.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="a risk-scenario/1 JSON file, the name of a built-in one, or a feed (PATH.jsonl, - "
        "or nats://HOST:PORT/STREAM)",
    )
    run.add_argument(
        "--out", required=True, metavar="RESULT", help="where to write the result JSON"
    )
    run.add_argument(
        "--db", metavar="STORE", help="also write the run to a new SQLite store (journal, events)"
    )
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _until_option(run)
    replay = commands.add_parser(
        "replay",
        help="rebuild a store's state from its last snapshot and journal; print the state hash",
        description="Rebuild the state at the store's last committed tick from the last snapshot "
        "plus the journal after it, check it against the hashes the run recorded, and print the "
        "state hash.",
    )
    replay.add_argument("store", metavar="STORE")
    replay.add_argument("--at", type=int, metavar="TICK", help="rebuild the state at TICK instead")
    resume = commands.add_parser(
        "resume",
        help="continue an interrupted run from its store to the end and write its result",
        description="Reopen STORE at its last committed tick, apply the commands given before it "
        "stopped (each applied or refused, and said so) and run to the end of the scenario. Exit 1 "
        "when a journaled command is left unapplied.",
    )
    resume.add_argument("store", metavar="STORE")
    resume.add_argument("--out", required=True, metavar="RESULT", help="where to write the result")
    resume.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _until_option(resume)
    export = commands.add_parser(
        "export",
        help="write one table of a store as CSV, JSON or Parquet",
        description="Write a table of STORE (liquidations, adl, fund_history, settlements, "
        "clawbacks, clawback_allocations, events, account_state, prices, journal, requests, "
        "audit_log, alerts, operators, ...) as CSV or JSON to --out or standard output, or as "
        "Parquet to --out. The table `positions` is the book at the store's last tick, one row "
        "per open position in the columns the positions import reads (docs/exchange-data.md), "
        "as Parquet or CSV. The table `account_state` is brought to the store's last tick first "
        "(a book of over 200,000 positions writes it only then: seconds at 1M accounts).",
    )
    export.add_argument("store", metavar="STORE")
    export.add_argument("--table", required=True, metavar="NAME")
    export.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    export.add_argument("--out", metavar="FILE", help="default: standard output")
    commands.add_parser(
        "scenarios", help="list the built-in scenarios", description="List the built-in scenarios."
    )
    cli_operators.register(commands)
    cli_actions.register(commands)
    cli_report.register(commands)
    cli_scenario.register(commands)
    cli_feed.register(commands)
    cli_keys.register(commands)
    cli_whatif.register(commands)
    parser.commands = frozenset(commands.choices)
    return parser


def command_names() -> frozenset[str]:
    """The subcommands (`run`, `replay`, `operators`, ...)."""
    return _parser().commands


def _until_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--until",
        type=int,
        metavar="TICK",
        help="stop at tick TICK (committed, resumable) instead of the end of the scenario",
    )


def _run_until(session: Session, until: int | None) -> None:
    """Step to the end of the scenario, or to tick `until` when given (the store then ends there,
    ready for commands or `resume`)."""
    while not session.finished and (until is None or session.tick < until):
        session.step()


def _run(args: argparse.Namespace) -> int:
    from core.feed.transports import is_feed_url
    from core.session.session import Session

    if is_feed_url(args.scenario):
        return cli_feed.run_feed(args)
    began = time.perf_counter()
    session = Session.start(resolve_scenario(args.scenario), args.db)
    for leftover in session.store.leftovers if session.store else ():
        print(
            f"risk-console: removed {leftover}, an incomplete store of a run killed before "
            "its first tick",
            file=sys.stderr,
        )
    try:
        _run_until(session, args.until)
        _write_result(session, Path(args.out), began, args.quiet)
    finally:
        session.close()
    return 0


def _resume(args: argparse.Namespace) -> int:
    from core.desk.authority import THRESHOLDS_FIELD
    from core.session.feed_session import is_feed_store
    from core.session.session import Session

    if is_feed_store(args.store):
        return cli_feed.resume_feed(args)
    began = time.perf_counter()
    session = Session.open(args.store)
    try:
        if not args.quiet:
            print(
                f"{args.store}: resuming at tick {session.tick} of {session.engine.ticks_total - 1}"
            )
        if session.queued:
            _print_outcomes(session.apply_pending() if session.finished else session.step())
        _run_until(session, args.until)
        assert session.store is not None
        left = [
            c
            for c in session.store.pending_commands(session.head)
            if THRESHOLDS_FIELD not in c.command
        ]
        _write_result(session, Path(args.out), began, args.quiet)
    finally:
        session.close()
    if left:
        rows = ", ".join(str(c.seq) for c in left)
        print(
            f"risk-console: {len(left)} commands remain unapplied (journal {rows})", file=sys.stderr
        )
        return 1
    return 0


def _print_outcomes(events: list[Any]) -> None:
    """The outcome of each command given before the run stopped, applied now."""
    for event in events:
        if isinstance(event, ActionRecorded):
            print(f"applied {event.operator}'s {event.action}: {event.detail}")
        elif isinstance(event, ActionRefused):
            subject = f"{event.operator}'s {event.action}"
            print(refusal_text(event.reason, event.code, subject), file=sys.stderr)


def _write_result(session: Session, out: Path, began: float, quiet: bool) -> None:
    engine = session.engine
    result = session.result()
    files.write_text(out, json.dumps(result, indent=1) + "\n")
    if not quiet:
        elapsed = time.perf_counter() - began
        print(
            f"{engine.scenario.name}: {engine.tick + 1} ticks, {len(engine.book)} positions, "
            f"{len(result['liquidations'])} liquidations, {len(result['clawbacks'])} clawbacks "
            f"in {elapsed:.1f} s -> {out}  state {result['state_hash'][:16]}"
        )


def _replay(args: argparse.Namespace) -> int:
    from core.session.session import Session

    began = time.perf_counter()
    session = Session.open(args.store, at=args.at)
    try:
        recorded = session.store.recorded_hashes().get(session.tick) if session.store else None
        state_hash = session.engine.state_hash()
        print(f"tick {session.tick} of {session.engine.ticks_total - 1}  state {state_hash}")
        if recorded is not None and recorded != state_hash:
            print(f"risk-console: the run recorded state {recorded} at that tick", file=sys.stderr)
            return 1
        print(f"rebuilt in {time.perf_counter() - began:.2f} s", file=sys.stderr)
    finally:
        session.close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from core.store.positions_export import positions_table, store_table, write_table
    from core.store.queries import (
        ACCOUNT_STATE,
        EXPORTABLE,
        POSITIONS,
        check_export,
        export_to,
    )
    from core.store.store import Store

    check_export(args.table, args.format)
    if (args.format == "parquet" or args.table == POSITIONS) and not args.out:
        raise InputError("--out", f"expected a file to write {args.table} as {args.format} to")
    if args.table in (POSITIONS, ACCOUNT_STATE):
        from core.session.session import Session

        session = Session.open(args.store)
        try:
            if args.table == POSITIONS:
                count = write_table(positions_table(session.engine), args.format, Path(args.out))
            else:
                session.update_account_state()
        finally:
            session.close()
    if args.table != POSITIONS:
        store = Store.open(args.store)
        try:
            if args.format == "parquet":
                table = store_table(store.db, args.table, EXPORTABLE[args.table])
                count = write_table(table, "parquet", Path(args.out))
            else:
                out = Path(args.out) if args.out else None
                count = export_to(store.db, args.table, args.format, out)
        finally:
            store.close()
    if args.out:
        print(f"{count} rows of {args.table} -> {args.out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    pace_for_runs()
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    code = launch_if_gui(arguments, parser.commands)
    if code is not None:
        return code
    misplaced = window_option_before(arguments, parser.commands)
    if misplaced is not None:
        print(
            f"risk-console: error: {misplaced} is an option of the window, not of a command "
            "(`risk-console --help` lists the commands)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    args = parser.parse_args(arguments)
    try:
        modules = (
            cli_operators,
            cli_actions,
            cli_report,
            cli_scenario,
            cli_feed,
            cli_keys,
            cli_whatif,
        )
        for module in modules:
            handled = module.handle(args)
            if handled is not None:
                return handled
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        if args.command == "scenarios":
            for name, path in builtin_scenarios().items():
                print(f"{name}\t{path}")
            return 0
    except InputError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Refusal as refusal:
        print(f"risk-console: {refusal_text(refusal.reason, refusal.code)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WriteError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except sqlite3.Error as error:
        failure = store_write_error(
            getattr(args, "db", None) or getattr(args, "store", "STORE"), error
        )
        if failure is None:
            raise
        print(f"risk-console: error: {failure}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    parser.print_help()
    return 0


COMMANDS = {"run": _run, "resume": _resume, "replay": _replay, "export": _export}

if __name__ == "__main__":
    sys.exit(main())
