"""What-if branches: the state of a store at a tick, given other actions and/or another policy, run
to the original end in a store of its own beside the parent (`STORE.whatif/NAME.db`)."""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.engine.facade import Engine
from core.engine.result import ResultCollector
from core.model.errors import InputError
from core.model.events import Event, iso
from core.model.scenario_values import ActionSpec
from core.scenario.parse import parse_command, parse_scenario
from core.session.feed_session import FeedSession, replay
from core.session.recorded_feed import decoded_message
from core.session.session import Session, StoreSettings
from core.store.schema import create_feed_tables
from core.store.store import BRANCH_META, Store
from core.whatif.adl_cost import AdlTape

FORMAT = "risk-whatif-branch/1"
# The policy fields a branch may change (shared spec/scenario.md `policy`), with their values.
POLICY_CHOICES: dict[str, tuple[str, ...]] = {
    "deficit": ("clawback", "adl"),
    "fund_reservation": ("true", "false"),
    "partial_liquidation": ("true", "false"),
    "clawback_approval": ("auto", "required"),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """A branch as its meta row records it: where it came from and what it changed."""

    name: str
    path: Path
    parent: str
    parent_hash: str
    at_tick: int
    at_time: str
    actions: tuple[dict[str, Any], ...]
    policy: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BranchRun:
    """A finished branch: its record, its end state's hash and what ADL cost its counterparties."""

    info: BranchInfo
    state_hash: str
    adl_cost: dict[tuple[str, str], int]  # (account, currency) -> minor units


def branch_dir(parent: Path) -> Path:
    return parent.with_name(parent.name + ".whatif")


def branch_path(parent: Path, name: str) -> Path:
    return branch_dir(parent) / f"{name}.db"


def list_branches(parent: Path) -> list[BranchInfo]:
    """The branches beside `parent`, oldest first (by the tick they leave at, then name)."""
    folder = branch_dir(parent)
    found = []
    for path in sorted(folder.glob("*.db")) if folder.is_dir() else []:
        try:
            found.append(read_info(path))
        except InputError:
            continue  # not a branch (or one whose creation was cut short): not listed
    return sorted(found, key=lambda b: (b.at_tick, b.name))


def read_info(path: Path) -> BranchInfo:
    store = Store.open(path, read_only=True)
    try:
        text = store.branch_of
    finally:
        store.close()
    if text is None:
        raise InputError("--with", f"{path} is a store but not a what-if branch")
    row = json.loads(text)
    return BranchInfo(
        name=row["name"],
        path=path,
        parent=row["parent"],
        parent_hash=row["parent_hash"],
        at_tick=row["at_tick"],
        at_time=row["at_time"],
        actions=tuple(row["actions"]),
        policy=row["policy"],
    )


# ----- the options ----------------------------------------------------------------------------


def parse_at(text: str, start: datetime, tick_seconds: int, last: int, head: int) -> int:
    """`--at`: a tick number or the ISO UTC time of a tick, before the run's last tick and
    within what the store holds."""
    text = text.strip()
    if text.isdigit():
        tick = int(text)
    else:
        moment = _utc(text, "--at")
        offset = (moment - start).total_seconds()
        tick = int(offset // tick_seconds)
        if offset < 0 or offset != tick * tick_seconds:
            raise InputError(
                "--at",
                f"{text} is not the time of a tick: the run's ticks are every {tick_seconds} s "
                f"from {iso(start)}",
            )
    end = iso(start + timedelta(seconds=last * tick_seconds))
    if tick >= last:
        raise InputError(
            "--at", f"{text} is at or beyond the run's end (tick {last}, {end}): nothing to branch"
        )
    if tick > head:
        raise InputError("--at", f"{text} is past what the store holds (its last tick is {head})")
    return tick


def parse_policy(pairs: list[str]) -> dict[str, Any]:
    """`--policy KEY=VALUE` pairs as the scenario `policy` fields they change."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if key not in POLICY_CHOICES:
            raise InputError(
                "--policy",
                f"unknown policy key {key!r}: expected one of {', '.join(POLICY_CHOICES)}"
                + ("" if sep else " as KEY=VALUE"),
            )
        if value not in POLICY_CHOICES[key]:
            raise InputError(
                f"--policy {key}",
                f"expected {' or '.join(POLICY_CHOICES[key])}, found {value!r}",
            )
        changes[key] = value == "true" if POLICY_CHOICES[key][0] == "true" else value
    return changes


def read_actions(text: str | None) -> list[dict[str, Any]]:
    """`--action FILE|JSON`: one risk-scenario/1 action or a list of them, inline or in a file."""
    if text is None:
        return []
    source = text.strip()
    if not source.startswith(("{", "[")):
        try:
            source = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(
                "--action", f"expected JSON or a readable file, found {text!r} ({error})"
            ) from None
    try:
        doc = json.loads(source)
    except json.JSONDecodeError as error:
        raise InputError("--action", f"expected JSON, found an error: {error}") from None
    items = doc if isinstance(doc, list) else [doc]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"--action[{i}]", "expected a JSON object (a risk-scenario/1 action)")
    return items


def _utc(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() != timedelta(0):
        raise InputError(
            field,
            f"expected a tick number or an ISO UTC time like 2018-07-31T12:00:04Z, found {text!r}",
        )
    return moment.replace(tzinfo=UTC)


def check_name(parent: Path, name: str | None, taken: set[str] | None = None) -> str:
    """`--name`: letters, digits, `.`, `_`, `-`; new beside the parent. Default: whatif-N."""
    existing = {b.stem for b in branch_dir(parent).glob("*.db")} | (taken or set())
    if name is None:
        n = 1
        while f"whatif-{n}" in existing:
            n += 1
        return f"whatif-{n}"
    if not _NAME.fullmatch(name):
        raise InputError("--name", f"expected letters, digits, '.', '_' or '-', found {name!r}")
    if name in existing:
        raise InputError("--name", f"a branch named {name!r} exists already beside the store")
    return name


# ----- a branch -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedFork:
    """Where a branch of a feed's store leaves its parent's messages: the feed run's state after
    message `seq`; the branch replays the parent's messages after it, up to `last_seq` (the
    last the parent had recorded when the branch was made)."""

    url: str
    tick: int
    state: dict[str, Any]
    seq: int
    last_seq: int
    action_ids: list[str]

    def write_first(self, store: Store) -> None:
        """In the branch store's first transaction: its feed tables, the parent's messages up
        to the fork and the run's state beside the first snapshot (the parent is attached)."""
        create_feed_tables(store.db)
        store.set_meta("feed", self.url)
        store.copy_feed_messages(self.seq)
        store.write_feed_state(self.tick, self.seq, self.state)

    def run(self, parent: Path, session: Session, on_step: Callable[[list[Event]], None]) -> None:
        """The parent's messages after the fork applied in the branch, each recorded there."""
        feed = FeedSession.continuing(session, self.url, self.state)
        feed.on_step = on_step
        store = Store.open(parent, read_only=True)
        try:
            for seq, text in store.feed_messages(self.seq):
                if seq > self.last_seq:
                    break
                feed.apply(seq, decoded_message(text))
                if feed.ended:
                    break
        finally:
            store.close()


class Fork:
    """The parent's state at the branch tick, with the branch's changes checked against it; the
    branch store is written only by `run`, once everything here has been validated."""

    def __init__(self, parent: str | Path, at: str, name: str | None = None) -> None:
        self.parent = Path(parent)
        store = Store.open(self.parent, read_only=True)
        try:
            self.settings = StoreSettings(**store.settings)
            head = store.head_tick() or 0
            scenario = parse_scenario(store.scenario_doc)
            url = store.feed_url
            last_seq = store.last_feed_seq() if url is not None else 0
        finally:
            store.close()
        if url is None:
            last = int((scenario.end - scenario.start).total_seconds()) // scenario.tick_seconds
        else:
            last = head  # a feed's store ends where its recorded messages do
        self.tick = parse_at(at, scenario.start, scenario.tick_seconds, last, head)
        self.end_tick = last
        self.name = check_name(self.parent, name)
        self.feed: FeedFork | None = None
        self.carried: dict[int, list[tuple[dict[str, Any], dict[str, Any] | None]]] = {}
        # The events up to the parent's snapshot are not read: the branch copies their chunks
        # as stored, and only a comparison reads them (`events`).
        if url is None:
            session = Session.open(self.parent, at=self.tick, read_only=True, events=False)
        else:
            # The fork may fall between the ticks of one message: the branch applies that
            # message again, whole, from the fork on.
            session, run = replay(self.parent, until=self.tick, events=False)
            self.feed = FeedFork(
                url, self.tick, run.state_doc(), run.last_seq, last_seq, list(run.action_ids)
            )
        try:
            self.engine: Engine = session.engine
            self.collector: ResultCollector = session.collector
            self.doc: dict[str, Any] = session.scenario_doc
            self.snapshot_tick = session.stored_events[0]
            # A scenario's store: the parent's journaled commands after the fork, by the tick
            # they applied at: the branch applies them too (it differs only by what it is asked
            # to). A feed's brought its commands as messages, which the branch replays.
            if url is None:
                assert session.store is not None
                for stored in session.store.journal(self.tick):
                    for command in stored.commands:
                        authority = stored.authorities.get(command.seq)
                        self.carried.setdefault(stored.tick, []).append(
                            (command.command, authority)
                        )
        finally:
            session.close()
        self.parent_hash = self.engine.state_hash()
        self.actions: list[dict[str, Any]] = []
        self.specs: list[ActionSpec] = []
        self.policy: dict[str, Any] = {}
        self._ids = [a.id for a in self.engine.scenario.actions if a.id]
        self._ids += [c.get("id") for cs in self.carried.values() for c, _ in cs if c.get("id")]
        if self.feed is not None:
            self._ids += self.feed.action_ids

    @property
    def time(self) -> datetime:
        return self.engine.now

    def events(self) -> list[Event]:
        """Every event of the branch's run so far: the parent's up to its snapshot before the
        fork (read from its chunks now), then those the collector gathered since."""
        store = Store.open(self.parent, read_only=True)
        try:
            before = store.load_event_chunks(self.snapshot_tick)
        finally:
            store.close()
        return before + self.collector.events

    def add_actions(self, actions: list[dict[str, Any]]) -> None:
        """Operator actions at times after the fork (an action without `at` applies at the next
        tick), parsed against the scenario as its own actions are; InputError names the field."""
        engine = self.engine
        scenario = engine.scenario
        end = scenario.start + timedelta(seconds=self.end_tick * scenario.tick_seconds)
        operators = {o.name for o in scenario.operators}
        for i, raw in enumerate(actions, start=len(self.actions)):
            field = f"--action[{i}]"
            command = dict(raw)
            if "at" not in command:
                command["at"] = iso(self.time + timedelta(seconds=scenario.tick_seconds))
            at = _utc(str(command["at"]), f"{field}.at")
            if at <= self.time or at > end:
                raise InputError(
                    f"{field}.at",
                    f"expected a time after the branch point {iso(self.time)} and at or before "
                    f"the run's end {iso(end)}, found {command['at']}",
                )
            if operators and command.get("operator") not in operators:
                raise InputError(
                    f"{field}.operator",
                    f"expected one of the scenario's operators ({', '.join(sorted(operators))}), "
                    f"found {command.get('operator')!r}",
                )
            try:
                spec = parse_command(scenario, command, self._ids)
            except InputError as error:
                where = error.field.replace("command", field, 1) if error.field else field
                raise InputError(where, error.message) from None
            if spec.id:
                self._ids.append(spec.id)
            self.actions.append(command)
            self.specs.append(replace(spec, at=at))

    def set_policy(self, changes: dict[str, Any]) -> None:
        self.policy.update(changes)

    def run(self, on_step: Callable[[Engine, list[Event]], None] | None = None) -> BranchRun:
        """Write the branch store and run it to the end of the scenario."""
        return self.finish(self.start(), on_step)

    def start(self) -> Session:
        """The branch store written at the fork with the changes applied: a live session there."""
        engine = self.engine
        scenario = engine.scenario
        policy = replace(scenario.policy, **self.policy)
        engine.scenario = replace(scenario, policy=policy, actions=(*scenario.actions, *self.specs))
        pending = engine.controls.pending_actions
        for spec in self.specs:
            # After the actions due at the same moment: the scenario's own come first.
            bisect.insort(pending, spec, key=lambda a: a.at)
        doc = {**self.doc, "policy": {**self.doc.get("policy", {}), **self.policy}}
        path = branch_path(self.parent, self.name)
        self.info = BranchInfo(
            name=self.name,
            path=path,
            parent=str(self.parent.resolve()),
            parent_hash=self.parent_hash,
            at_tick=self.tick,
            at_time=iso(self.time),
            actions=tuple(self.actions),
            policy=dict(self.policy),
        )
        meta = {k: v for k, v in asdict(self.info).items() if k != "path"}
        path.parent.mkdir(exist_ok=True)
        if self.feed is not None:
            meta["feed"] = {"seq": self.feed.seq, "until": self.feed.last_seq}
        return Session.fork(
            engine,
            self.collector,
            doc,
            path,
            self.settings,
            {BRANCH_META: json.dumps({"format": FORMAT, **meta}, sort_keys=True)},
            self.parent,
            self.snapshot_tick,
            beside=self.feed.write_first if self.feed is not None else None,
        )

    def finish(
        self, session: Session, on_step: Callable[[Engine, list[Event]], None] | None = None
    ) -> BranchRun:
        """Run the branch to the end. A branch is all or nothing: one whose run fails (or is
        interrupted) removes its store, so that only finished branches are listed."""
        tape = AdlTape()

        def observe(events: list[Event]) -> None:
            tape.observe(session.engine, events)
            if on_step is not None:
                on_step(session.engine, events)

        try:
            if self.feed is not None:
                self.feed.run(self.parent, session, observe)
            else:
                while not session.finished:
                    for command, authority in self.carried.get(session.tick + 1, ()):
                        session.carry(command, authority)
                    observe(session.step())
            state_hash = session.engine.state_hash()
            self.engine, self.collector = session.engine, session.collector
        except BaseException:
            session.close()
            for leftover in self.info.path.parent.glob(self.info.path.name + "*"):
                leftover.unlink(missing_ok=True)
            raise
        session.close()
        return BranchRun(self.info, state_hash, tape.cost)
