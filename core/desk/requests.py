"""The operator side of each tick in the store: maker-checker requests and their decisions in the
`requests` table (what the approvals view lists) and the outcome of every command in the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.desk import audit
from core.model.events import ActionRecorded, ActionRefused, ClawbackComputed, Event, iso
from core.model.operations import CLAWBACK_DECISIONS, NEEDS_APPROVAL
from core.model.scenario_values import ActionSpec

if TYPE_CHECKING:
    from core.engine.facade import Engine
    from core.store.store import Store

SYSTEM = "system"


def audit_kind(action: str) -> str:
    if action in ("approve", "approve_clawback"):
        return "approval"
    if action in ("reject", "reject_clawback"):
        return "rejection"
    return "request" if action in NEEDS_APPROVAL else "action"


def action_subject(action: ActionSpec) -> str:
    """What an action is about, for the audit log: an account, a request, a family, a currency."""
    params = action.params
    for name in ("account", "request"):
        if name in params:
            return f"{name} {params[name]}"
    if "family" in params:
        return f"family {params['family']}" + (
            f" {params['currency']}" if "currency" in params else ""
        )
    if "currency" in params:
        return f"fund {params['currency']}"
    return action.action


def clawback_request_id(event: ClawbackComputed) -> str:
    """The engine's id of a clawback request (core/engine/settlement.py names it the same way)."""
    return f"clawback-{event.family}-{event.currency}-{event.time.strftime('%Y%m%dT%H%M%SZ')}"


def record_operator_side(store: Store, engine: Engine, events: list[Event], at: datetime) -> None:
    """Call inside the tick's transaction: requests made, decided or computed in the tick, and an
    audit row for the outcome of each command (applied with its effect, or refused with why)."""
    conn = store.conn
    for event in events:
        if isinstance(event, ActionRecorded | ActionRefused):
            applied = isinstance(event, ActionRecorded)
            if applied:
                _recorded(store, engine, event)
            audit.append(
                store.db,
                at=at,
                operator=event.operator,
                kind="outcome",
                subject=event.request or event.action,
                reason=event.reason,
                after={
                    "action": event.action,
                    "applied" if applied else "refused": getattr(event, "detail", event.reason),
                    **({} if applied else {"code": event.code}),
                    "engine_time": iso(event.time),
                    **({} if applied else {"code": getattr(event, "code", "")}),
                },
            )
        elif isinstance(event, ClawbackComputed):
            if event.status == "pending":
                pending = engine.settlements.pending.get((event.family, event.currency))
                request_id = pending.request if pending else clawback_request_id(event)
                conn.execute(
                    "INSERT OR REPLACE INTO requests (id, action, params, operator, reason, "
                    "created_at, status, preview, digest) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        request_id,
                        "approve_clawback",
                        json.dumps({"family": event.family, "currency": event.currency}),
                        SYSTEM,
                        "a deficit the fund could not cover is shared by the period's profits",
                        iso(event.time),
                        json.dumps(
                            {
                                "deficit": event.deficit,
                                "total_profit": event.total_profit,
                                "ratio": event.ratio,
                                "unrecovered": event.unrecovered,
                                "accounts": len(event.allocations),
                            }
                        ),
                        getattr(pending, "digest", None),
                    ),
                )
            else:
                # Applied (approved) or rejected: the decision on the request still pending.
                conn.execute(
                    "UPDATE requests SET status = ?, decided_at = ? "
                    "WHERE action = 'approve_clawback' AND status = 'pending' AND params = ?",
                    (
                        "rejected" if event.status == "rejected" else "approved",
                        iso(event.time),
                        json.dumps({"family": event.family, "currency": event.currency}),
                    ),
                )


def _recorded(store: Store, engine: Engine, event: ActionRecorded) -> None:
    conn = store.conn
    if event.action in NEEDS_APPROVAL and event.request:
        request = engine.controls.requests.get(event.request)
        params: dict[str, Any] = dict(request.action.params) if request else {}
        conn.execute(
            "INSERT OR REPLACE INTO requests (id, action, params, operator, reason, created_at, "
            "status, preview) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
            (
                event.request,
                event.action,
                json.dumps(params, default=str, sort_keys=True),
                event.operator,
                event.reason,
                iso(event.time),
                json.dumps({"detail": event.detail}),
            ),
        )
    elif event.action in ("approve", "reject") and event.request:
        decided = engine.controls.requests.get(event.request)
        target = decided.id if decided else event.request
        conn.execute(
            "UPDATE requests SET status = ?, decided_by = ?, decided_at = ?, comment = ? "
            "WHERE id = ?",
            (
                "approved" if event.action == "approve" else "rejected",
                event.operator,
                iso(event.time),
                event.reason,
                target,
            ),
        )
    elif event.action in CLAWBACK_DECISIONS:
        conn.execute(
            "UPDATE requests SET decided_by = ?, comment = ? WHERE action = 'approve_clawback' "
            "AND decided_by IS NULL AND status = ?",
            (
                event.operator,
                event.reason,
                "approved" if event.action == "approve_clawback" else "rejected",
            ),
        )
