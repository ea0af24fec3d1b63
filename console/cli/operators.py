"""The `risk-console operators ...` and `risk-console audit ...` commands: managing operator
identities in a store (unlocking them after failed logins) and verifying, anchoring, sealing or
listing its audit log. Wired into console/cli/main.py."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from core.desk import audit, audit_key, operators
from core.desk.authority import unproven_commands
from core.model.errors import InputError
from core.model.operations import Refusal, refusal_text
from core.model.text import printable

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
    unlock = verbs.add_parser(
        "unlock",
        help="lift a lockout after failed logins",
        description="Clear the failed logins of NAME, lifting its lockout or delay. With --as, an "
        "admin logs in to do it (password as for the other commands); without it the change is "
        "made through the store file by the OS user, as the other operators commands are.",
    )
    _store_and_name(unlock)
    unlock.add_argument("--as", dest="admin", metavar="ADMIN", help="the admin lifting it")
    _password_options(unlock)
    _reason(unlock)

    log = commands.add_parser(
        "audit",
        help="verify or list a store's audit log",
        description="The audit log of STORE: HMAC-chained, append-only.",
    )
    audit_verbs = log.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_verbs.add_parser(
        "verify",
        help="check the hash chain; exit 1 naming the first broken row",
        description="Check the audit log's keyed hash chain (the key file of docs/operators.md) "
        "and its append-only triggers. Exits 0 and prints the head hash when it is sound, 1 naming "
        "the first broken row or what is missing otherwise. Rows cut from the end of the log, or "
        "a chain rewritten with the key, leave a sound chain: record its head with `audit anchor` "
        "and pass the file to --anchor (or a head hash to --expect-head).",
    )
    verify.add_argument("store", metavar="STORE", help="the store file")
    verify.add_argument(
        "--expect-head", metavar="HASH", help="a head hash recorded earlier; it must be in the log"
    )
    verify.add_argument(
        "--anchor",
        metavar="FILE",
        help="an anchor file of `audit anchor`: every head it records "
        "must be in the log, at its row",
    )
    anchor = audit_verbs.add_parser(
        "anchor",
        help="record the log's head (rows and hash) outside the store",
        description="Verify the audit log, then print its head (row count and hash) as a JSON "
        "line and, with --out, append it to FILE. Keep FILE away from the store (another "
        "machine, a ticket): `audit verify --anchor FILE` then catches rows cut from the end and "
        "a chain rewritten whole.",
    )
    anchor.add_argument("store", metavar="STORE", help="the store file")
    anchor.add_argument("--out", metavar="FILE", help="the anchor file to append the head to")
    seal = audit_verbs.add_parser(
        "seal",
        help="key the audit log of a store written before keyed chains",
        description="Append one keyed row vouching for the unkeyed rows of a store written "
        "before keyed chains, so that later rows can be written. Check the log first.",
    )
    seal.add_argument("store", metavar="STORE", help="the store file")
    _reason(seal)
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
            return _audit(args, now(), out)
        return _operators(args, now(), stdin or sys.stdin, out)
    except InputError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
    except sqlite3.DatabaseError as error:
        print(f"risk-console: error: STORE: {args.store}: {error}", file=sys.stderr)
    except Refusal as refusal:
        print(f"risk-console: {refusal_text(refusal.reason, refusal.code)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _open(path: str) -> Any:
    from core.store.schema import connect

    return connect(path)


def os_user() -> str:
    """The user this process runs as, from the OS (not LOGNAME or USER, which anyone sets)."""
    try:
        import pwd
    except ImportError:  # Windows: the logon name from the system, not %USERNAME%
        return os.getlogin()
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return f"uid-{os.getuid()}"


def _actor() -> str:
    return operators.local_actor(os_user())


def _operators(args: argparse.Namespace, at: datetime, stdin: TextIO, out: TextIO) -> int:
    verb = args.operators_command
    password = ""
    if verb in ("add", "passwd"):
        password = read_password(args, stdin, f"New password for {args.name}: ", confirm=True)
    elif verb == "unlock" and args.admin:
        password = read_password(args, stdin, f"Password for {args.admin}: ")
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
        elif verb == "unlock":
            if args.admin:
                actor = operators.authenticate(db, args.admin, password, at=at).name
            cleared = operators.unlock(db, args.name, actor=actor, at=at, reason=reason)
            print(f"{args.name} unlocked ({cleared} failed logins cleared)", file=out)
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


def _audit(args: argparse.Namespace, at: datetime, out: TextIO) -> int:
    db = _open(args.store)
    try:
        if args.audit_command == "verify":
            anchors = audit_key.read_anchors(Path(args.anchor)) if args.anchor else ()
            result = audit.verify(db, expected_head=args.expect_head, anchors=anchors)
            print(result.message(), file=out)
            # Commands in the journal without their login and audit entry (core.desk.authority); the
            # check needs the log, whose absence verify has reported already.
            unproven = unproven_commands(db) if db["audit_log"].exists() else []
            for line in unproven:
                print(printable(line), file=out)
            return EXIT_OK if result.ok and not unproven else EXIT_BROKEN
        if args.audit_command == "anchor":
            return _anchor(db, args, at, out)
        if args.audit_command == "seal":
            entry = audit.seal(db, at=at, operator=_actor(), reason=args.reason)
            print(f"audit log keyed from row {entry.seq}", file=out)
            return EXIT_OK
        _list_audit(db, args, out)
        return EXIT_OK
    finally:
        db.conn.close()


def _anchor(db: Any, args: argparse.Namespace, at: datetime, out: TextIO) -> int:
    result = audit.verify(db)
    if not result.ok:
        print(result.message(), file=out)
        return EXIT_BROKEN
    store = Path(args.store).resolve()
    anchor = audit_key.Anchor(result.rows, result.head_hash, audit.format_time(at), str(store))
    if args.out:
        audit_key.write_anchor(Path(args.out), anchor, store)
    print(json.dumps(dataclasses.asdict(anchor), sort_keys=True), file=out)
    return EXIT_OK


def _list_audit(db: Any, args: argparse.Namespace, out: TextIO) -> None:
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
            # ASCII only: a name or reason cannot reorder or recolour the terminal showing it.
            print(json.dumps(dataclasses.asdict(entry), sort_keys=True), file=out)
        else:
            # One row a line, one field a column: a stored newline or tab is shown escaped.
            fields = (
                entry.operator,
                entry.kind,
                entry.subject,
                entry.reason,
                entry.before or "",
                entry.after or "",
            )
            print("\t".join([str(entry.seq), *map(printable, (entry.at, *fields))]), file=out)
