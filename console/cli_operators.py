"""The `risk-console operators ...` and `risk-console audit ...` commands: managing operator
identities in a store and verifying or listing its audit log. Wired into console/cli.py."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from core import audit, operators
from core.authority import unproven_commands
from core.controls import Refusal
from core.errors import InputError

EXIT_OK, EXIT_BROKEN, EXIT_BAD_INPUT = 0, 1, 2
COMMANDS = ("operators", "audit")
Clock = Callable[[], datetime]

_PASSWORD_HELP = (
    "Passwords: --password-stdin reads one line from standard input (for scripts: "
    "`printf '%s\\n' \"$PW\" | risk-console ...`); without it a terminal prompts twice. "
    "--password PW also works but leaves the password in the shell history and visible to other "
    "users in the process list: avoid it outside throw-away demos."
)


def register(commands: Any) -> None:
    """Add `operators` and `audit` to the sub-command set of the risk-console parser."""
    ops = commands.add_parser(
        "operators",
        help="add, list, disable or change the password of the operators of a store",
        description="Manage the operators of STORE (a risk-console store). Each change is written "
        "to the store's audit log with the OS user who ran the command. " + _PASSWORD_HELP,
    )
    verbs = ops.add_subparsers(dest="operators_command", metavar="ACTION", required=True)
    add = verbs.add_parser("add", help="add an operator", description="Add an operator.")
    _store_and_name(add)
    add.add_argument("--role", required=True, choices=operators.ROLES, help="the operator's role")
    _password_options(add)
    _reason(add)
    listing = verbs.add_parser("list", help="list the operators", description="List operators.")
    listing.add_argument("store", metavar="STORE", help="the store file")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    for verb, text in (("disable", "stop an operator from logging in"), ("enable", "re-enable")):
        parser = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        _store_and_name(parser)
        _reason(parser)
    passwd = verbs.add_parser(
        "passwd", help="set an operator's password", description="Set an operator's password."
    )
    _store_and_name(passwd)
    _password_options(passwd)
    _reason(passwd)
    role = verbs.add_parser("role", help="change an operator's role", description="Change a role.")
    _store_and_name(role)
    role.add_argument("role", metavar="ROLE", choices=operators.ROLES, help="the new role")
    _reason(role)
    demo = verbs.add_parser(
        "demo",
        help="add the documented demo identities to a store with no operators",
        description="Add the demo identities of docs/operators.md to a store that has no "
        "operators yet (a store with operators is left alone).",
    )
    demo.add_argument("store", metavar="STORE", help="the store file")

    log = commands.add_parser(
        "audit",
        help="verify or list a store's audit log",
        description="The audit log of STORE: hash-chained, append-only.",
    )
    audit_verbs = log.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_verbs.add_parser(
        "verify",
        help="check the hash chain; exit 1 naming the first broken row",
        description="Check the audit log's hash chain. Exits 0 and prints the head hash when it "
        "is sound, 1 naming the first broken row otherwise. Rows cut from the end of the log "
        "leave a sound chain: keep the printed head hash elsewhere and pass it to --expect-head.",
    )
    verify.add_argument("store", metavar="STORE", help="the store file")
    verify.add_argument(
        "--expect-head", metavar="HASH", help="a head hash recorded earlier; it must be in the log"
    )
    show = audit_verbs.add_parser(
        "list", help="print audit rows, newest first", description="Print audit rows."
    )
    show.add_argument("store", metavar="STORE", help="the store file")
    show.add_argument("--operator", help="only rows of this operator")
    show.add_argument("--kind", help="only rows of this kind (login, action, operator, ...)")
    show.add_argument("--since", metavar="TIME", help="ISO time, inclusive")
    show.add_argument("--until", metavar="TIME", help="ISO time, exclusive")
    show.add_argument("--limit", type=int, default=50, help="at most this many rows (50)")
    show.add_argument("--json", action="store_true", help="print JSON lines")


def _store_and_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="STORE", help="the store file")
    parser.add_argument("name", metavar="NAME", help="the operator's name")


def _password_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    source.add_argument(
        "--password", metavar="PW", help="the password itself (visible to others: avoid)"
    )


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why, for the audit log")


def handle(
    args: argparse.Namespace,
    *,
    clock: Clock | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int | None:
    """Run an `operators` or `audit` command; None when `args` is some other command.

    Exit codes: 0 done (or the audit log is sound), 1 the audit log is broken, 2 bad input or a
    refused change, with one line on standard error naming the field or the reason."""
    if getattr(args, "command", None) not in COMMANDS:
        return None
    now = clock or (lambda: datetime.now(UTC))
    out = out or sys.stdout
    try:
        if args.command == "audit":
            return _audit(args, out)
        return _operators(args, now(), stdin or sys.stdin, out)
    except InputError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
    except Refusal as refusal:
        print(f"risk-console: refused ({refusal.code}): {refusal.reason}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _open(path: str) -> Any:
    from core.schema import connect

    return connect(path)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return operators.local_actor(user)


def _operators(args: argparse.Namespace, at: datetime, stdin: TextIO, out: TextIO) -> int:
    verb = args.operators_command
    password = (
        read_password(args, stdin, f"New password for {args.name}: ", confirm=True)
        if verb in ("add", "passwd")
        else ""
    )
    db = _open(args.store)
    try:
        actor, reason = _actor(), getattr(args, "reason", "")
        if verb == "add":
            operators.add_operator(
                db, args.name, args.role, password, actor=actor, at=at, reason=reason
            )
            print(f"added {args.name} ({args.role})", file=out)
        elif verb == "passwd":
            operators.set_password(db, args.name, password, actor=actor, at=at, reason=reason)
            print(f"password of {args.name} changed", file=out)
        elif verb in ("disable", "enable"):
            change = operators.disable if verb == "disable" else operators.enable
            change(db, args.name, actor=actor, at=at, reason=reason)
            print(f"{args.name} {verb}d", file=out)
        elif verb == "role":
            operators.set_role(db, args.name, args.role, actor=actor, at=at, reason=reason)
            print(f"{args.name} is now {args.role}", file=out)
        elif verb == "demo":
            added = operators.ensure_demo_operators(db, at=at)
            print(
                f"added {', '.join(added)}" if added else "the store has operators already",
                file=out,
            )
        else:
            _list_operators(db, args.json, out)
    finally:
        db.conn.close()
    return EXIT_OK


def _list_operators(db: Any, as_json: bool, out: TextIO) -> None:
    for operator in operators.list_operators(db):
        if as_json:
            row = {
                "name": operator.name,
                "role": operator.role,
                "disabled": operator.disabled,
                "created_at": operator.created_at,
                "updated_at": operator.updated_at,
            }
            print(json.dumps(row, sort_keys=True), file=out)
        else:
            status = "disabled" if operator.disabled else "enabled"
            print(f"{operator.name}\t{operator.role}\t{status}\t{operator.created_at}", file=out)


def read_password(
    args: argparse.Namespace, stdin: TextIO, prompt: str, *, confirm: bool = False
) -> str:
    """From --password, one line of --password-stdin, or a terminal prompt (twice to confirm)."""
    if args.password is not None:
        return str(args.password)
    if args.password_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
        if not password:
            raise InputError("password", "no password on standard input")
        return password
    if not stdin.isatty():
        raise InputError(
            "password", "give --password-stdin (or run in a terminal to be asked for it)"
        )
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != first:
        raise InputError("password", "the two entries differ")
    return first


def _audit(args: argparse.Namespace, out: TextIO) -> int:
    db = _open(args.store)
    try:
        if args.audit_command == "verify":
            result = audit.verify(db, expected_head=args.expect_head)
            print(result.message(), file=out)
            unproven = unproven_commands(db)
            for line in unproven:
                print(line, file=out)
            return EXIT_OK if result.ok and not unproven else EXIT_BROKEN
        entries = audit.rows(
            db,
            operator=args.operator,
            kind=args.kind,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
        for entry in entries:
            if args.json:
                row = dataclasses.asdict(entry)
                print(json.dumps(row, sort_keys=True, ensure_ascii=False), file=out)
            else:
                print(
                    f"{entry.seq}\t{entry.at}\t{entry.operator}\t{entry.kind}\t{entry.subject}\t"
                    f"{entry.reason}\t{entry.before or ''}\t{entry.after or ''}",
                    file=out,
                )
        return EXIT_OK
    finally:
        db.conn.close()
