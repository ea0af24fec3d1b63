"""The alert workflow in the store: alerts recorded from the surveillance events, their states
(open, acknowledged, resolved, dismissed), owner and notes, and threshold settings; every change
an operator makes is written to the audit log with its before and after."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlite_utils

from core.desk import audit
from core.desk.operators import LOCAL_PREFIX, SYSTEM, list_operators, require_role
from core.engine.surveillance import parse_thresholds
from core.model.errors import InputError
from core.model.events import AlertCleared, AlertRaised
from core.model.operations import Refusal
from core.model.text import is_blank
from core.model.thresholds import Thresholds
from core.store.store import finite_or_none

if TYPE_CHECKING:
    from core.engine.surveillance import Surveillance

STATES = ("open", "acknowledged", "resolved", "dismissed")
# Where each state may go. Resolved and dismissed alerts can be reopened (a rule that fires again
# after it cleared raises a new alert instead).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("acknowledged", "resolved", "dismissed"),
    "acknowledged": ("open", "resolved", "dismissed"),
    "resolved": ("open",),
    "dismissed": ("open",),
}
# Closing an alert says why: the note is the reason in the audit log.
NOTE_REQUIRED = frozenset({"resolved", "dismissed"})
WORK_ROLE = "operator"  # viewers look; operators and above work alerts
SETTINGS_ROLE = "supervisor"  # thresholds decide what the desk sees: a supervisor changes them
THRESHOLDS_KEY = "surveillance.thresholds"
MAX_NOTE = 2000
_UNCHANGED: Any = object()
_COLUMNS = (
    "id, rule, tick, time, account, symbol, severity, message, value, threshold, state, owner, "
    "notes, updated_at, cleared_at"
)


@dataclass(frozen=True, slots=True)
class Note:
    at: str
    operator: str
    text: str


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert row. `cleared_at` is when its rule stopped firing (None while it stands)."""

    id: int
    rule: str
    tick: int | None
    time: str
    account: str | None
    symbol: str | None
    severity: str
    message: str
    value: float | None
    threshold: float | None
    state: str
    owner: str | None
    notes: tuple[Note, ...]
    updated_at: str | None
    cleared_at: str | None

    @property
    def standing(self) -> bool:
        return self.cleared_at is None

    def allowed(self) -> tuple[str, ...]:
        """The states this alert may move to."""
        return TRANSITIONS[self.state]


def _alert(row: tuple[Any, ...]) -> Alert:
    values = list(row)
    notes = json.loads(values[12]) if values[12] else []
    values[12] = tuple(Note(n["at"], n["operator"], n["text"]) for n in notes)
    return Alert(*values)


# ----- recording the engine's events --------------------------------------------------------


def record(db: sqlite_utils.Database, events: Iterable[object], *, tick: int | None = None) -> int:
    """Turn AlertRaised events into open alerts and AlertCleared events into `cleared_at` on the
    standing alert of the same rule, account and symbol; other events are ignored. Runs inside
    the caller's transaction when there is one (the tick's), otherwise in its own. Returns the
    number of alerts raised."""
    raised = 0
    events = [e for e in events if isinstance(e, AlertRaised | AlertCleared)]
    if not events:
        return 0  # most ticks: no savepoint to open and release
    with audit.atomic(db):
        for event in events:
            if isinstance(event, AlertRaised):
                db.conn.execute(
                    "INSERT INTO alerts (rule, tick, time, account, symbol, severity, message, "
                    "value, threshold, state, owner, notes, updated_at, cleared_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL, '[]', NULL, NULL)",
                    (
                        event.rule,
                        tick,
                        audit.format_time(event.time, "time"),
                        event.account,
                        event.symbol,
                        event.severity,
                        event.message,
                        finite_or_none(event.value),
                        finite_or_none(event.threshold),
                    ),
                )
                raised += 1
            elif isinstance(event, AlertCleared):
                db.conn.execute(
                    "UPDATE alerts SET cleared_at = ? WHERE id = (SELECT max(id) FROM alerts "
                    "WHERE rule = ? AND account IS ? AND symbol IS ? AND cleared_at IS NULL)",
                    (
                        audit.format_time(event.time, "time"),
                        event.rule,
                        event.account,
                        event.symbol,
                    ),
                )
    return raised


# ----- reading ------------------------------------------------------------------------------


def get(db: sqlite_utils.Database, alert_id: int) -> Alert:
    if isinstance(alert_id, bool) or not isinstance(alert_id, int):
        raise InputError("alert", f"expected an alert number, found {alert_id!r}")
    row = db.conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise InputError("alert", f"no alert {alert_id}")
    return _alert(row)


def list_alerts(
    db: sqlite_utils.Database,
    *,
    state: str | None = None,
    account: str | None = None,
    rule: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> list[Alert]:
    """Alerts newest first, filtered by state, account and rule (any of them None: all)."""
    if state is not None and state not in STATES:
        raise InputError("state", f"expected one of {', '.join(STATES)}, found {state!r}")
    if not isinstance(limit, int) or not 0 < limit <= 100_000:
        raise InputError("limit", "expected a whole number from 1 to 100000")
    clauses, params = [], []
    for column, value in (("state", state), ("account", account), ("rule", rule)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = f"SELECT {_COLUMNS} FROM alerts{where} ORDER BY id DESC LIMIT ? OFFSET ?"
    return [_alert(row) for row in db.conn.execute(sql, [*params, limit, max(0, offset)])]


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """How many alerts are in each state (every state present, zero included)."""
    found = dict(db.conn.execute("SELECT state, count(*) FROM alerts GROUP BY state").fetchall())
    return {state: int(found.get(state, 0)) for state in STATES}


# ----- the workflow -------------------------------------------------------------------------


def _actor(db: sqlite_utils.Database, operator: str, minimum: str) -> None:
    if not isinstance(operator, str) or not operator.strip():
        raise InputError("operator", "the operator making the change must be named")
    if operator == SYSTEM or operator.startswith(LOCAL_PREFIX):
        return
    require_role(db, operator, minimum)


def change(
    db: sqlite_utils.Database,
    alert_id: int,
    *,
    operator: str,
    at: datetime | str,
    state: str | None = None,
    owner: str | None = _UNCHANGED,
    note: str = "",
) -> Alert:
    """Move an alert to `state`, give it an `owner` (None: nobody) and/or add a `note`, as one
    audited change. A move the workflow does not allow, or by a viewer, is a Refusal; a bad field
    is an InputError naming it. Nothing changes on either."""
    when = audit.format_time(at)
    _actor(db, operator, WORK_ROLE)
    current = get(db, alert_id)
    if not isinstance(note, str):
        raise InputError("note", f"expected text, found {type(note).__name__}")
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise InputError("note", f"too long: at most {MAX_NOTE} characters")
    new_state = current.state if state is None else state
    if new_state not in STATES:
        raise InputError("state", f"expected one of {', '.join(STATES)}, found {state!r}")
    if new_state != current.state and new_state not in current.allowed():
        raise Refusal(
            "transition",
            f"alert {alert_id} is {current.state}; it can be "
            f"{' or '.join(current.allowed())}, not {new_state}",
        )
    if new_state != current.state and new_state in NOTE_REQUIRED and not note:
        raise InputError("note", f"say why the alert is {new_state}")
    new_owner = current.owner if owner is _UNCHANGED else owner
    if new_owner is not None and new_owner != current.owner:
        if not isinstance(new_owner, str) or not new_owner:
            raise InputError("owner", "expected an operator name")
        try:
            require_role(db, new_owner, WORK_ROLE)
        except Refusal as refusal:
            raise InputError("owner", refusal.reason) from None
    if new_state == "acknowledged" and new_owner is None:
        new_owner = operator  # whoever acknowledges an unowned alert takes it
    if new_state == current.state and new_owner == current.owner and not note:
        raise Refusal("no_change", f"alert {alert_id} is already {current.state}")
    notes = [asdict(n) for n in current.notes]
    if note:
        notes.append({"at": when, "operator": operator, "text": note})
    before = {"state": current.state, "owner": current.owner}
    after: dict[str, Any] = {"state": new_state, "owner": new_owner}
    if note:
        after["note"] = note
    with audit.atomic(db):
        db.conn.execute(
            "UPDATE alerts SET state = ?, owner = ?, notes = ?, updated_at = ? WHERE id = ?",
            (new_state, new_owner, audit.canonical_json(notes, "notes"), when, alert_id),
        )
        audit.append(
            db,
            at=when,
            operator=operator,
            kind="alert",
            subject=f"alert:{alert_id}",
            reason=note or _verb(current.state, new_state, new_owner),
            before=before,
            after=after,
        )
    return get(db, alert_id)


def _verb(before: str, after: str, owner: str | None) -> str:
    if before != after:
        return after
    return f"owner {owner}" if owner else "owner removed"


# ----- thresholds (settings) ----------------------------------------------------------------


def saved_thresholds(db: sqlite_utils.Database) -> Thresholds | None:
    """The thresholds last set on this store, None when never changed."""
    row = db.conn.execute("SELECT value FROM settings WHERE key = ?", (THRESHOLDS_KEY,)).fetchone()
    if row is None:
        return None
    return parse_thresholds(json.loads(row[0]), Thresholds())


def record_thresholds(
    db: sqlite_utils.Database,
    before: Thresholds,
    after: Thresholds,
    *,
    operator: str,
    at: datetime | str,
    reason: str,
) -> dict[str, Any]:
    """Save `after` as the store's thresholds and audit the change (kind `settings`, the changed
    thresholds before and after). Returns the changed fields; nothing is written when none did."""
    when = audit.format_time(at)
    _actor(db, operator, SETTINGS_ROLE)
    if not isinstance(reason, str) or is_blank(reason):
        raise InputError("reason", "a reason is required")
    changed = [
        f.name for f in fields(Thresholds) if getattr(before, f.name) != getattr(after, f.name)
    ]
    if not changed:
        return {}
    with audit.atomic(db):
        db.conn.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
            (THRESHOLDS_KEY, audit.canonical_json(asdict(after), "thresholds")),
        )
        audit.append(
            db,
            at=when,
            operator=operator,
            kind="settings",
            subject=THRESHOLDS_KEY,
            reason=reason.strip(),
            before={name: getattr(before, name) for name in changed},
            after={name: getattr(after, name) for name in changed},
        )
    return {name: getattr(after, name) for name in changed}


class AlertDesk:
    """The alert workflow for one logged-in operator: what the alerts view calls. Thresholds go
    to `apply_thresholds` (the engine's side: it returns before and after) and are then recorded
    and audited here; without it the store's saved thresholds are changed alone."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        operator: str,
        clock: Callable[[], datetime | str],
        *,
        surveillance: Surveillance | None = None,
        apply_thresholds: Callable[[dict[str, object]], tuple[Thresholds, Thresholds]]
        | None = None,
    ) -> None:
        self.db = db
        self.operator = operator
        self.clock = clock
        self.surveillance = surveillance
        self.apply_thresholds = apply_thresholds or (
            (lambda changes: surveillance.set_thresholds(**changes))
            if surveillance is not None
            else None
        )

    def alerts(self, state: str | None = None) -> list[Alert]:
        return list_alerts(self.db, state=state)

    def counts(self) -> dict[str, int]:
        return counts(self.db)

    def owners(self) -> list[str]:
        """Who may own an alert: enabled operators from the operator role up."""
        return [
            o.name for o in list_operators(self.db, include_disabled=False) if o.has_role(WORK_ROLE)
        ]

    def change(
        self, alert_id: int, *, state: str | None = None, owner: Any = _UNCHANGED, note: str = ""
    ) -> Alert:
        return change(
            self.db,
            alert_id,
            operator=self.operator,
            at=self.clock(),
            state=state,
            owner=owner,
            note=note,
        )

    def thresholds(self) -> Thresholds:
        if self.surveillance is not None:
            return self.surveillance.thresholds
        return saved_thresholds(self.db) or Thresholds()

    def set_thresholds(self, changes: dict[str, object], reason: str) -> dict[str, Any]:
        """Validate (InputError naming `thresholds.<name>`), check the role, apply, record."""
        base = self.thresholds()
        after = parse_thresholds(changes, base)
        _actor(self.db, self.operator, SETTINGS_ROLE)
        if not isinstance(reason, str) or is_blank(reason):
            raise InputError("reason", "a reason is required")
        before = base
        if self.apply_thresholds is not None:
            before, after = self.apply_thresholds({name: getattr(after, name) for name in changes})
        return record_thresholds(
            self.db, before, after, operator=self.operator, at=self.clock(), reason=reason
        )
