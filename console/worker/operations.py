"""What the operations docks need from the engine thread (pending requests, the settlement review,
the surveillance thresholds, the audit log's head), the outcome of each operator command, and the
UI-side backends that answer the views from that published state: store queries, threshold
changes and clawback previews go to the engine thread as requests and come back by signal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from console.widgets.approvals import PendingRequest
from console.widgets.settlement_view import SettlementState
from console.worker.readers import pending_requests, settlement_state
from core.desk.alerts import SETTINGS_ROLE
from core.desk.operators import Operator
from core.desk.queries import AlertChange, AlertsQuery, DeskQueries
from core.engine.surveillance import parse_thresholds
from core.model.errors import InputError
from core.model.events import ActionRecorded, ActionRefused
from core.model.operations import Refusal, refusal_text
from core.model.settlement import ClawbackPreview
from core.model.text import is_blank
from core.model.thresholds import Thresholds

if TYPE_CHECKING:
    from core.engine.facade import Engine
    from core.session.session import Session

PREVIEW_CACHE = 64  # typed prices remembered per state (each a full allocation)
# Sends a store query to the engine thread; the callable gets its answer on the UI thread.
Ask = Callable[[object, Callable[[Any], None]], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an operator's command. `token` names the submit it answers (0: an
    engine outcome of a later tick); `field` or `code` say why it failed."""

    ok: bool
    text: str
    operator: str | None = None
    token: int = 0
    field: str | None = None
    code: str | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class OperationsState:
    """The operations docks' view of the engine at one tick (built on the engine's thread)."""

    tick: int
    live: bool
    finished: bool
    playing: bool
    requests: tuple[PendingRequest, ...]
    families: tuple[str, ...]
    settlement: SettlementState | None
    thresholds: Thresholds
    audit_head: int = 0  # the last audit row's seq: the audit view reloads when it moves

    @property
    def pending_clawbacks(self) -> tuple[str, ...]:
        """The ids of clawback requests waiting for a supervisor."""
        return tuple(r.id for r in self.requests if r.action == "approve_clawback")


def settled_families(engine: Engine) -> tuple[str, ...]:
    """Families that settle (futures), in the engine's order."""
    out: list[str] = []
    for inst in engine.instruments:
        if inst.expiry is not None and inst.family not in out:
            out.append(inst.family)
    return tuple(out)


def chosen_family(engine: Engine, wanted: str | None) -> str | None:
    """The family the settlement view reviews: the one asked for, else one with a clawback
    waiting, else the first that settles."""
    families = settled_families(engine)
    if wanted in families:
        return wanted
    for family, _ in sorted(engine.settlements.pending):
        if family in families:
            return family
    return families[0] if families else None


def operations_state(session: Session, family: str | None, *, playing: bool) -> OperationsState:
    """Call on the engine's thread."""
    engine = session.engine
    chosen = chosen_family(engine, family)
    return OperationsState(
        engine.tick,
        session.live,
        session.finished,
        playing,
        pending_requests(engine),
        settled_families(engine),
        settlement_state(engine, chosen) if chosen is not None else None,
        engine.surveillance.thresholds,
        DeskQueries(session.store.db).audit_head() if session.store is not None else 0,
    )


def failure(
    error: InputError | Refusal, operator: str | None, token: int = 0, action: str | None = None
) -> Outcome:
    """The Outcome of a command refused before it was journaled (bad field or refusal)."""
    if isinstance(error, InputError):
        text = f"{error.field}: {error.message}"
        return Outcome(False, text, operator, token, field=error.field, action=action)
    text = refusal_text(error.reason, error.code)
    return Outcome(False, text, operator, token, code=error.code, action=action)


def engine_outcomes(events: list[Any]) -> list[Outcome]:
    """The outcome of each command the engine applied or refused in a tick."""
    out = []
    for event in events:
        if not isinstance(event, ActionRecorded | ActionRefused):
            continue
        subject = f"{event.action}" + (f" {event.request}" if event.request else "")
        if isinstance(event, ActionRecorded):
            detail = f": {event.detail}" if event.detail else ""
            out.append(
                Outcome(True, f"{subject} applied{detail}", event.operator, action=event.action)
            )
        else:
            text = refusal_text(event.reason, event.code, subject)
            code = event.code or "engine"
            out.append(Outcome(False, text, event.operator, code=code, action=event.action))
    return out


class PreviewCache:
    """Clawback previews at typed prices, answered by the engine thread. A miss sends the request
    and reads as an InputError that says the preview is on its way; the answer calls `arrived`."""

    def __init__(self, request: Callable[[str, str, str], None]) -> None:
        self.request = request
        self.answers: dict[tuple[str, str, str], ClawbackPreview | InputError] = {}
        self.asked: set[tuple[str, str, str]] = set()
        self.arrived: Callable[[], None] = lambda: None

    def clear(self) -> None:
        self.answers.clear()
        self.asked.clear()

    def get(self, family: str, currency: str, price: Decimal) -> ClawbackPreview:
        key = (family, currency, format(price, "f"))
        answer = self.answers.get(key)
        if isinstance(answer, InputError):
            raise answer
        if answer is not None:
            return answer
        if key not in self.asked:
            self.asked.add(key)
            self.request(*key)
        raise InputError("price", f"computing the clawback preview at {key[2]}…")

    def answer(self, key: tuple[str, str, str], value: object) -> None:
        if key not in self.asked:
            return  # asked before the state changed: stale
        if len(self.answers) >= PREVIEW_CACHE:
            self.answers.clear()
        if isinstance(value, (ClawbackPreview, InputError)):
            self.answers[key] = value
        self.arrived()


class DeskAlerts:
    """The alerts view's backend for the logged-in operator: the queue and its changes are
    queries answered on the engine thread (core.desk.queries); thresholds as the engine last
    published them, and changes checked here, then applied, journaled and audited there."""

    def __init__(
        self,
        ask: Ask,
        operator: Operator,
        send: Callable[[dict[str, object], str], None],
        thresholds: Callable[[], Thresholds | None],
    ) -> None:
        self.ask = ask
        self.operator = operator
        self.send = send
        self.current = thresholds

    def page(self, state: str | None, reply: Callable[[Any], None]) -> None:
        self.ask(AlertsQuery(state), reply)

    def change(
        self,
        alert_id: int,
        reply: Callable[[Any], None],
        *,
        state: str | None = None,
        assign: bool = False,
        owner: str | None = None,
        note: str = "",
    ) -> None:
        query = AlertChange(self.operator.name, alert_id, state, owner, assign, note)
        self.ask(query, reply)

    def thresholds(self) -> Thresholds | None:
        return self.current()

    def set_thresholds(self, changes: dict[str, object], reason: str) -> dict[str, Any]:
        """Check what the engine thread will check (field, role, reason) so the operator hears of
        a mistake at once; return what will change. The engine's answer arrives as an Outcome."""
        before = self.thresholds()
        if before is None:
            raise InputError("thresholds", "the engine's thresholds have not arrived yet")
        after = parse_thresholds(changes, before)
        me = self.operator
        if not me.has_role(SETTINGS_ROLE):
            raise Refusal("role", f"{me.name} has the {me.role} role; this needs {SETTINGS_ROLE}")
        if not isinstance(reason, str) or is_blank(reason):
            raise InputError("reason", "a reason is required")
        changed = {
            f.name: getattr(after, f.name)
            for f in fields(Thresholds)
            if getattr(before, f.name) != getattr(after, f.name)
        }
        if changed:
            self.send(dict(changes), reason.strip())
        return changed
