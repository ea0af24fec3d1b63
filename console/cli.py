"""The `risk-console` command line: run a scenario headless and write its result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core.errors import InputError

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        help="a risk-scenario/1 JSON file, or the name of a built-in one",
    )
    run.add_argument(
        "--out", required=True, metavar="RESULT", help="where to write the result JSON"
    )
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    commands.add_parser(
        "scenarios", help="list the built-in scenarios", description="List the built-in scenarios."
    )
    return parser


def builtin_scenarios() -> dict[str, Path]:
    folder = Path(__file__).resolve().parent.parent / "assets" / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def resolve_scenario(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    builtin = builtin_scenarios()
    if name in builtin:
        return builtin[name]
    raise InputError(
        "SCENARIO", f"no file {name!r} and no built-in scenario of that name ({', '.join(builtin)})"
    )


def _run(args: argparse.Namespace) -> int:
    from core.engine import Engine
    from core.result import ResultCollector
    from core.scenario import load_scenario

    scenario = load_scenario(resolve_scenario(args.scenario))
    began = time.perf_counter()
    engine = Engine(scenario)
    collector = ResultCollector(engine)
    for events in engine.run():
        collector.feed(events)
    result = collector.result()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.quiet:
        elapsed = time.perf_counter() - began
        print(
            f"{scenario.name}: {engine.tick + 1} ticks, {len(engine.book)} positions, "
            f"{len(result['liquidations'])} liquidations, {len(result['clawbacks'])} clawbacks "
            f"in {elapsed:.1f} s -> {out}  state {result['state_hash'][:16]}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "scenarios":
            for name, path in builtin_scenarios().items():
                print(f"{name}\t{path}")
            return 0
    except InputError as error:
        print(f"risk-console: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
