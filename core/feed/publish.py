"""The simulated exchange: any scenario as a `risk-feed/1` message stream (header, the ticks whose
prices changed, trades, signed commands, end). Prices are the very floats the scenario's own run
computes at each tick, written so that they read back bit for bit (`repr`), which is what makes a
feed's run reach the scenario's state hash."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from core.feed.signing import demo_key, public_hex, sign
from core.market.prices import PricePath
from core.model.scenario_values import Scenario
from core.scenario.parse import parse_scenario

FORMAT = "risk-feed/1"
TRADES = "x-trades"
END_FIELD = "x-end"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def price_text(value: float) -> str:
    """A float price as a decimal string that reads back to the same float."""
    return repr(float(value))


def header_scenario(doc: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The exchange at `start`: the scenario with each path cut to its opening point, no actions
    and no trades, and each operator's demo public key."""
    head = copy.deepcopy(doc)
    market = head.setdefault("market", {})
    for kind in ("indices", "marks"):
        paths = scenario.market.indices if kind == "indices" else scenario.market.marks
        market[kind] = {
            name: [[iso(scenario.start), price_text(PricePath(points).at(scenario.start))]]
            for name, points in paths.items()
        }
    # The run's horizon (settlement schedule, the last tick); an exchange's own feed has none.
    head[END_FIELD] = iso(scenario.end)
    head["actions"] = []
    head.pop(TRADES, None)
    for operator in head.get("operators", []):
        operator["public_key"] = public_hex(demo_key(operator["name"]))
    return head


def scenario_feed(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every message of the scenario `doc` as a feed, in stream order."""
    scenario = parse_scenario(copy.deepcopy(doc))
    yield {"type": "header", "format": FORMAT, "scenario": header_scenario(doc, scenario)}
    indices = {n: PricePath(p, n) for n, p in scenario.market.indices.items()}
    marks = {s: PricePath(p, s) for s, p in scenario.market.marks.items()}
    held = {name: path.at(scenario.start) for name, path in indices.items()}
    held_marks = {name: path.at(scenario.start) for name, path in marks.items()}
    trades = sorted(
        ((i, t) for i, t in enumerate(doc.get(TRADES, []))), key=lambda pair: pair[1]["at"]
    )
    actions = list(doc.get("actions", []))
    inputs = sorted(
        [(a["at"], 1, n, a) for n, a in enumerate(actions)]
        + [(t["at"], 0, i, t) for i, t in trades],
        key=lambda item: (parse_time(item[0]), item[1], item[2]),
    )
    step = timedelta(seconds=scenario.tick_seconds)
    ticks = int((scenario.end - scenario.start) / step)
    pending = 0
    for tick in range(1, ticks + 1):
        now = scenario.start + tick * step
        while pending < len(inputs) and parse_time(inputs[pending][0]) <= now:
            at, kind, _, item = inputs[pending]
            pending += 1
            body = {k: v for k, v in item.items() if k != "at"}
            time = iso(parse_time(at))
            if kind == 0:
                yield {"type": "trade", "time": time, **body}
            else:
                signature = sign(demo_key(body["operator"]), time, body)
                yield {"type": "command", "time": time, "command": body, "signature": signature}
        message: dict[str, Any] = {"type": "tick", "time": iso(now)}
        now_indices = {n: p.at(now) for n, p in indices.items()}
        now_marks = {n: p.at(now) for n, p in marks.items()}
        changed = {n: v for n, v in now_indices.items() if v != held[n]}
        changed_marks = {n: v for n, v in now_marks.items() if v != held_marks[n]}
        held.update(changed)
        held_marks.update(changed_marks)
        if changed:
            message["indices"] = {n: price_text(v) for n, v in changed.items()}
        if changed_marks:
            message["marks"] = {n: price_text(v) for n, v in changed_marks.items()}
        if changed or changed_marks or tick == ticks:
            yield message
    yield {"type": "end", "time": iso(scenario.start + ticks * step)}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
