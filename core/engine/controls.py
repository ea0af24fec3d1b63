"""Operator actions on the engine: account flags, requests that need a second person, approvals,
and refusals returned with a reason (never half-applied)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from core.engine.ledger import Reason
from core.model.errors import InputError
from core.model.events import ActionRecorded, ActionRefused
from core.model.operations import (
    ACTING_ROLES,
    APPROVER_ROLE,
    CLAWBACK_DECISIONS,
    FLAG_NAMES,
    FROZEN,
    NEEDS_APPROVAL,
    REDUCE_ONLY,
    WARNED,
    WITHDRAWALS_FROZEN,
    ApplyFailed,
    Refusal,
    Request,
)
from core.model.scenario_values import ActionSpec

if TYPE_CHECKING:
    from core.engine.state import EngineState

_STATES = {
    "warn": "warned",
    "restrict": "reduce-only",
    "freeze": "frozen",
    "freeze_withdrawals": "frozen for withdrawals",
}


class Controls:
    """Applies a scenario's actions when their time comes."""

    def __init__(self, engine: EngineState) -> None:
        self.engine = engine
        self.pending_actions = list(engine.scenario.actions)
        # The scenario's own actions act with the roles the scenario names; a journaled command
        # carries the authority its operator holds where it applies (ActionSpec.authority).
        self.roles = {o.name: o.role for o in engine.scenario.operators}
        self.flags = np.zeros(len(engine.book.account_ids), dtype=np.int8)
        self.requests: dict[str, Request] = {}
        self.adjustments: dict[str, tuple[str, object]] = {}  # family -> (request id, price)

    def state_repr(self) -> str:
        requests = sorted((r.id, r.status) for r in self.requests.values())
        return f"{self.flags.tobytes().hex()}|{requests}|{sorted(self.adjustments.items())}"

    def apply_due(self, now: datetime) -> None:
        while self.pending_actions and self.pending_actions[0].at <= now:
            self.apply(self.pending_actions.pop(0))

    def apply(self, action: ActionSpec) -> bool:
        """Apply one action; a refusal is recorded as an event and changes nothing."""
        engine = self.engine
        try:
            detail = self._apply(action)
        except Refusal as refusal:
            engine.emit(
                ActionRefused(
                    engine.now,
                    action.operator,
                    action.action,
                    refusal.reason,
                    _request_of(action),
                    refusal.code,
                )
            )
            return False
        except Exception as error:
            raise ApplyFailed(action, error) from error
        engine.emit(
            ActionRecorded(
                engine.now,
                action.operator,
                action.action,
                action.reason,
                detail,
                _request_of(action),
            )
        )
        return True

    def _role(self, action: ActionSpec) -> str | None:
        authority = action.authority
        if authority is not None:
            if authority.code is not None:
                raise Refusal(authority.code, authority.reason)
            return authority.role
        role = self.roles.get(action.operator)
        if self.roles and role is None:
            raise Refusal("unknown_operator", f"unknown operator {action.operator!r}")
        return role

    def _apply(self, action: ActionSpec) -> str:
        role = self._role(action)
        if role is not None and role not in ACTING_ROLES:
            raise Refusal("role", f"role {role} cannot {action.action}")
        if not action.reason.strip():
            raise Refusal("reason", "a reason is required")
        if action.action in ("approve", "reject"):
            return self._decide(action, role)
        if action.action in CLAWBACK_DECISIONS:
            if role is not None and role != APPROVER_ROLE:
                verb = "approving" if action.action == "approve_clawback" else "rejecting"
                raise Refusal("role", f"{verb} a clawback needs the supervisor role, not {role}")
            if action.action == "approve_clawback":
                return self.engine.settlements.approve_clawback(action)
            return self.engine.settlements.reject_clawback(action)
        if action.action in NEEDS_APPROVAL:
            if not action.id:
                raise Refusal(
                    "needs_id", f"{action.action} needs an id so a supervisor can approve it"
                )
            if action.id in self.requests:
                raise Refusal("duplicate_request", f"request {action.id!r} exists already")
            self._check_effect(action)
            # Kept without its authority: the approver's is checked when the approval applies.
            self.requests[action.id] = Request(
                action.id, replace(action, authority=None), "pending"
            )
            return f"request {action.id} awaits a supervisor"
        return self._set_flags(action)

    def check_trade(self, account: int, *, adds_exposure: bool) -> None:
        """Refuse a trade the account's restrictions forbid: a frozen account does not trade at
        all (the desk still reduces it, through force-reduce and the liquidation path); a
        reduce-only account may only reduce."""
        flags = int(self.flags[account])
        name = self.engine.book.account_ids[account]
        if flags & FROZEN:
            raise Refusal("frozen", f"account {name} is frozen: trading is stopped")
        if adds_exposure and flags & REDUCE_ONLY:
            raise Refusal(
                "reduce_only",
                f"account {name} is reduce-only: it may not open or increase a position",
            )

    def flag_names(self, account: str) -> tuple[str, ...]:
        """The restrictions on an account by name (warned, reduce_only, frozen, ...)."""
        flags = int(self.flags[self.engine.book.account_index[account]])
        return tuple(name for bit, name in FLAG_NAMES.items() if flags & bit)

    def _account_row(self, action: ActionSpec) -> int:
        name = str(action.params.get("account"))
        index = self.engine.book.account_index.get(name)
        if index is None:
            raise Refusal("unknown_account", f"unknown account {name!r}")
        return index

    def _set_flags(self, action: ActionSpec) -> str:
        account = self._account_row(action)
        before = int(self.flags[account])
        change = {
            "warn": WARNED,
            "restrict": REDUCE_ONLY,
            "freeze": FROZEN | WITHDRAWALS_FROZEN,
            "freeze_withdrawals": WITHDRAWALS_FROZEN,
        }
        if action.action in change:
            if before & change[action.action] == change[action.action]:
                state = _STATES[action.action]
                raise Refusal("no_effect", f"account {action.params['account']} is already {state}")
            self.flags[account] = before | change[action.action]
        elif action.action == "unfreeze":
            if not before & (FROZEN | WITHDRAWALS_FROZEN | REDUCE_ONLY):
                raise Refusal("no_effect", f"account {action.params['account']} is not frozen")
            self.flags[account] = before & WARNED
        elif action.action != "cancel_orders":
            raise Refusal("unknown_action", f"unknown action {action.action!r}")
        return f"flags {_names(before)} -> {_names(int(self.flags[account]))}"

    def _check_effect(self, action: ActionSpec) -> None:
        if action.action == "force_reduce":
            self._position_row(action)
        elif action.action == "adjust_settlement_price":
            family, price = str(action.params["family"]), action.params["price"]
            try:
                self.engine.settlements.check_price(family, price)  # type: ignore[arg-type]
            except InputError as error:
                raise Refusal("price", error.message) from None

    def _position_row(self, action: ActionSpec) -> int:
        book = self.engine.book
        account = self._account_row(action)
        symbol = action.params["symbol"]
        k = [i.symbol for i in book.instruments].index(str(symbol))
        rows = np.flatnonzero(
            (book.account == account) & (book.instrument == k) & (book.contracts > 0)
        )
        if rows.size == 0:
            raise Refusal(
                "no_position", f"account {action.params['account']} holds no {symbol} position"
            )
        return int(rows[0])

    def _decide(self, action: ActionSpec, role: str | None) -> str:
        request_id = str(action.params.get("request"))
        request = self.requests.get(request_id)
        if request is None:
            raise Refusal("unknown_request", f"no request {request_id!r}")
        if request.status != "pending":
            raise Refusal("decided", f"request {request_id} is already {request.status}")
        if action.operator == request.action.operator:
            raise Refusal("self_approval", "self-approval: the approver must be a different person")
        if role is not None and role != APPROVER_ROLE:
            raise Refusal("role", f"approving needs the supervisor role, not {role}")
        if action.action == "reject":
            self.requests[request_id] = Request(request_id, request.action, "rejected")
            return f"request {request_id} rejected"
        detail = self._carry_out(request.action)
        self.requests[request_id] = Request(request_id, request.action, "approved")
        return f"request {request_id} approved: {detail}"

    def _carry_out(self, action: ActionSpec) -> str:
        engine = self.engine
        if action.action == "inject":
            currency = str(action.params["currency"])
            amount = engine.scenario.currencies[currency].to_minor(action.params["amount"])  # type: ignore[arg-type]
            engine.fund_in(currency, amount, Reason.INJECTION)
            return f"injected {action.params['amount']} {currency} into the insurance fund"
        if action.action == "force_reduce":
            row = self._position_row(action)
            engine.desk.force_reduce(row, int(action.params["contracts"]))  # type: ignore[call-overload]
            return f"force-reduce of {action.params['contracts']} {action.params['symbol']} sent to the book"
        family = str(action.params["family"])
        self.adjustments[family] = (action.id or "", action.params["price"])
        return (
            f"settlement price of {family} set to {action.params['price']} for its next settlement"
        )


def _names(flags: int) -> str:
    return ",".join(name for bit, name in FLAG_NAMES.items() if flags & bit) or "none"


def _request_of(action: ActionSpec) -> str | None:
    """The request an action makes (its id) or decides (approve and reject name one)."""
    request = action.id or action.params.get("request")
    return None if request is None else str(request)
