"""Operator commands on their way into a session's engine: queued with their journal row, parsed
(one that does not parse kept as its refusal), the state the audit entry records before one, and
which command a failed tick refuses."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.engine.ledger import INSURANCE_FUND
from core.model.errors import InputError
from core.model.operations import ApplyFailed
from core.model.scenario_values import ActionSpec, Authority
from core.scenario.parse import parse_command

if TYPE_CHECKING:
    from core.engine.facade import Engine


@dataclass(frozen=True, slots=True)
class Queued:
    """A command waiting for the next live tick: its journal row (none without a store), its
    fields and the action they parse to."""

    seq: int | None
    command: dict[str, Any]
    action: ActionSpec


def parse_journaled(
    engine: Engine, seq: int, command: dict[str, Any], action_ids: list[str]
) -> ActionSpec:
    """The action of a journaled command (its id joins `action_ids`); one that does not parse
    applies as its refusal, so a bad row cannot stop the run."""
    try:
        action = parse_command(engine.scenario, command, action_ids)
    except InputError as error:
        refusal = Authority(seq, code="invalid_command", reason=str(error))
        operator, kind = str(command.get("operator", "")), str(command.get("action", ""))
        return ActionSpec(engine.now, operator, kind, "", authority=refusal)
    if action.id:
        action_ids.append(action.id)
    return action


def state_before(engine: Engine, action: ActionSpec) -> dict[str, Any] | None:
    """What a command's audit entry records as the state before it: the account's flags or the
    fund's balance."""
    account = action.params.get("account")
    if account is not None and str(account) in engine.book.account_index:
        return {"account": account, "flags": list(engine.controls.flag_names(str(account)))}
    currency = action.params.get("currency")
    if currency is not None:
        return {"currency": currency, "fund": engine.ledger.balance(INSURANCE_FUND, str(currency))}
    return None


def culprit(
    error: Exception, queued: list[Queued], authorities: dict[int | None, Authority]
) -> int | None:
    """The command a failed tick refuses: the one `error` was raised by; when it was raised
    elsewhere in the tick (writing its rows), the last given of those still applying. None when
    the failure is the store's own (locked, full, unreadable) or no command is left to refuse:
    the tick's commands are not what failed."""
    if isinstance(error, sqlite3.OperationalError | OSError):
        return None
    applying = [q.seq for q in queued if authorities[q.seq].code is None]
    if isinstance(error, ApplyFailed) and error.action.authority is not None:
        seq = error.action.authority.command
        if seq in applying:
            return seq
    return applying[-1] if applying else None
