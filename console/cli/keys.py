"""`risk-console keys new|show` (an operator's key file) and `risk-console send URL` (one operator
command, signed with the operator's key, published into a feed). Wired into console/cli/main.py."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from console.cli.operators import read_password
from core.feed import keys
from core.feed.consumer import REGISTER_KEY, read_header
from core.feed.signing import sign, valid_public_key
from core.feed.transports import first_message, open_writer
from core.model.errors import InputError
from core.model.events import iso
from core.model.scenario_values import Scenario
from core.scenario.fields import _time
from core.scenario.parse import parse_command, parse_scenario

COMMANDS = ("keys", "send")
_DIR_HELP = "the key folder (default: $RISK_CONSOLE_KEYS or ~/.config/risk-console/keys)"


def register(commands: Any) -> None:
    """Add `keys` and `send` to the sub-command set of the risk-console parser."""
    keys_parser = commands.add_parser(
        "keys",
        help="make or show an operator's key pair (feed commands are signed with it)",
        description="An operator's Ed25519 key pair, its private half kept in DIR/NAME.key.json "
        "(mode 0600) encrypted under the operator's password. An admin registers the public key "
        "on a feed with `send URL --register NAME --public-key HEX` (docs/feed.md).",
    )
    verbs = keys_parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = verbs.add_parser(
        "new",
        help="make a key pair for an operator",
        description="Make a key pair for NAME, locked under a password (asked twice in a "
        "terminal, or read from --password-file or --password-stdin), and print its public key.",
    )
    new.add_argument("--operator", required=True, metavar="NAME")
    new.add_argument("--dir", metavar="DIR", help=_DIR_HELP)
    new.add_argument(
        "--replace", action="store_true", help="replace an existing key file (its key is lost)"
    )
    _password_options(new)
    show = verbs.add_parser(
        "show",
        help="print an operator's public key (hex)",
        description="Print the public key of NAME's key file as 64 hex digits.",
    )
    show.add_argument("--operator", required=True, metavar="NAME")
    _key_file_options(show)

    send = commands.add_parser(
        "send",
        help="sign one operator command and publish it into a feed",
        description="Sign COMMAND with NAME's key (its key file, unlocked with the password) and "
        "publish it as a `command` message into the feed at URL (nats://HOST:PORT/STREAM, on "
        "STREAM.commands; or PATH.jsonl, appended). COMMAND is one operator command of "
        "scenario.md's actions, without `at`, as a JSON object or a file holding one; its "
        "`operator` is NAME. An admin registers an operator's public key with --register NAME "
        "--public-key HEX --reason TEXT instead. The command is checked against the feed's "
        "header first: bad input exits 2 naming the option, and nothing is published.",
    )
    # argparse (3.11) takes positionals only in their first run: COMMAND after the options would
    # be "unrecognized" without this parser's own second look.
    send.__class__ = _SendParser
    send.add_argument("url", metavar="URL", help="nats://HOST:PORT/STREAM or PATH.jsonl")
    send.add_argument(
        "command_text", nargs="?", metavar="COMMAND", help="a JSON object, or a JSON file"
    )
    send.add_argument("--operator", required=True, metavar="NAME", help="who signs")
    _key_file_options(send)
    _password_options(send)
    send.add_argument(
        "--at",
        metavar="TIME",
        help="the command's time (ISO 8601 UTC); default: now, rounded up to a whole second",
    )
    send.add_argument("--register", metavar="NAME", help="register NAME's public key (admins)")
    send.add_argument("--public-key", metavar="HEX", help="the key --register registers")
    send.add_argument("--reason", metavar="TEXT", help="why --register (required with it)")
    send.add_argument("--quiet", action="store_true", help="print nothing but errors")


class _SendParser(argparse.ArgumentParser):
    """`send`'s parser: COMMAND is taken where it stands, before or after the options."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and parsed.command_text is None and not extras[0].startswith("-"):
            parsed.command_text = extras.pop(0)
        return parsed, extras


def _key_file_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--key-file", metavar="FILE", help="the key file itself")
    where.add_argument("--dir", metavar="DIR", help=_DIR_HELP + "; the file is NAME.key.json")


def _password_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-file", metavar="FILE", help="read the password from the first line of FILE"
    )
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def handle(
    args: argparse.Namespace, *, stdin: TextIO | None = None, out: TextIO | None = None
) -> int | None:
    """Run a `keys` or `send` command; None when `args` is some other command. Bad input raises
    InputError, which main() prints as one line (exit 2)."""
    if getattr(args, "command", None) not in COMMANDS:
        return None
    stdin, out = stdin or sys.stdin, out or sys.stdout
    if args.command == "send":
        return _send(args, stdin, out)
    if args.keys_command == "new":
        return _new(args, stdin, out)
    key_file = keys.read_key_file(_key_path(args))
    print(key_file.public_key, file=out)
    return 0


def _key_path(args: argparse.Namespace) -> Path:
    if getattr(args, "key_file", None):
        return Path(args.key_file).expanduser()
    try:
        return keys.key_path(args.operator, keys.key_dir(args.dir))
    except InputError as error:
        raise InputError("--operator", error.message) from None


def key_password(
    args: argparse.Namespace, stdin: TextIO, prompt: str, *, confirm: bool = False
) -> str:
    """From the first line of --password-file, else as `operators` commands take one
    (--password-stdin, or a terminal prompt, twice to confirm)."""
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            message = f"cannot read {args.password_file}: {reason}"
            raise InputError("--password-file", message) from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise InputError("--password-file", f"{args.password_file} has no password line")
        return password
    if not args.password_stdin and not stdin.isatty():
        raise InputError(
            "password",
            "give --password-file FILE or --password-stdin (or run in a terminal to be asked)",
        )
    legacy = argparse.Namespace(password=None, password_stdin=args.password_stdin)
    return read_password(legacy, stdin, prompt, confirm=confirm)


def _new(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    path = _key_path(args)
    if path.exists() and not args.replace:  # before the password is asked for, not after
        raise InputError("--operator", f"{path} exists: give --replace to make a new key")
    password = key_password(args, stdin, f"Password for {args.operator}'s key: ", confirm=True)
    key_file, _ = keys.new_key(args.operator, password)
    keys.write_key_file(path, key_file, replace=args.replace)
    print(key_file.public_key, file=out)
    print(f"{args.operator}'s key -> {path} (register it on a feed: docs/feed.md)", file=sys.stderr)
    return 0


def _send(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    # Everything is checked before anything is published: the command's time and body, against
    # the feed's own header, and the key (unlocked with the password).
    at = _at(args.at)
    header = first_message(args.url)
    try:
        scenario = parse_scenario(read_header(header)[0])
    except InputError as error:
        raise InputError("URL", f"the feed's header is not usable: {error}") from None
    command = _command(args, scenario, at)
    key = _unlock(args, stdin)
    time = iso(at)
    message = {"type": "command", "time": time, "command": command}
    message["signature"] = sign(key, time, command)
    writer = open_writer(args.url, append=True)
    try:
        seq = writer.write(message)
    finally:
        writer.close()
    if not args.quiet:
        where = f" as message {seq}" if isinstance(seq, int) else ""
        print(
            f"sent {args.operator}'s {command['action']} at {time}{where} -> {args.url}", file=out
        )
    return 0


def _at(text: str | None) -> datetime:
    if text is None:
        # The exchange's next tick is unknown here; a whole second after now is never before it
        # for a feed in real time (a feed replaying the past needs --at).
        now = datetime.now(UTC)
        return now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond else 0)
    return _time(text, "--at")


def _command(args: argparse.Namespace, scenario: Scenario, at: datetime) -> dict[str, Any]:
    if args.operator not in {spec.name for spec in scenario.operators}:
        raise InputError("--operator", f"{args.operator} is not an operator of the feed")
    if args.register is not None:
        if args.command_text is not None:
            raise InputError("COMMAND", "give either COMMAND or --register, not both")
        return _registration(args, scenario)
    for option in ("public_key", "reason"):
        if getattr(args, option) is not None:
            raise InputError(f"--{option.replace('_', '-')}", "goes with --register only")
    if args.command_text is None:
        raise InputError("COMMAND", "expected an operator command (JSON) or --register NAME")
    command = _command_json(args.command_text)
    if command.get("action") == REGISTER_KEY:
        raise InputError("COMMAND", "a key is registered with --register NAME --public-key HEX")
    if "at" in command:
        raise InputError("COMMAND.at", "the command's time is --at's (default: now)")
    if command.setdefault("operator", args.operator) != args.operator:
        raise InputError("COMMAND.operator", f"expected {args.operator} (--operator), who signs")
    # The reference of an approval or rejection is the feed's to check (earlier commands).
    request = command.get("request")
    earlier = [request] if isinstance(request, str) else []
    try:
        parse_command(scenario, {**command, "at": iso(at)}, earlier)
    except InputError as error:
        raise InputError(f"COMMAND{error.field.removeprefix('command')}", error.message) from None
    return command


def _command_json(text: str) -> dict[str, Any]:
    if not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            message = f"neither a JSON object nor a readable file: {reason}"
            raise InputError("COMMAND", message) from None
    try:
        command = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError("COMMAND", f"not JSON: {error}") from None
    if not isinstance(command, dict):
        raise InputError("COMMAND", "expected a JSON object (one operator command)")
    return command


def _registration(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    roles = {spec.name: spec.role for spec in scenario.operators}
    if roles.get(args.operator) != "admin":
        raise InputError(
            "--operator", f"{args.operator} is {roles[args.operator]}: only an admin registers keys"
        )
    if args.register not in roles:
        raise InputError("--register", f"{args.register} is not an operator of the feed")
    if args.public_key is None or not valid_public_key(args.public_key):
        raise InputError("--public-key", "expected an Ed25519 public key as 64 hex (`keys show`)")
    if not (args.reason or "").strip():
        raise InputError("--reason", "expected why the key is registered")
    return {
        "operator": args.operator,
        "action": REGISTER_KEY,
        "subject": args.register,
        "public_key": args.public_key.lower(),
        "reason": args.reason,
    }


def _unlock(args: argparse.Namespace, stdin: TextIO) -> Ed25519PrivateKey:
    path = _key_path(args)
    key_file = keys.read_key_file(path)
    if key_file.operator != args.operator:
        raise InputError(
            "--key-file", f"{path} is {key_file.operator}'s key, not {args.operator}'s"
        )
    return keys.unlock(key_file, key_password(args, stdin, f"Password for {args.operator}: "), path)
