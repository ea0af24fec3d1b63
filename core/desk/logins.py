"""Login throttling: a growing delay after each failed login and a lockout after LOCKOUT_AFTER in a
row, both read from the name's login rows in the audit log (so they survive restarts and cannot be
reset without a keyed audit row), and the audited refusals that feed them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils

from core.desk import audit
from core.model.operations import Refusal

# Documented in docs/operators.md. Failures in a row before the name is locked out, and the wait
# after the n-th failure in a row: none after the first (a typo), then 1, 2, 4, ... s, at most
# DELAY_CAP. Ten guesses per lockout make guessing a passphrase hopeless; the delay stops a
# script from spending them in a second.
LOCKOUT_AFTER = 10
DELAY_CAP = timedelta(seconds=60)
# Refusals that say a password was tried and was wrong; other refusals (too soon, locked,
# disabled) neither count nor reset the run of failures.
COUNTED = frozenset({"wrong_password", "unknown_operator"})
# Results of a login row that end a run of failures: a login, an admin lifting a lockout.
RESETS = frozenset({"ok", "unlocked"})

REASONS = {
    "unknown_operator": "unknown operator or wrong password",
    "wrong_password": "unknown operator or wrong password",
    "disabled": "this operator is disabled; ask an admin",
    "stored_hash": "this operator's stored password hash is unusable; ask an admin to reset it",
    "locked": f"locked out after {LOCKOUT_AFTER} failed logins in a row; ask an admin to unlock",
    "too_soon": "too many failed logins: wait {seconds} s and try again",
}


def subject(name: str) -> str:
    """The audit subject of logins as `name`: the attempted name as typed, cut to 64 characters
    (unknown names are counted and locked alike, so a lockout does not reveal which exist)."""
    return f"operator:{name[:64]}"


def delay_after(failures: int) -> timedelta:
    """How long a name waits after its `failures`-th failed login in a row."""
    if failures < 2:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - 2, 32)), DELAY_CAP)


@dataclass(frozen=True, slots=True)
class LoginState:
    """A name's run of failed logins since its last login or unlock."""

    failures: int
    last_failure: str | None
    locked: bool

    def retry_at(self) -> datetime | None:
        """The earliest time a password is checked again; None when at once."""
        if self.last_failure is None or not self.failures:
            return None
        wait = delay_after(self.failures)
        return _time(self.last_failure) + wait if wait else None


def state(db: sqlite_utils.Database, name: str) -> LoginState:
    """The run of failures of `name`, walking its login rows back to the last reset."""
    cursor = db.conn.execute(
        "SELECT at, after FROM audit_log WHERE kind = 'login' AND subject = ? ORDER BY seq DESC",
        (subject(name),),
    )
    failures, last = 0, None
    try:
        for at, after in cursor:
            outcome = _outcome(after)
            result = outcome.get("result")
            if result in RESETS:
                break
            if result == "locked":
                return LoginState(max(failures, LOCKOUT_AFTER), last or str(at), True)
            if result == "refused" and outcome.get("code") in COUNTED:
                failures, last = failures + 1, last or str(at)
    finally:
        cursor.close()
    return LoginState(failures, last, False)


def _outcome(after: object) -> dict[str, object]:
    try:
        value = json.loads(str(after)) if after is not None else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def refuse_early(db: sqlite_utils.Database, name: str, when: str) -> None:
    """Refuse (audited, before any password is hashed) a login as a locked-out name or one still
    in its delay. `when` is the caller's clock: tests pass times rather than sleep."""
    current = state(db, name)
    if current.locked:
        raise refused(db, name, when, "locked")
    retry = current.retry_at()
    if retry is not None and _time(when) < retry:
        seconds = math.ceil((retry - _time(when)).total_seconds())
        raise refused(db, name, when, "too_soon", seconds=seconds)


def refused(
    db: sqlite_utils.Database, name: str, when: str, code: str, *, seconds: int | None = None
) -> Refusal:
    """Audit a refused login as `name` and return its Refusal; the failure that completes a run
    of LOCKOUT_AFTER also writes the lockout row, and is refused as `locked`."""
    attempted = name[:64]
    after: dict[str, object] = {"result": "refused", "code": code}
    if seconds is not None:
        after["retry_in_s"] = seconds
    with audit.atomic(db):
        audit.append(
            db,
            at=when,
            operator=attempted,
            kind="login",
            subject=subject(name),
            reason="login refused",
            after=after,
        )
        if code in COUNTED:
            failures = state(db, name).failures
            if failures >= LOCKOUT_AFTER:
                audit.append(
                    db,
                    at=when,
                    operator=attempted,
                    kind="login",
                    subject=subject(name),
                    reason=f"locked out after {failures} failed logins in a row",
                    after={"result": "locked", "failures": failures},
                )
                code = "locked"
    return Refusal(code, REASONS[code].format(seconds=seconds))
