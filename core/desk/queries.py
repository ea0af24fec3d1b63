"""What the console's operator views and report dialog ask of a run's store (login, the alert
queue, the audit log, the run's time range) as frozen requests, answered with frozen values by `DeskQueries` on the thread that owns the
store's connection, so that the UI never runs SQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from core.desk import audit
from core.desk.alerts import STATES, Alert, AlertDesk
from core.desk.audit import AuditEntry, VerifyResult
from core.desk.operators import DEMO_IDENTITIES, Operator, authenticate, ensure_demo_operators
from core.desk.operators import list_operators as operators_of
from core.model.errors import InputError
from core.model.operations import Refusal
from core.store.schema import connect_read_only


@dataclass(frozen=True, slots=True)
class LoginInfoQuery:
    """Who may log in. `demo`: add the demo identities first when the store has no operators
    (a built-in scenario's store)."""

    demo: bool = False


@dataclass(frozen=True, slots=True)
class LoginInfo:
    """`operators`: how many are enabled; `demo_hint`: the demo identities (name, role,
    password) to hint, empty unless every one of them is still in the store."""

    operators: int
    demo_hint: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Login:
    """Check a name and password (the try is audited); answered by the Operator or a Refusal."""

    name: str
    password: str
    demo: bool = False

    def __repr__(self) -> str:
        return f"Login(name={self.name!r}, password=<hidden>, demo={self.demo})"


@dataclass(frozen=True, slots=True)
class AlertsQuery:
    state: str | None = None  # None: every state


@dataclass(frozen=True, slots=True)
class AlertPage:
    """The alert queue in one state, the count in each state, and who may own an alert."""

    state: str | None
    alerts: tuple[Alert, ...]
    counts: tuple[tuple[str, int], ...]
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An operator moves, assigns or annotates an alert (audited); answered by the Alert.
    `assign` says that `owner` is set (None: nobody), as opposed to left as it is."""

    operator: str
    alert_id: int
    state: str | None = None
    owner: str | None = None
    assign: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """One page of the audit log, newest first, with core.desk.audit's filters (operator, kind,
    since, until) as name-value pairs."""

    filters: tuple[tuple[str, str], ...] = ()
    limit: int = 500
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AuditPage:
    total: int
    offset: int
    entries: tuple[AuditEntry, ...]


@dataclass(frozen=True, slots=True)
class AuditVerify:
    """Verify the whole chain; answered by the VerifyResult."""


@dataclass(frozen=True, slots=True)
class ReportRangeQuery:
    """The run's time range, to prefill the report dialog; answered by a ReportRange."""


@dataclass(frozen=True, slots=True)
class ReportRange:
    """`start`: the scenario's start; `end`: the last committed tick's time (the start when
    there is none yet), as the store holds them."""

    start: str
    end: str


DeskQuery = (
    LoginInfoQuery | Login | AlertsQuery | AlertChange | AuditQuery | AuditVerify | ReportRangeQuery
)
# A query's answer, or the error it raised, as a value that can cross threads.
DeskAnswer = (
    LoginInfo
    | Operator
    | AlertPage
    | Alert
    | AuditPage
    | VerifyResult
    | ReportRange
    | InputError
    | Refusal
)


class DeskQueries:
    """Answers DeskQuery values against `db`; call on the thread that owns the connection."""

    def __init__(
        self, db: sqlite_utils.Database, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.db = db
        self.clock = clock

    def answer(self, query: object) -> DeskAnswer:
        """The answer to `query`; a refusal or a bad field is returned, not raised."""
        try:
            return self._answer(query)
        except (InputError, Refusal) as error:
            return error

    def _answer(self, query: object) -> DeskAnswer:
        if isinstance(query, LoginInfoQuery):
            return self.login_info(demo=query.demo)
        if isinstance(query, Login):
            if query.demo:
                ensure_demo_operators(self.db, at=self.clock())
            return authenticate(self.db, query.name, query.password, at=self.clock())
        if isinstance(query, AlertsQuery):
            return self.alert_page(query.state)
        if isinstance(query, AlertChange):
            change: dict[str, Any] = {"state": query.state, "note": query.note}
            if query.assign:
                change["owner"] = query.owner
            return AlertDesk(self.db, query.operator, self.clock).change(query.alert_id, **change)
        if isinstance(query, AuditQuery):
            return self.audit_page(query)
        if isinstance(query, AuditVerify):
            return audit.verify(self.db)
        if isinstance(query, ReportRangeQuery):
            return self.report_range()
        raise InputError("query", f"unknown query {type(query).__name__}")

    def login_info(self, *, demo: bool = False) -> LoginInfo:
        if demo:
            ensure_demo_operators(self.db, at=self.clock())
        names = {o.name for o in operators_of(self.db, include_disabled=False)}
        hint = tuple((d.name, d.role, d.password) for d in DEMO_IDENTITIES)
        shown = hint if {d[0] for d in hint} <= names else ()
        return LoginInfo(len(names), shown)

    def alert_page(self, state: str | None) -> AlertPage:
        desk = AlertDesk(self.db, "", self.clock)
        counts = desk.counts()
        return AlertPage(
            state,
            tuple(desk.alerts(state)),
            tuple((s, counts[s]) for s in STATES),
            tuple(desk.owners()),
        )

    def audit_page(self, query: AuditQuery) -> AuditPage:
        filters = dict(query.filters)
        total = audit.count(self.db, **filters)
        entries = audit.rows(self.db, **filters, limit=query.limit, offset=query.offset)
        return AuditPage(total, query.offset, tuple(entries))

    def report_range(self) -> ReportRange:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'scenario'").fetchone()
        if row is None:
            raise InputError("STORE", "the store holds no run")
        start = str(json.loads(row[0])["start"])
        last = self.db.execute("SELECT max(time) FROM journal WHERE kind = 'tick'").fetchone()[0]
        return ReportRange(start, str(last or start))

    def audit_head(self) -> int:
        """The last audit row's seq (0: none): the audit view reloads when it moves."""
        row = self.db.conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
        return int(row[0])


def answer_from_store(path: str | Path, query: object) -> DeskAnswer:
    """`query` answered from the store at `path`, opened read-only for this answer alone (a
    dialog with no engine running asks this way, on a thread of its own)."""
    conn = connect_read_only(path)
    try:
        return DeskQueries(sqlite_utils.Database(conn)).answer(query)
    finally:
        conn.close()
