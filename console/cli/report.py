"""The `risk-console report STORE ...` command: an incident report of a store's time range as PDF
(headless Qt, offscreen), JSON or CSV. Wired into console/cli/main.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from console.report.export import FORMATS, export, output_format
from core.model.errors import InputError, WriteError

EXIT_OK, EXIT_BAD_INPUT, EXIT_WRITE_FAILED = 0, 2, 3


def register(commands: Any) -> None:
    """Add `report` to the sub-command set of the risk-console parser."""
    report = commands.add_parser(
        "report",
        help="write an incident report of a store's time range (PDF, JSON or CSV)",
        description="Write an incident report of STORE over a time range: summary, timeline "
        "(alerts, operator actions and approvals, liquidations, settlement, clawback), charts, "
        "deficit waterfall, clawback, accounts involved and an integrity footer. PDF for people "
        "(headless, no display needed); JSON holds everything in the report; CSV holds every "
        "liquidation and clawback allocation of the range. The format follows the suffix of "
        "--out unless --format is given. Bad input exits with code 2 naming the option.",
    )
    report.add_argument("store", metavar="STORE", help="the store file")
    report.add_argument("--from", dest="start", metavar="TIME", help="ISO UTC time (run start)")
    report.add_argument("--to", dest="end", metavar="TIME", help="ISO UTC time (last tick)")
    report.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="ID",
        help="only this account (repeat for more)",
    )
    report.add_argument(
        "--symbol",
        action="append",
        default=[],
        metavar="S",
        help="only this instrument (repeat for more)",
    )
    report.add_argument("--out", required=True, metavar="FILE", help="report.pdf, .json or .csv")
    report.add_argument("--format", choices=FORMATS, help="override the format the suffix gives")
    report.add_argument(
        "--top",
        type=int,
        default=20,
        metavar="N",
        help="accounts in the clawback table and per currency in the what-if section, and "
        "liquidations listed one by one (20)",
    )
    report.add_argument(
        "--no-distributions",
        action="store_true",
        help="skip the margin-ratio distributions (they rebuild the engine twice)",
    )
    report.add_argument(
        "--generated-at",
        metavar="TIME",
        help="the time printed as the report's creation (default: now), for reproducible files",
    )
    report.add_argument("--quiet", action="store_true", help="print nothing but errors")


def handle(args: argparse.Namespace, *, out: TextIO | None = None) -> int | None:
    """Run a `report` command; None when `args` is some other command."""
    if getattr(args, "command", None) != "report":
        return None
    try:
        fmt = output_format(args.out, args.format)
        line = export(
            args.store,
            args.out,
            fmt,
            start=args.start,
            end=args.end,
            accounts=args.account,
            symbols=args.symbol,
            top=args.top,
            distributions=not args.no_distributions,
            generated_at=args.generated_at,
        )
    except InputError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WriteError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    if not args.quiet:
        print(line, file=out or sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m console.cli.report report STORE ...`: the command on its own."""
    parser = argparse.ArgumentParser(prog="risk-console")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    result = handle(parser.parse_args(argv))
    return EXIT_OK if result is None else result


if __name__ == "__main__":
    sys.exit(main())
