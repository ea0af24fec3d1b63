"""The deterministic simulation of tests/core/test_simulation.py: a seed makes a small exchange and a
plan of operator steps (valid and not, by operators whose roles change), which runs through the
real store either killed with -9 and resumed or uninterrupted, with an oracle of who may do what."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.core.test_engine_properties import KINDS, check_tick, iso, money, notional, seconds_of

ROOT = Path(__file__).resolve().parents[2]
# The demo identities (core/operators.py) the plan acts as; admin stays admin, so a store always
# has one to change the others.
ACTORS = ("vera", "alice", "bob", "carol", "dave")
ROLES = ("viewer", "operator", "supervisor", "admin")
START_ROLES = {"vera": "viewer", "alice": "operator", "bob": "operator"}
START_ROLES |= {"carol": "supervisor", "dave": "supervisor"}
ACCOUNT_ACTIONS = ("warn", "restrict", "freeze", "freeze_withdrawals", "unfreeze", "cancel_orders")
DECISIONS = ("approve", "reject", "approve_clawback", "reject_clawback")
BAD_AMOUNTS = ("-1", "0", "abc", "1e400", "\uff11", " 7 ", "1_000", "100000000000")
# What a command's authority may leave standing: these need the supervisor role, the rest any of
# the acting roles (DESIGN.md section 4, docs/operators.md).
ACTING = frozenset({"operator", "supervisor", "admin"})
GHOST = "acct-ghost"


def draw_exchange(rnd: random.Random) -> dict[str, Any]:
    """A risk-scenario/1 document: 1-2 instruments, 3-6 accounts whose positions net to zero per
    instrument, a price path of 4-7 points a few minutes long, a few `x-trades`, random policies
    and fund; every instrument expires at the end of the run."""
    length, seconds = rnd.randint(4, 7), [0]
    for _ in range(length - 1):
        seconds.append(seconds[-1] + rnd.randint(10, 45))
    end = seconds[-1]
    n_accounts = rnd.randint(3, 6)
    accounts: list[dict[str, Any]] = [
        {"id": f"acct-{a}", "balances": {}, "positions": []} for a in range(n_accounts)
    ]
    instruments, indices, books, currencies = [], {}, {}, set()
    for k in range(rnd.randint(1, 2)):
        kind = rnd.choice(("linear", "inverse"))
        type_, cv, currency = KINDS[kind]
        currencies.add(currency)
        base = Decimal(rnd.randint(100_000, 2_000_000)) / 100
        price, path = base, []
        for s in seconds:
            path.append([iso(s), str(price)])
            move = Decimal(rnd.randint(-300, 300)) / 1000
            price = max(Decimal(1), (price * (1 + move)).quantize(Decimal("0.01")))
        symbol, index = f"I{k}", f"IDX{k}"
        indices[index] = path
        if rnd.random() < 0.5:
            books[symbol] = {"depth": str(rnd.randint(5, 2000)), "refill_seconds": "5"}
        instruments.append(
            {
                "symbol": symbol,
                "type": type_,
                "contract_value": str(cv),
                "settle_currency": currency,
                "tick_size": "0.01",
                "expiry": iso(end),
                "family": f"FAM{k}",
                "index": index,
                "tiers": {
                    "basis": "contracts",
                    "levels": [{"mmr": rnd.choice(("0.005", "0.01")), "max_leverage": "100"}],
                },
                "mark": {"ema_seconds": rnd.randint(1, 20)},
                "liquidation_band": rnd.choice(("0.01", "0.02")),
            }
        )
        _open_positions(rnd, accounts, symbol, kind, base)
    trades = [_trade(rnd, end, n_accounts, instruments, indices) for _ in range(rnd.randint(0, 6))]
    return {
        "format": "risk-scenario/1",
        "name": "simulated",
        "start": iso(0),
        "tick_seconds": 1,
        "currencies": {c: 6 if c == "USDT" else 8 for c in sorted(currencies)},
        "instruments": instruments,
        "insurance_fund": {
            c: money(Decimal(rnd.randint(0, 10**5)) / 10 ** rnd.randint(0, 4), c)
            for c in sorted(currencies)
        },
        "accounts": accounts,
        "market": {"indices": indices, "marks": {}, "books": books},
        "policy": {
            "deficit": rnd.choice(("clawback", "adl")),
            "partial_liquidation": rnd.random() < 0.5,
            "fund_reservation": rnd.random() < 0.5,
            "clawback_approval": rnd.choice(("auto", "required")),
            "settlement": {"every": "expiry"},
        },
        "x-trades": sorted(trades, key=lambda t: t["at"]),
    }


def _open_positions(
    rnd: random.Random, accounts: list[dict[str, Any]], symbol: str, kind: str, base: Decimal
) -> None:
    """Longs and shorts of one instrument whose contracts net to zero."""
    order = list(range(len(accounts)))
    rnd.shuffle(order)
    n_long = rnd.randint(1, len(order) - 1)
    longs, shorts = order[:n_long], order[n_long:]
    sizes = [rnd.randint(1, 500) for _ in longs]
    total = sum(sizes)
    shorts = shorts[: min(len(shorts), total)]
    cuts = sorted(rnd.sample(range(1, total), len(shorts) - 1)) if len(shorts) > 1 else []
    short_sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    currency = KINDS[kind][2]
    for side, owners, counts in (("long", longs, sizes), ("short", shorts, short_sizes)):
        for a, contracts in zip(owners, counts, strict=True):
            entry = (base * (1 + Decimal(rnd.randint(-50, 50)) / 1000)).quantize(Decimal("0.01"))
            leverage = rnd.randint(2, 50)
            margin = notional(kind, contracts, entry) / leverage * rnd.randint(60, 200) / 100
            position = {
                "symbol": symbol,
                "side": side,
                "contracts": contracts,
                "entry_price": str(entry),
                "leverage": str(leverage),
            }
            balances = accounts[a]["balances"]
            if rnd.random() < 0.3:
                position |= {"margin_mode": "isolated", "margin": money(margin, currency)}
                balances.setdefault(currency, "0")
            else:
                position["margin_mode"] = "cross"
                held = Decimal(balances.get(currency, "0"))
                balances[currency] = money(held + margin, currency)
            accounts[a]["positions"].append(position)


def _trade(
    rnd: random.Random,
    end: int,
    n_accounts: int,
    instruments: list[dict[str, Any]],
    indices: dict[str, list[list[str]]],
) -> dict[str, Any]:
    """A trade near the index at its time, now and then by an account the book does not hold."""
    inst = rnd.choice(instruments)
    at = rnd.randint(1, end - 1)
    price = Decimal(next(p for t, p in reversed(indices[inst["index"]]) if t <= iso(at)))
    price = (price * (1 + Decimal(rnd.randint(-20, 20)) / 1000)).quantize(Decimal("0.01"))
    account = GHOST if rnd.random() < 0.1 else f"acct-{rnd.randrange(n_accounts)}"
    return {
        "at": iso(at),
        "account": account,
        "symbol": inst["symbol"],
        "side": rnd.choice(("buy", "sell")),
        "contracts": rnd.randint(1, 50),
        "price": str(price),
    }


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Admin:
    """`risk-console operators VERB STORE NAME [ROLE]`, by the OS user."""

    verb: str  # role, disable, enable, demo
    name: str = ""
    role: str = ""

    def argv(self, store: Path) -> list[str]:
        if self.verb == "demo":
            return ["operators", "demo", str(store)]
        return ["operators", self.verb, str(store), self.name, *([self.role] if self.role else [])]


@dataclass(frozen=True, slots=True)
class Command:
    """An operator command tagged by its reason. `given` is how it reaches the journal: `cli`
    (`risk-console action`, applied at once), `pending` (given through a login and left for the
    next tick, as by a desk stopped before it) or `forged` (a journal row written by hand)."""

    tag: str
    operator: str
    action: str
    fields: dict[str, Any]
    given: str = "cli"
    password: str = ""

    def raw(self) -> dict[str, Any]:
        return {"operator": self.operator, "action": self.action, "reason": self.tag, **self.fields}

    def argv(self, store: Path) -> list[str]:
        argv = ["action", str(store), self.action, "--as", self.operator]
        argv += ["--password", self.password, "--reason", self.tag]
        for name, value in self.fields.items():
            argv += [f"--{name}", str(value)]
        return argv


Step = Admin | Command


@dataclass(frozen=True, slots=True)
class Segment:
    """Run to tick `until` (None: to the end of the scenario), then take the steps."""

    until: int | None
    steps: tuple[Step, ...]


@dataclass(slots=True)
class Plan:
    """A seed's exchange, its segments, and what the oracle expects of every command that
    reaches the journal: ("role", role) or ("code", refusal code), by tag."""

    seed: int
    doc: dict[str, Any]
    segments: list[Segment]
    expected: dict[str, tuple[str, Any]] = field(default_factory=dict)
    makers: dict[str, str] = field(default_factory=dict)


class _Model:
    """The operators as the plan has set them: role and enabled state of each name."""

    def __init__(self) -> None:
        self.roles = dict(START_ROLES)
        self.disabled: set[str] = set()
        self.failures: dict[str, int] = {}

    def password(self, rnd: random.Random, name: str) -> str:
        """Now and then a wrong password, never two in a row for a name: a second would start the
        login delay (core/logins.py), which the wall clock, not the seed, would then decide."""
        wrong = name not in self.roles or (not self.failures.get(name) and rnd.random() < 0.07)
        if wrong:
            self.failures[name] = self.failures.get(name, 0) + 1
            return "wrong-password"
        if name not in self.disabled:
            self.failures[name] = 0
        return f"{name}-demo"

    def apply(self, step: Admin) -> None:
        if step.verb == "role":
            self.roles[step.name] = step.role
        elif step.verb == "disable":
            self.disabled.add(step.name)
        elif step.verb == "enable":
            self.disabled.discard(step.name)

    def authority(self, name: str) -> tuple[str, Any]:
        if name not in self.roles:
            return ("code", "unknown_operator")
        if name in self.disabled:
            return ("code", "disabled")
        return ("role", self.roles[name])


def draw_plan(seed: int) -> Plan:
    """The whole simulation of `seed`: the same seed gives the same plan, whatever is killed."""
    rnd = random.Random(seed)
    doc = draw_exchange(rnd)
    last = max(seconds_of(p[-1][0]) for p in doc["market"]["indices"].values())
    ticks = sorted(rnd.sample(range(1, last - 1), rnd.randint(2, 4)))
    plan = Plan(seed, doc, [])
    model, counter = _Model(), [0]
    ends: list[int | None] = [*ticks, *([None] if rnd.random() < 0.5 else [])]
    for n, until in enumerate(ends):
        steps: list[Step] = [Admin("demo")] if n == 0 else []
        for _ in range(rnd.randint(1, 4)):
            steps.append(_draw_step(rnd, plan, model, counter, "cli"))
        # Commands left for the next tick, then changes that must count when they apply.
        later: list[Step] = []
        for _ in range(rnd.randint(0, 2)):
            later.append(_draw_step(rnd, plan, model, counter, rnd.choice(("pending", "forged"))))
        pending = [s for s in later if isinstance(s, Command)]
        for _ in range(rnd.randint(0, 2)):
            # Often the operator of a command waiting to apply: that is what must count.
            names = [c.operator for c in pending if c.operator in ACTORS]
            later.append(_draw_admin(rnd, model, names))
        for command in pending:
            # A forged row is refused whatever it names: by its origin, or as invalid first.
            forged = command.given == "forged"
            plan.expected[command.tag] = (
                ("refused", None) if forged else model.authority(command.operator)
            )
        plan.segments.append(Segment(until, (*steps, *later)))
    return plan


def _draw_admin(rnd: random.Random, model: _Model, names: Sequence[str] = ()) -> Admin:
    name = rnd.choice(names) if names and rnd.random() < 0.6 else rnd.choice(ACTORS)
    verb = rnd.choice(("role", "role", "disable", "enable"))
    step = Admin(verb, name, rnd.choice(ROLES) if verb == "role" else "")
    model.apply(step)
    return step


def _draw_step(
    rnd: random.Random, plan: Plan, model: _Model, counter: list[int], given: str
) -> Step:
    """An admin change, or a command: valid or not, by anyone (the oracle of a `cli` one is
    set here; a later one's when the segment's changes are known)."""
    if given == "cli" and rnd.random() < 0.3:
        return _draw_admin(rnd, model)
    counter[0] += 1
    tag = f"op-{counter[0]}"
    action, fields = _draw_command(rnd, plan)
    operator = _draw_operator(rnd, plan, model, action, fields)
    password = model.password(rnd, operator)
    command = Command(tag, operator, action, fields, given, password)
    if "id" in fields:
        plan.makers.setdefault(str(fields["id"]), operator)
    if given == "cli":
        plan.expected[tag] = model.authority(operator)
    return command


def _draw_operator(
    rnd: random.Random, plan: Plan, model: _Model, action: str, fields: dict[str, Any]
) -> str:
    """Anyone now and then (an unknown name too); mostly one whose role and state let the
    command apply, so that the valid paths are walked as often as the refusals."""
    if rnd.random() < 0.08:
        return "mallory"
    able = [n for n in ACTORS if n not in model.disabled and model.roles[n] in ACTING]
    if action in DECISIONS:
        maker = plan.makers.get(str(fields.get("request")))
        able = [n for n in able if model.roles[n] == "supervisor" and n != maker]
    if able and rnd.random() < 0.65:
        return rnd.choice(able)
    return rnd.choice(ACTORS)


def _draw_command(rnd: random.Random, plan: Plan) -> tuple[str, dict[str, Any]]:
    doc = plan.doc
    accounts = [a["id"] for a in doc["accounts"]]
    account = GHOST if rnd.random() < 0.1 else rnd.choice(accounts)
    inst = rnd.choice(doc["instruments"])
    requests = list(plan.makers)
    kind = rnd.choice(
        ("account", "account", "inject", "force_reduce", "decide", "decide", "clawback", "price")
    )
    if kind == "account":
        action = rnd.choice(ACCOUNT_ACTIONS)
        extra = {"message": "margin call"} if action == "warn" else {}
        return action, {"account": account, **extra}
    if kind == "inject":
        amount = rnd.choice(BAD_AMOUNTS) if rnd.random() < 0.3 else str(rnd.randint(1, 500) / 100)
        fields = {"currency": inst["settle_currency"], "amount": amount}
        return "inject", {"id": f"r{len(requests)}", **fields}
    if kind == "force_reduce":
        fields = {"account": account, "symbol": inst["symbol"], "contracts": rnd.randint(1, 80)}
        return "force_reduce", {"id": f"r{len(requests)}", **fields}
    if kind == "decide":
        request = rnd.choice(requests) if requests and rnd.random() < 0.85 else "r-none"
        return rnd.choice(("approve", "approve", "reject")), {"request": request}
    if kind == "clawback":
        action = rnd.choice(("approve_clawback", "reject_clawback"))
        return action, {"family": inst["family"], "currency": inst["settle_currency"]}
    price = str(Decimal(doc["market"]["indices"][inst["index"]][-1][1]) + rnd.randint(-5, 5))
    return "adjust_settlement_price", {
        "id": f"r{len(requests)}",
        "family": inst["family"],
        "price": price,
    }


# ----------------------------------------------------------------------------- the steps


def take_step(store: Path, step: Step) -> None:
    """One step through the command line (in this process: only runs are killed), or for a
    pending or forged command through the session as a desk would leave it."""
    from console.cli.main import main

    if isinstance(step, Admin) or step.given == "cli":
        main(step.argv(store))
    elif step.given == "pending":
        _give_pending(store, step)
    else:
        _forge(store, step)


def _give_pending(store: Path, command: Command) -> None:
    from datetime import UTC, datetime

    from core.desk.operators import authenticate
    from core.model.errors import InputError
    from core.model.operations import Refusal
    from core.session.session import Session

    session = Session.open(store)
    try:
        assert session.store is not None
        operator = authenticate(
            session.store.db, command.operator, command.password, at=datetime.now(UTC)
        )
        session.submit(command.raw(), role=operator.role)
    except (Refusal, InputError):
        pass  # refused where it is typed: nothing reaches the journal
    finally:
        session.close()


def _forge(store: Path, command: Command) -> None:
    """A command row written into the journal by hand, claiming the supervisor role."""
    from core.model.events import iso as iso_time
    from core.session.session import Session

    session = Session.open(store)
    try:
        assert session.store is not None
        row = {**command.raw(), "x-role": "supervisor", "at": iso_time(session.engine.now)}
        with session.store.transaction():
            session.store.write_command(session.head + 1, session.engine.now, row)
    finally:
        session.close()


# ----------------------------------------------------------------------------- the two runs


def check_engine(engine: Any, where: str) -> None:
    """The per-tick invariants: each currency's ledger sums to zero (the ledger's own check too)
    and the insurance fund is never negative nor reserved beyond itself."""
    try:
        engine.ledger.check()
        check_tick(engine)
    except AssertionError as error:
        raise AssertionError(f"{where}, tick {engine.tick}: {error}") from None


def run_uninterrupted(plan: Plan, scenario: Path, store: Path) -> None:
    """The plan with every tick stepped here, the invariants checked after each; between
    segments the store is closed for the steps, as `run --until` and `resume --until` do."""
    from core.session.session import Session

    where = f"seed {plan.seed}, uninterrupted"
    session = Session.start(scenario, store)
    check_engine(session.engine, where)
    for segment in [*plan.segments, Segment(None, ())]:
        if session is None:
            session = Session.open(store)
            if session.queued:
                session.apply_pending() if session.finished else session.step()
                check_engine(session.engine, where)
        while not session.finished and (segment.until is None or session.tick < segment.until):
            session.step()
            check_engine(session.engine, where)
        session.close()
        session = None
        for step in segment.steps:
            take_step(store, step)


@dataclass(slots=True)
class Killer:
    """Runs `python -m console.cli run|resume --db` in a child and kills it with -9 at random
    points: once its head passes a tick drawn from the seed, or at a moment after its start."""

    rnd: random.Random
    scenario: Path
    store: Path
    log: Path
    max_kills: int
    kills: list[str] = field(default_factory=list)

    def advance(self, until: int | None, last: int) -> None:
        for attempt in range(8):
            head = self._head()
            if head is None:
                argv = ["run", str(self.scenario), "--out", os.devnull, "--db", str(self.store)]
            else:
                argv = ["resume", str(self.store), "--out", os.devnull]
            argv += ["--quiet", *(["--until", str(until)] if until is not None else [])]
            spent = attempt >= 3 or len(self.kills) >= self.max_kills
            target = None if spent or self.rnd.random() < 0.3 else self._target(head, until, last)
            if self._once(argv, target):
                return
        raise AssertionError(f"the run did not reach tick {until} in 8 attempts: {self.kills}")

    def _target(self, head: int | None, until: int | None, last: int) -> tuple[str, float]:
        # A moment after the start: often before the store exists, or while it is created.
        if head is None or self.rnd.random() < 0.15:
            return ("seconds", self.rnd.uniform(0.3, 2.0))
        top = max(last if until is None else until, head + 1)
        return ("tick", self.rnd.randint(head + 1, top))

    def _once(self, argv: list[str], target: tuple[str, float] | None) -> bool:
        """True when the child ran to its end; False when it was killed."""
        with self.log.open("a") as log:
            log.write(f"$ risk-console {' '.join(argv)}  (kill at {target})\n")
            log.flush()
            child = subprocess.Popen(
                [sys.executable, "-m", "console.cli", *argv], cwd=ROOT, stdout=log, stderr=log
            )
            began = time.monotonic()
            while child.poll() is None and target is not None:
                kind, at = target
                if (kind == "seconds" and time.monotonic() - began >= at) or (
                    kind == "tick" and (self._head() or -1) >= at
                ):
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    self.kills.append(f"{argv[0]} at {kind} {at} (head {self._head()})")
                    return False
                time.sleep(0.002)
            code = child.wait()
        assert code == 0, f"risk-console {argv[0]} exited {code}: see {self.log}"
        return True

    def _head(self) -> int | None:
        if not self.store.exists():
            return None
        conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT max(tick) FROM journal WHERE kind = 'tick'").fetchone()
        except sqlite3.DatabaseError:
            return None  # not published yet, or published a moment ago
        finally:
            conn.close()
        return None if row is None else row[0]


def run_killed(plan: Plan, scenario: Path, store: Path, log: Path, max_kills: int) -> list[str]:
    """The plan with its runs and resumes children killed -9 at random points (at most
    `max_kills` times) and resumed until each reaches its segment's end; returns the kills."""
    killer = Killer(random.Random(f"kills-{plan.seed}"), scenario, store, log, max_kills)
    last = max(seconds_of(p[-1][0]) for p in plan.doc["market"]["indices"].values())
    for segment in [*plan.segments, Segment(None, ())]:
        killer.advance(segment.until, last)
        for step in segment.steps:
            take_step(store, step)
    return killer.kills


def write_scenario(plan: Plan, folder: Path) -> Path:
    path = folder / f"seed-{plan.seed}.json"
    path.write_text(json.dumps(plan.doc, indent=1))
    return path
