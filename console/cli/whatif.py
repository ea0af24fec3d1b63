"""The `risk-console whatif STORE ...` command: branch a stored run at a tick with other actions or
another policy, run it to the end beside the store, and compare (docs/whatif.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.model.errors import InputError


def register(commands: Any) -> None:
    """Add `whatif` to the sub-command set of the risk-console parser."""
    whatif = commands.add_parser(
        "whatif",
        help="branch a stored run at a tick, act differently, compare the outcomes",
        description="Copy the state of STORE at --at (read-only: STORE is never written), add "
        "operator actions (--action, each at a time after --at; without `at` at the next tick) "
        "and/or change the policy (--policy), run it to the end of the scenario as the branch "
        "STORE.whatif/NAME.db, and write the comparison with the original (and the branches "
        "--with) to --out: liquidations, the fund's path, the deficit and what covered it, "
        "clawback ratios, and per account what it paid. --policies instead runs clawback, ADL "
        "and clawback after an injection of the deficit from the start. Bad input exits with "
        "code 2 naming the option, and leaves no branch behind.",
    )
    whatif.add_argument("store", metavar="STORE")
    whatif.add_argument("--at", metavar="TIME", help="a tick's ISO UTC time, or a tick number")
    whatif.add_argument(
        "--action",
        action="append",
        default=[],
        metavar="FILE|JSON",
        help="a risk-scenario/1 action or a list of them (repeat for more)",
    )
    whatif.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="deficit=clawback|adl, fund_reservation=true|false, partial_liquidation=true|false, "
        "clawback_approval=auto|required",
    )
    whatif.add_argument("--name", metavar="NAME", help="the branch's name (default whatif-N)")
    whatif.add_argument(
        "--with",
        dest="others",
        action="append",
        default=[],
        metavar="NAME",
        help="compare an earlier branch too (up to 3)",
    )
    whatif.add_argument(
        "--policies", action="store_true", help="clawback, ADL, injection-then-clawback"
    )
    whatif.add_argument("--list", action="store_true", help="list the store's branches")
    whatif.add_argument(
        "--top", type=int, default=50, metavar="N", help="accounts per currency (0: all)"
    )
    whatif.add_argument("--out", metavar="COMPARE", help="COMPARE.json, .csv or .pdf")
    whatif.add_argument("--quiet", action="store_true", help="print nothing but errors")


def handle(args: argparse.Namespace) -> int | None:
    """Run a `whatif` command; None when `args` is some other command. InputError and
    WriteError go to the caller (console/cli/main.py), which prints them and sets the exit code."""
    if getattr(args, "command", None) != "whatif":
        return None
    from core.whatif import branch as branches
    from core.whatif import compare, runs

    store = Path(args.store)
    if args.list:
        for info in branches.list_branches(store):
            changes = ", ".join(f"{k}={v}" for k, v in info.policy.items())
            print(
                f"{info.name}\tat {info.at_time} (tick {info.at_tick})\t"
                f"{len(info.actions)} actions\t{changes or 'same policy'}\t{info.path}"
            )
        return 0
    if not args.out:
        raise InputError(
            "--out", "expected a file to write the comparison to (.json, .csv or .pdf)"
        )
    compare.output_format(args.out)
    if args.top < 0:
        raise InputError("--top", f"expected 0 or more, found {args.top}")
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    if args.policies:
        for option, given in (
            ("--at", args.at),
            ("--action", args.action),
            ("--policy", args.policy),
        ):
            if given:
                raise InputError(option, "not with --policies (it runs from the start)")
        doc = runs.policies(store, prefix=args.name or "policies", top=args.top, progress=progress)
    else:
        if args.at is None:
            raise InputError("--at", "expected the time (or tick) to branch at")
        actions = [a for text in args.action for a in branches.read_actions(text)]
        doc = runs.branch(
            store,
            args.at,
            actions,
            branches.parse_policy(args.policy),
            name=args.name,
            with_names=tuple(args.others),
            top=args.top,
            progress=progress,
        )
    if compare.output_format(args.out) == "pdf":
        from console.report.compare_pdf import write_comparison_pdf
        from console.report.export import ensure_gui_app

        ensure_gui_app()
        write_comparison_pdf(doc, args.out)
    else:
        compare.write(doc, args.out)
    if progress:
        for run in doc["runs"]:
            for code, c in run["currencies"].items():
                d = c["deficit"]
                progress(
                    f"{run['name']}: {c['liquidations']['count']} liquidations, {code} deficit "
                    f"{d['total']} = fund {d['fund']} + injection {d['injection']} + clawback "
                    f"{d['clawback']} + ADL {d['adl']} + uncovered {d['uncovered']}"
                )
        progress(f"-> {args.out}")
    return 0
