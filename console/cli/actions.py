"""`risk-console action` and `risk-console requests`: operator commands against a store from the
command line, through the same session path (journal, audit, maker-checker) as the console."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from console.cli.operators import read_password
from core.model.errors import InputError
from core.model.events import ActionRecorded, ActionRefused
from core.model.limits import WHOLE
from core.model.operations import refusal_text
from core.scenario.parse import ACTION_FIELDS

EXIT_OK, EXIT_REFUSED = 0, 1
PARAMS = ("account", "message", "symbol", "contracts", "currency", "amount", "family", "price")
PARAMS += ("request", "digest")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    action = commands.add_parser(
        "action",
        help="give an operator command against a store (audited; maker-checker applies)",
        description="Log in as --as, give ACTION with its fields and a reason, apply it at the "
        "store's next tick and print the outcome. Force-reduce, injections and settlement-price "
        "adjustments become requests (give --id) that another supervisor approves with "
        "`action STORE approve --request ID`. Exit 0 applied, 1 refused, 2 bad input.",
    )
    action.add_argument("store", metavar="STORE")
    action.add_argument("action", choices=sorted(ACTION_FIELDS), metavar="ACTION")
    action.add_argument("--as", dest="operator", required=True, metavar="NAME")
    action.add_argument("--reason", required=True)
    action.add_argument(
        "--id", help="the request id (force_reduce, inject, adjust_settlement_price)"
    )
    for name in PARAMS:
        action.add_argument(f"--{name}")
    secret = action.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    secret.add_argument("--password", help="the password (visible to other users of this machine)")
    requests = commands.add_parser(
        "requests",
        help="list a store's maker-checker requests",
        description="List the requests of STORE with their status and preview, newest first.",
    )
    requests.add_argument("store", metavar="STORE")
    requests.add_argument("--status", choices=("pending", "approved", "rejected"))


def handle(args: argparse.Namespace) -> int | None:
    if args.command == "action":
        return _action(args)
    if args.command == "requests":
        return _requests(args)
    return None


def raw_action(args: argparse.Namespace) -> dict[str, Any]:
    """The command as a risk-scenario/1 action; fields the action does not take are an error."""
    raw: dict[str, Any] = {"operator": args.operator, "action": args.action, "reason": args.reason}
    if args.id:
        raw["id"] = args.id
    for name in PARAMS:
        value = getattr(args, name)
        if value is None:
            continue
        if name not in ACTION_FIELDS[args.action] and name != "digest":
            raise InputError(f"--{name}", f"{args.action} takes no {name}")
        # Only ASCII digits make an integer (isdigit() takes full-width ones); anything else goes
        # to the scenario parser as text and is refused there with the field named.
        raw[name] = int(value) if name == "contracts" and WHOLE.fullmatch(value) else value
    return raw


def _action(args: argparse.Namespace) -> int:
    from core.desk.operators import authenticate
    from core.session.session import Session

    session = Session.open(args.store)
    try:
        assert session.store is not None
        operator = authenticate(
            session.store.db,
            args.operator,
            read_password(args, sys.stdin, f"Password for {args.operator}: "),
            at=datetime.now(UTC),
        )
        session.submit(raw_action(args), role=operator.role)
        events = session.apply_pending()
    finally:
        session.close()
    outcome = EXIT_REFUSED
    for event in events:
        own = event.operator == args.operator if hasattr(event, "operator") else False
        if isinstance(event, ActionRecorded) and own:
            print(f"applied: {event.detail}")
            outcome = EXIT_OK
        elif isinstance(event, ActionRefused):
            # Another's command refused in the same tick (one journaled before a stop, or one
            # that was never given through a login) is shown too: the desk must see it.
            who = "" if own else f"{event.operator}'s {event.action}"
            print(refusal_text(event.reason, event.code, who), file=sys.stderr)
    return outcome


def _requests(args: argparse.Namespace) -> int:
    from core.store.store import Store

    store = Store.open(args.store)
    try:
        sql = "SELECT * FROM requests"
        params: list[str] = []
        if args.status:
            sql += " WHERE status = ?"
            params.append(args.status)
        for row in store.db.query(sql + " ORDER BY created_at DESC, id", params):
            print(json.dumps(row, sort_keys=True))
    finally:
        store.close()
    return EXIT_OK
