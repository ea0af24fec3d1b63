"""The values of operator actions, shared by the engine, the desk and the console: account flags,
roles, the actions that need a second person, requests, and refusals with a code and a reason."""

from __future__ import annotations

from dataclasses import dataclass

from core.model.scenario_values import ActionSpec

WARNED, REDUCE_ONLY, FROZEN, WITHDRAWALS_FROZEN = 1, 2, 4, 8
FLAG_NAMES = {
    WARNED: "warned",
    REDUCE_ONLY: "reduce_only",
    FROZEN: "frozen",
    WITHDRAWALS_FROZEN: "withdrawals_frozen",
}
# Actions that take effect only when a different supervisor approves them (maker-checker).
NEEDS_APPROVAL = frozenset({"force_reduce", "inject", "adjust_settlement_price"})
# A supervisor's decision on the clawback a settlement computed (the system is its maker).
CLAWBACK_DECISIONS = frozenset({"approve_clawback", "reject_clawback"})
ACTING_ROLES = frozenset({"operator", "supervisor", "admin"})
APPROVER_ROLE = "supervisor"


class Refusal(Exception):
    """An action refused: `code` is stable for machines, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def refusal_text(reason: str, code: str = "", subject: str = "") -> str:
    """How a refusal reads to people wherever it is shown (command line, console, result,
    report): `SUBJECT refused (CODE): REASON`, without the parts that are not known."""
    said = f"refused ({code})" if code else "refused"
    return f"{subject} {said}: {reason}" if subject else f"{said}: {reason}"


class ApplyFailed(Exception):
    """An action raised something other than a Refusal while it applied: the engine may hold part
    of its effect, so the caller rebuilds the engine and refuses the action (core/session/session.py)."""

    def __init__(self, action: ActionSpec, error: Exception) -> None:
        super().__init__(f"{action.action} by {action.operator}: {type(error).__name__}: {error}")
        self.action = action
        self.error = error


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    action: ActionSpec
    status: str  # pending, approved, rejected
