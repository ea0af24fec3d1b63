"""The engine stepped by feed messages instead of a known price path: a `tick` moves the clock
(stepping the ticks the producer skipped with prices held) and sets the prices it names; a
`trade` or a `command` applies at the next tick; a message that does not parse or validate, and
a command whose signature does not hold, is refused with its sequence number and changes nothing.
An admin's `register_key` command sets an operator's public key, in stream order."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from core.engine.facade import Engine
from core.engine.trading import parse_trade
from core.feed.signing import valid_public_key, verify
from core.market.prices import PinnedMark, PricePath
from core.model.errors import InputError
from core.model.events import Event
from core.model.limits import MAX_TICKS
from core.model.operations import Refusal
from core.model.scenario_values import ActionSpec
from core.model.text import require_visible
from core.scenario.fields import _decimal, _Fields, _id, _known, _map, _money, _string, _time
from core.scenario.parse import parse_command, parse_scenario

FORMAT = "risk-feed/1"
END_FIELD = "x-end"
_ISO = "%Y-%m-%dT%H:%M:%SZ"
KINDS = ("header", "tick", "trade", "transfer", "command", "heartbeat", "end")
# A feed-only command (a scenario file has no keys to register): the engine never sees it.
REGISTER_KEY = "register_key"
REGISTER_FIELDS = ("operator", "action", "reason", "subject", "public_key")


@dataclass(frozen=True, slots=True)
class FeedRefusal:
    """A message refused: its sequence number, the field at fault (or the command's code) and
    why. Nothing of it was applied."""

    seq: int
    kind: str
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class KeyRegistration:
    """An admin's `register_key` applied: from the message at `seq` on, `subject`'s commands are
    checked against `public_key` (and no longer against any key it had before)."""

    seq: int
    time: datetime
    operator: str
    subject: str
    public_key: str
    reason: str


class FeedRun:
    """One consumer of one feed: the header makes the engine, every later message moves it.

    `start` makes the engine of the header's scenario document and `step` steps it one tick; a
    session with a store passes its own, so that every tick is journaled."""

    def __init__(
        self,
        start: Callable[[dict[str, Any]], Engine] | None = None,
        step: Callable[[], list[Event]] | None = None,
    ) -> None:
        self.engine: Engine | None = None
        self._start = start or (lambda doc: Engine(parse_scenario(doc)))
        self._step = step or (lambda: self._engine().step())
        self.public_keys: dict[str, str] = {}
        self.seen_signatures: set[str] = set()
        self.action_ids: list[str] = []
        self.refused: list[FeedRefusal] = []
        self.registrations: list[KeyRegistration] = []
        self.last_seq = 0
        self.ended = False
        self.last_time: datetime | None = None
        # Transfers waiting for their tick: (time, seq, account, currency, minor units).
        self.transfers: list[tuple[datetime, int, str, str, int]] = []
        self.transfer_ids: set[str] = set()
        self.transfers_done: list[tuple[int, str]] = []  # (seq, what was moved)
        # The operator command the last message brought, once accepted (a desk audits it).
        self.accepted: ActionSpec | None = None

    # ----- one message ------------------------------------------------------------------

    def apply(self, seq: int, message: Any) -> list[Event]:
        """Apply the message at stream position `seq`; the events of the ticks it stepped."""
        self.last_seq = seq
        self.accepted = None
        try:
            return self._apply(message)
        except InputError as error:
            kind = message.get("type", "?") if isinstance(message, dict) else "?"
            self.refused.append(FeedRefusal(seq, str(kind), error.field, error.message))
            return []

    def _apply(self, message: Any) -> list[Event]:
        if not isinstance(message, dict):
            raise InputError("message", "expected a JSON object")
        kind = message.get("type")
        if kind not in KINDS:
            raise InputError("type", f"expected one of {', '.join(KINDS)}, found {kind!r}")
        if self.ended:
            raise InputError("type", "the feed has ended")
        if kind == "header":
            return self._header(message)
        if self.engine is None:
            raise InputError("type", "expected the header first")
        fields = _Fields(message, "", ("type", "time"), _OPTIONAL[kind])
        time = fields.get("time", _time)
        if kind == "heartbeat":
            return []
        if kind == "tick":
            return self._tick(fields, time)
        if kind == "end":
            events = self._step_until(time)
            self.engine.ticks_total = self.engine.tick + 1
            self.ended = True
            return events
        if kind == "command":
            return self._command(fields, time)
        if self.last_time is not None and time < self.last_time:
            raise InputError("time", f"expected {self.last_time.isoformat()} or later")
        if kind == "trade":
            return self._trade(message, time)
        return self._transfer(fields, time)

    def _header(self, message: dict[str, Any]) -> list[Event]:
        if self.engine is not None:
            raise InputError("type", "a second header")
        doc, self.public_keys = read_header(message)
        self.engine = self._start(doc)
        return []

    def _engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    # ----- what a store keeps beside the engine's snapshot -------------------------------

    def state_doc(self) -> dict[str, Any]:
        """The run's own state (not the engine's) as JSON, for a store's snapshot."""
        return {
            "public_keys": self.public_keys,
            "seen_signatures": sorted(self.seen_signatures),
            "action_ids": self.action_ids,
            "refused": [list(astuple(r)) for r in self.refused],
            "last_seq": self.last_seq,
            "ended": self.ended,
            "last_time": self.last_time.isoformat() if self.last_time else None,
            "transfers": [[t.isoformat(), *rest] for t, *rest in self.transfers],
            "transfer_ids": sorted(self.transfer_ids),
            "transfers_done": [list(done) for done in self.transfers_done],
            "registrations": [
                [r.seq, r.time.isoformat(), r.operator, r.subject, r.public_key, r.reason]
                for r in self.registrations
            ],
        }

    def restore(self, engine: Engine, doc: dict[str, Any]) -> None:
        """Continue from a store: the engine of its snapshot and the run's state beside it."""
        self.engine = engine
        self.public_keys = dict(doc["public_keys"])
        self.seen_signatures = set(doc["seen_signatures"])
        self.action_ids = list(doc["action_ids"])
        self.refused = [FeedRefusal(*r) for r in doc["refused"]]
        self.last_seq = doc["last_seq"]
        self.ended = doc["ended"]
        last = doc["last_time"]
        self.last_time = datetime.fromisoformat(last) if last else None
        self.transfers = [
            (datetime.fromisoformat(t), seq, account, code, minor)
            for t, seq, account, code, minor in doc["transfers"]
        ]
        self.transfer_ids = set(doc["transfer_ids"])
        self.transfers_done = [(seq, what) for seq, what in doc["transfers_done"]]
        self.registrations = [
            KeyRegistration(seq, datetime.fromisoformat(t), operator, subject, key, reason)
            for seq, t, operator, subject, key, reason in doc["registrations"]
        ]

    # ----- the clock --------------------------------------------------------------------

    def _step_until(self, time: datetime) -> list[Event]:
        """Step the ticks up to `time` (prices held); `time` must fall on a tick."""
        engine = self.engine
        assert engine is not None
        step = timedelta(seconds=engine.scenario.tick_seconds)
        offset = time - engine.scenario.start
        if offset % step or time < engine.now:
            raise InputError("time", f"expected a tick after {engine.now.isoformat()}")
        events: list[Event] = []
        while engine.now < time:
            self._transfers_due(engine.now + step)
            events.extend(self._step())
            engine = self._engine()
        self.last_time = time
        return events

    def step_to(self, tick: int) -> list[Event]:
        """Step to `tick` with the prices held, as the next `tick` or `end` message would on its
        way to its own time (a what-if branch forks between the ticks of one message)."""
        engine = self._engine()
        scenario = engine.scenario
        return self._step_until(scenario.start + timedelta(seconds=tick * scenario.tick_seconds))

    def _tick(self, fields: _Fields, time: datetime) -> list[Event]:
        engine = self.engine
        assert engine is not None
        if time <= engine.now:
            raise InputError("time", f"expected a tick after {engine.now.isoformat()}")
        indices = fields.get("indices", _map, _positive, default={})
        marks = fields.get("marks", _map, _positive, default={})
        for name in indices:
            if name not in engine.index_paths:
                raise InputError(f"indices.{name}", "expected an index of the header")
        symbols = {inst.symbol: k for k, inst in enumerate(engine.instruments)}
        for symbol in marks:
            k = symbols.get(symbol)
            if k is None or not isinstance(engine.mark_rules[k], PinnedMark):
                raise InputError(f"marks.{symbol}", "expected a mark the header pins")
        step = timedelta(seconds=engine.scenario.tick_seconds)
        events = self._step_until(time - step)
        # The new prices hold from this tick on: a one-point path is constant.
        for name, price in indices.items():
            engine.index_paths[name] = PricePath(((time, price),), f"indices.{name}")
        for symbol, price in marks.items():
            engine.mark_rules[symbols[symbol]] = PinnedMark(
                PricePath(((time, price),), f"marks.{symbol}")
            )
        events.extend(self._step_until(time))
        return events

    # ----- inputs at the next tick ------------------------------------------------------

    def _trade(self, message: dict[str, Any], time: datetime) -> list[Event]:
        engine = self.engine
        assert engine is not None
        item = {k: v for k, v in message.items() if k not in ("type", "time")}
        item["at"] = message["time"]
        trading = engine.trading
        trade = parse_trade(item, "", len(trading.trades), engine.scenario, after=engine.now)
        trading.trades = (*trading.trades, trade)
        self.last_time = time
        return []

    def _transfer(self, fields: _Fields, time: datetime) -> list[Event]:
        engine = self.engine
        assert engine is not None
        for name in ("account", "currency", "amount", "id"):
            if name not in fields:
                raise InputError(name, "expected this required field, found none")
        transfer_id = fields.get("id", _id)
        if transfer_id in self.transfer_ids:
            raise InputError("id", f"transfer {transfer_id!r} was applied before")
        account = fields.get("account", _id)
        code = fields.get("currency", _known, engine.scenario.currencies, "currency")
        currency = engine.scenario.currencies[code]
        amount = fields.get("amount", _money, currency)
        if not amount:
            raise InputError("amount", "expected a deposit (> 0) or a withdrawal (< 0), found 0")
        if time <= engine.now:
            raise InputError("time", f"expected a time after {engine.now.isoformat()}")
        self.transfer_ids.add(transfer_id)
        minor = int(amount.scaleb(currency.decimals))
        self.transfers.append((time, self.last_seq, account, code, minor))
        self.last_time = time
        return []

    def _transfers_due(self, now: datetime) -> None:
        """The transfers up to the tick about to step, at the prices of the tick before it."""
        engine = self.engine
        assert engine is not None
        while self.transfers and self.transfers[0][0] <= now:
            _, seq, account, code, minor = self.transfers.pop(0)
            try:
                self.transfers_done.append((seq, engine.transfer(account, code, minor)))
            except Refusal as refusal:
                self.refused.append(FeedRefusal(seq, "transfer", refusal.code, refusal.reason))

    def _command(self, fields: _Fields, time: datetime) -> list[Event]:
        engine = self.engine
        assert engine is not None
        command, signature = fields.values["command"], fields.values.get("signature")
        if not isinstance(command, dict):
            raise InputError("command", "expected an operator command object")
        operator = command.get("operator")
        key = self.public_keys.get(str(operator))
        if not isinstance(signature, str) or not signature:
            raise InputError("signature", "unsigned: a command needs its operator's signature")
        if key is None:
            raise InputError("command.operator", f"no public key registered for {operator!r}")
        # Verified before the replay check: an altered copy of an applied command is named as
        # altered, and only the very same signed command as replayed.
        if not verify(key, signature, fields.values["time"], command):
            raise InputError("signature", f"not {operator}'s signature over this command")
        if signature in self.seen_signatures:
            raise InputError("signature", "replayed: this signed command was applied before")
        if command.get("action") == REGISTER_KEY:
            self._register_key(command, time)
            self.seen_signatures.add(signature)
            return []
        # A desk signs at the exchange time it sees; its command reaches the stream a moment
        # later, so one stamped at or before the clock applies at the next tick (on every desk
        # alike: all of them meet it at the same place in the stream).
        next_tick = engine.now + timedelta(seconds=engine.scenario.tick_seconds)
        at = fields.values["time"] if time >= next_tick else next_tick.strftime(_ISO)
        action = parse_command(engine.scenario, {**command, "at": at}, self.action_ids)
        self.accepted = action
        self.seen_signatures.add(signature)
        if action.id:
            self.action_ids.append(action.id)
        bisect.insort(engine.controls.pending_actions, action, key=lambda a: a.at)
        if time >= next_tick:
            self.last_time = time
        return []

    def _register_key(self, command: dict[str, Any], time: datetime) -> None:
        """A signed `register_key`: taken only from an admin of the header, for an operator of
        the header; the key holds from the next message on, so a stolen key is rotated out."""
        engine = self.engine
        assert engine is not None
        fields = _Fields(command, "command", REGISTER_FIELDS)
        roles = {spec.name: spec.role for spec in engine.scenario.operators}
        operator = fields.get("operator", _id)
        if roles.get(operator) != "admin":
            role = roles.get(operator, "not an operator of the header")
            raise InputError(
                "command.operator", f"{operator} is {role}: only an admin registers keys"
            )
        subject = fields.get("subject", _known, roles, "operator of the header")
        public_key = fields.get("public_key", _string)
        if not valid_public_key(public_key):
            raise InputError("command.public_key", "expected an Ed25519 public key as 64 hex")
        reason = fields.get("reason", require_visible)
        self.public_keys[subject] = public_key.lower()
        self.registrations.append(
            KeyRegistration(self.last_seq, time, operator, subject, public_key.lower(), reason)
        )


def read_header(message: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The scenario document of the exchange a `header` describes (validated; each opening
    price held to the feed's horizon) and the operators' public keys it gives."""
    fields = _Fields(message, "", ("type", "format", "scenario"))
    if fields.values["type"] != "header":
        raise InputError("type", f"expected the header first, found {fields.values['type']!r}")
    if fields.values["format"] != FORMAT:
        raise InputError("format", f"expected {FORMAT!r}, found {fields.values['format']!r}")
    doc = copy.deepcopy(fields.values["scenario"])
    if not isinstance(doc, dict):
        raise InputError("scenario", "expected a risk-scenario/1 object")
    public_keys: dict[str, str] = {}
    for n, operator in enumerate(doc.get("operators", []) or []):
        if isinstance(operator, dict) and "public_key" in operator:
            key = operator.pop("public_key")
            if not isinstance(key, str) or len(key) != 64:
                raise InputError(f"scenario.operators[{n}].public_key", "expected 64 hex")
            public_keys[str(operator.get("name"))] = key
    _extend_to_horizon(doc)
    try:
        parse_scenario(doc)
    except InputError as error:
        raise InputError(f"scenario.{error.field}", error.message) from None
    return doc, public_keys


_OPTIONAL: dict[str, tuple[str, ...]] = {
    "tick": ("indices", "marks", "books"),
    "trade": ("account", "symbol", "side", "contracts", "price", "margin", "leverage"),
    "transfer": ("account", "currency", "amount", "id"),
    "command": ("command", "signature"),
    "heartbeat": (),
    "end": (),
}


def _extend_to_horizon(doc: dict[str, Any]) -> None:
    """Hold each opening price to the feed's horizon (`x-end`, or as far as a run may go), so
    that the settlement schedule and the last tick are those of the exchange's run."""
    start = _time(doc.get("start"), "scenario.start")
    seconds = doc.get("tick_seconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        return  # the scenario parser names the field
    if END_FIELD in doc:
        end = _time(doc[END_FIELD], f"scenario.{END_FIELD}")
        if end <= start or (end - start) % timedelta(seconds=seconds):
            raise InputError(f"scenario.{END_FIELD}", "expected a tick after start")
    else:
        end = start + timedelta(seconds=seconds * (MAX_TICKS - 1))
    market = doc.get("market")
    for kind in ("indices", "marks"):
        paths = market.get(kind) if isinstance(market, dict) else None
        for name, points in (paths or {}).items():
            if isinstance(points, list) and len(points) == 1 and isinstance(points[0], list):
                paths[name] = [points[0], [end.strftime(_ISO), points[0][1]]]


def _positive(value: Any, path: str) -> Decimal:
    return _decimal(value, path, positive=True)
