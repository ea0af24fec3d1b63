"""What-if runs end to end: a branch made, run and compared with its original and earlier
branches; the three deficit policies from the start, side by side (docs/whatif.md)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.engine.facade import Engine
from core.model import files
from core.model.errors import InputError
from core.model.events import AdlFill, Event, iso
from core.model.units import format_minor
from core.session.feed_session import replay
from core.session.session import Session
from core.store.store import Store
from core.whatif.adl_cost import AdlTape
from core.whatif.branch import (
    BranchInfo,
    BranchRun,
    Fork,
    branch_path,
    check_name,
    read_info,
)
from core.whatif.compare import MAX_RUNS, comparison
from core.whatif.outcome import RunOutcome, outcome_of

ADL_COST_META = "whatif_adl_cost"
Progress = Callable[[str], None]
CancelCheck = Callable[[], bool]  # true once the operator asked to stop


class Cancelled(Exception):
    """A branch stopped because its `cancelled` check turned true; its store was removed."""


def check(cancelled: CancelCheck | None) -> None:
    """Raise Cancelled when `cancelled` says so: called between the steps of a branch that take
    long at a million accounts (each tick, each outcome, each tick of a replay)."""
    if cancelled is not None and cancelled():
        raise Cancelled


def stored_adl_cost(
    path: Path,
    events: list[Event],
    until: int | None = None,
    *,
    cancelled: CancelCheck | None = None,
) -> dict[Any, int]:
    """What ADL cost its counterparties in a stored run up to tick `until`: replayed (read-only)
    from the tick before its first ADL fill, where the marks of each fill's tick are known."""
    fills = [e for e in events if type(e) is AdlFill]
    if not fills:
        return {}
    store = Store.open(path, read_only=True)
    try:
        first = store.conn.execute(
            "SELECT min(tick) FROM adl WHERE (? IS NULL OR tick <= ?)", (until, until)
        ).fetchone()[0]
        head = store.head_tick() or 0
        feed = store.feed_url is not None
    finally:
        store.close()
    if first is None:
        return {}
    tape = AdlTape()
    target = head if until is None else min(until, head)
    if feed:

        def observe(engine: Engine, events: list[Event]) -> None:
            check(cancelled)
            tape.observe(engine, events)

        session, _ = replay(path, start=first - 1, until=target, on_step=observe)
        session.close()
        return dict(tape.cost)
    session = Session.open(path, at=first - 1, read_only=True)
    try:
        while session.tick < target:
            check(cancelled)
            tape.observe(session.engine, session.step())
    finally:
        session.close()
    return dict(tape.cost)


def at_end(path: Path, *, cancelled: CancelCheck | None = None) -> tuple[Engine, list[Event]]:
    """A stored run, read-only, at its last committed tick (a feed's store: after the last of
    its recorded messages, `cancelled` asked at each tick replayed): the engine and every event."""
    store = Store.open(path, read_only=True)
    try:
        feed = store.feed_url is not None
    finally:
        store.close()

    def step(_engine: Engine, _events: list[Event]) -> None:
        check(cancelled)

    session = replay(path, on_step=step)[0] if feed else Session.open(path, read_only=True)
    try:
        return session.engine, list(session.collector.events)
    finally:
        session.close()


def original_outcome(parent: Path, *, cancelled: CancelCheck | None = None) -> RunOutcome:
    """The original as its store holds it, at its last committed tick."""
    engine, events = at_end(parent, cancelled=cancelled)
    check(cancelled)
    cost = stored_adl_cost(parent, events, cancelled=cancelled)
    return outcome_of("original", str(parent), engine, events, cost, {})


def branch_outcome(
    fork: Fork, run: BranchRun, *, cancelled: CancelCheck | None = None
) -> RunOutcome:
    cost: dict[Any, int] = defaultdict(int)
    events = fork.events()
    if any(type(e) is AdlFill for e in events):
        for key, amount in stored_adl_cost(
            fork.parent, events, until=fork.tick, cancelled=cancelled
        ).items():
            cost[key] += amount
    for key, amount in run.adl_cost.items():
        cost[key] += amount
    _record_cost(run.info.path, dict(cost))
    return outcome_of(
        run.info.name,
        str(run.info.path),
        fork.engine,
        events,
        dict(cost),
        _changes(run.info),
    )


def stored_branch_outcome(
    parent: Path, name: str, *, cancelled: CancelCheck | None = None
) -> RunOutcome:
    """An earlier branch beside `parent`, from its store (its ADL cost as recorded when it ran)."""
    path = branch_path(parent, name)
    if not path.exists():
        raise InputError("--with", f"no branch named {name!r} beside {parent}")
    info = read_info(path)
    store = Store.open(path, read_only=True)
    try:
        cost = {
            tuple(k.split("|", 1)): v
            for k, v in json.loads(store.meta(ADL_COST_META) or "{}").items()
        }
    finally:
        store.close()
    engine, events = at_end(path, cancelled=cancelled)
    return outcome_of(info.name, str(path), engine, events, cost, _changes(info))


def _record_cost(path: Path, cost: dict[Any, int]) -> None:
    store = Store.open(path)
    try:
        with store.transaction():
            store.set_meta(ADL_COST_META, json.dumps({f"{a}|{c}": v for (a, c), v in cost.items()}))
    finally:
        store.close()


def _changes(info: BranchInfo) -> dict[str, Any]:
    return {
        "at": {"tick": info.at_tick, "time": info.at_time},
        "actions": list(info.actions),
        "policy": info.policy,
    }


def branch(
    parent: str | Path,
    at: str,
    actions: list[dict[str, Any]],
    policy: dict[str, Any],
    *,
    name: str | None = None,
    with_names: tuple[str, ...] = (),
    top: int = 50,
    progress: Progress | None = None,
    on_step: Callable[[Engine, list[Event]], None] | None = None,
    checked: Callable[[Fork], None] | None = None,
    cancelled: CancelCheck | None = None,
) -> dict[str, Any]:
    """Make one branch, run it to the end and compare it with the original and the branches
    `with_names`. Every input is checked before the branch store is written. `checked` sees the
    fork once its input passed; `on_step` sees each tick of the branch's run (the console's
    progress bar), and an exception it raises stops the run and removes the branch's store.
    `cancelled` (the console's Cancel) is asked before the fork is read, at each tick and
    through the comparison; once true, Cancelled is raised and no branch store is left."""
    parent = Path(parent)
    if len(with_names) + 1 > MAX_RUNS - 1:
        raise InputError(
            "--with", f"expected at most {MAX_RUNS - 2} other branches, found {len(with_names)}"
        )
    for other in with_names:
        if not branch_path(parent, other).exists():
            raise InputError("--with", f"no branch named {other!r} beside {parent}")
    check(cancelled)
    fork = Fork(parent, at, name)
    fork.add_actions(actions)
    fork.set_policy(policy)
    if checked is not None:
        checked(fork)
    check(cancelled)
    if progress:
        progress(f"branch {fork.name}: from tick {fork.tick} ({iso(fork.time)}) to the end")

    def step(engine: Engine, events: list[Event]) -> None:
        check(cancelled)
        if on_step is not None:
            on_step(engine, events)

    run = fork.run(step)
    try:
        # The comparison takes seconds at a million accounts: Cancel is heard through it too.
        outcomes = [original_outcome(parent, cancelled=cancelled)]
        check(cancelled)
        outcomes.append(branch_outcome(fork, run, cancelled=cancelled))
        for other in with_names:
            check(cancelled)
            outcomes.append(stored_branch_outcome(parent, other, cancelled=cancelled))
        doc = comparison(outcomes, top=top)
        check(cancelled)
    except Cancelled:
        # A branch is all or nothing: cancelled after its run, it is removed as during it.
        files.discard(run.info.path)
        raise
    return doc


def policies(
    parent: str | Path, *, prefix: str = "policies", top: int = 50, progress: Progress | None = None
) -> dict[str, Any]:
    """Clawback, ADL, and clawback after an injection of the deficit it shares, each from the
    start, beside the original: who pays in each."""
    parent = Path(parent)
    names = [f"{prefix}-clawback", f"{prefix}-adl", f"{prefix}-injection"]
    taken: set[str] = set()
    for n in names:
        check_name(parent, n, taken)
        taken.add(n)
    outcomes = [original_outcome(parent)]
    for n, deficit in zip(names[:2], ("clawback", "adl"), strict=True):
        fork = Fork(parent, "0", n)
        fork.set_policy({"deficit": deficit})
        if progress:
            progress(f"branch {n}: deficit {deficit} from the start")
        outcomes.append(branch_outcome(fork, fork.run()))
    fork = Fork(parent, "0", names[2])
    fork.set_policy({"deficit": "clawback"})
    fork.add_actions(_injections(fork.engine, outcomes[1]))
    if progress:
        progress(f"branch {names[2]}: the shared deficit injected before settlement")
    outcomes.append(branch_outcome(fork, fork.run()))
    return comparison(outcomes, top=top)


def _injections(engine: Engine, clawback_run: RunOutcome) -> list[dict[str, Any]]:
    """An injection of what the clawback run shared (per currency), requested and approved in
    the two ticks before the settlement that shared it, by the scenario's own people."""
    scenario = engine.scenario
    roles = {o.name: o.role for o in scenario.operators}
    maker = next((n for n, r in roles.items() if r in ("operator", "admin")), "whatif")
    checker = next(
        (n for n, r in roles.items() if r == "supervisor" and n != maker), "whatif-checker"
    )
    dt = timedelta(seconds=scenario.tick_seconds)
    out: list[dict[str, Any]] = []
    for c in clawback_run.currencies:
        if not c.clawbacks or c.coverage.clawback <= 0:
            continue
        settled = datetime.fromisoformat(c.clawbacks[0][0])
        request = f"whatif-inject-{c.currency}"
        amount = format_minor(c.coverage.clawback, c.decimals)
        out.append(
            {
                "at": iso(settled - 2 * dt),
                "id": request,
                "operator": maker,
                "action": "inject",
                "currency": c.currency,
                "amount": amount,
                "reason": "what-if: the company covers the deficit the clawback would share",
            }
        )
        out.append(
            {
                "at": iso(settled - dt),
                "operator": checker,
                "action": "approve",
                "request": request,
                "reason": "what-if: approved",
            }
        )
    return out


def stored_comparison(parent: str | Path, *, top: int = 50) -> dict[str, Any] | None:
    """The original beside the latest branches written next to it (as many as a comparison
    holds), or None when it has none: what the incident report's what-if section shows."""
    from core.whatif.branch import list_branches

    parent = Path(parent)
    found = sorted(list_branches(parent), key=lambda b: b.path.stat().st_mtime)
    latest = sorted(found[-(MAX_RUNS - 1) :], key=lambda b: (b.at_tick, b.name))
    if not latest:
        return None
    outcomes = [original_outcome(parent)]
    outcomes += [stored_branch_outcome(parent, b.name) for b in latest]
    return comparison(outcomes, top=top)
