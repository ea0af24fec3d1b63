"""`risk-console publish SCENARIO --to URL [--speed X]` (the simulated exchange) and the feed side
of `risk-console run URL --out RESULT`: a scenario written as a feed, and a feed consumed headless."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from core.feed.publish import parse_time, scenario_feed
from core.feed.transports import open_writer, read_feed
from core.model import files
from core.model.errors import InputError
from core.scenario.builtin import resolve_scenario


def register(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish a scenario as a risk-feed/1 feed (the simulated exchange)",
        description="Write SCENARIO as a feed: its header, every tick whose prices changed, its "
        "x-trades as trades, its actions as commands signed with the operators' demo keys, and "
        "end. URL is PATH.jsonl, - (standard output) or nats://HOST:PORT/STREAM.",
    )
    publish.add_argument("scenario", metavar="SCENARIO", help="a scenario file or built-in name")
    publish.add_argument("--to", required=True, metavar="URL", help="PATH.jsonl, - or nats://...")
    publish.add_argument(
        "--speed",
        type=float,
        default=0.0,
        metavar="X",
        help="simulated seconds per real second (1: real time); default 0, as fast as possible",
    )
    publish.add_argument("--quiet", action="store_true", help="print nothing but errors")


def handle(args: argparse.Namespace) -> int | None:
    if args.command != "publish":
        return None
    if not (args.speed >= 0 and args.speed < float("inf")):
        raise InputError("--speed", f"expected 0 or a positive number, found {args.speed}")
    doc = json.loads(resolve_scenario(args.scenario).read_text(encoding="utf-8"))
    messages = scenario_feed(doc)
    header = next(messages)
    writer = open_writer(args.to)
    count, began = 1, time.perf_counter()
    try:
        writer.write(header)
        start = parse_time(header["scenario"]["start"])
        for message in messages:
            if args.speed:
                due = (parse_time(message["time"]) - start).total_seconds() / args.speed
                wait = due - (time.perf_counter() - began)
                if wait > 0:
                    time.sleep(wait)
            writer.write(message)
            count += 1
    finally:
        writer.close()
    if not args.quiet:
        print(f"published {count} messages of {doc.get('name')} to {args.to}", file=sys.stderr)
    return 0


def run_feed(args: argparse.Namespace) -> int:
    """`run URL --out RESULT [--db STORE]`: consume the feed until its end, write the result."""
    from core.session.feed_session import FeedSession

    if getattr(args, "until", None) is not None:
        raise InputError("--until", "a feed runs until its end message; --until is for scenarios")
    began = time.perf_counter()
    feed = FeedSession(args.scenario, args.db)
    try:
        feed.consume(read_feed(args.scenario))
        _write_feed_result(feed, args, began)
    finally:
        feed.close()
    return 0


def resume_feed(args: argparse.Namespace) -> int:
    """`resume STORE --out RESULT` of a feed's store: its recorded messages replayed, then the
    feed read again from the message after the last one it recorded."""
    from core.session.feed_session import FeedSession

    if getattr(args, "until", None) is not None:
        raise InputError("--until", "a feed runs until its end message; --until is for scenarios")
    began = time.perf_counter()
    feed = FeedSession.open(args.store)
    try:
        if not args.quiet:
            print(f"{args.store}: resuming {feed.url} after message {feed.recorded}")
        if not feed.ended:
            feed.consume(read_feed(feed.url, after=feed.recorded))
        _write_feed_result(feed, args, began)
    finally:
        feed.close()
    return 0


def _write_feed_result(feed: Any, args: argparse.Namespace, began: float) -> None:
    result = feed.result()
    out = Path(args.out)
    files.write_text(out, json.dumps(result, indent=1) + "\n")
    if not args.quiet:
        engine = feed.session.engine
        print(
            f"{feed.url}: {feed.recorded} messages, {engine.tick + 1} ticks, "
            f"{len(result['liquidations'])} liquidations, {len(feed.run.refused)} refused in "
            f"{time.perf_counter() - began:.1f} s -> {out}  state {result['state_hash'][:16]}"
        )
