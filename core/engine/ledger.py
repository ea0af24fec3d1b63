"""Double-entry ledger in exact minor units: every movement of money is a posting between accounts.

Trader balances live in one numpy int64 column per currency (index = trader id, checked for
overflow); the few house accounts are Python ints. The sum over all accounts is zero, always.

One module past 500 lines: the postings, the trader columns and the check that every currency
sums to zero are one invariant, kept in one place."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np

from core.model.errors import InputError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Trader ids index a dense column; the cap keeps a typo'd id from allocating gigabytes.
MAX_TRADER_ID = 2**27 - 1
_MIN_COLUMN = 1024


class AccountKind(Enum):
    """What a ledger account stands for. Only `TRADER` accounts carry an id."""

    TRADER = "trader"
    INSURANCE_FUND = "insurance_fund"
    CLEARING = "clearing"  # central counterparty for realized PnL
    COMPANY = "company"  # the exchange's reserve, source of fund injections
    FEES = "fees"
    ROUNDING = "rounding"
    OUTSIDE = "outside"  # the world beyond the exchange: deposits and withdrawals


class Reason:
    """Reason strings the engine uses; any non-empty string is accepted."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    REALIZED_PNL = "realized_pnl"
    FEE = "fee"
    LIQUIDATION_SURPLUS = "liquidation_surplus"
    DEFICIT_COVER = "deficit_cover"
    INJECTION = "injection"
    CLAWBACK = "clawback"
    ADL = "adl"
    ROUNDING = "rounding"


@dataclass(frozen=True, slots=True)
class LedgerKey:
    """A ledger account; the same key holds one balance per currency."""

    kind: AccountKind
    trader_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind is AccountKind.TRADER:
            tid = self.trader_id
            if isinstance(tid, bool) or not isinstance(tid, int) or not 0 <= tid <= MAX_TRADER_ID:
                raise InputError("trader_id", f"must be an int in 0..{MAX_TRADER_ID}, got {tid!r}")
        elif self.trader_id is not None:
            raise InputError("trader_id", f"only trader accounts carry an id ({self.kind.value})")

    def __str__(self) -> str:
        if self.kind is AccountKind.TRADER:
            return f"trader:{self.trader_id}"
        return self.kind.value


def trader(trader_id: int) -> LedgerKey:
    return LedgerKey(AccountKind.TRADER, trader_id)


INSURANCE_FUND = LedgerKey(AccountKind.INSURANCE_FUND)
CLEARING = LedgerKey(AccountKind.CLEARING)
COMPANY = LedgerKey(AccountKind.COMPANY)
FEES = LedgerKey(AccountKind.FEES)
ROUNDING = LedgerKey(AccountKind.ROUNDING)
OUTSIDE = LedgerKey(AccountKind.OUTSIDE)

# Accounts that may never go negative whatever the caller asks (DESIGN.md: the fund never is).
ALWAYS_NON_NEGATIVE = frozenset({AccountKind.INSURANCE_FUND})


class InsufficientBalanceError(ValueError):
    """A posting would take a non-negative account below zero; nothing was applied."""


class LedgerImbalanceError(AssertionError):
    """The ledger does not sum to zero (or the fund is negative): a bug, never bad input."""


@dataclass(frozen=True, slots=True)
class Posting:
    """`amount` minor units move from `debit_from` (its balance falls) to `credit_to` (it rises)."""

    debit_from: LedgerKey
    credit_to: LedgerKey
    currency: str
    amount: int
    reason: str

    def __post_init__(self) -> None:
        _check_currency(self.currency)
        _check_reason(self.reason)
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise InputError("amount", f"a posting moves an int > 0, got {self.amount!r}")
        if self.debit_from == self.credit_to:
            raise InputError("credit_to", f"posting from {self.debit_from} to itself")


Direction = Literal["from_traders", "to_traders"]


@dataclass(frozen=True, slots=True, eq=False)
class TraderBatch:
    """Many trader postings against one counterparty, vectorized (a clawback over 1M accounts).

    `amounts[i] >= 0` moves between trader `trader_ids[i]` (or trader `i` when `trader_ids` is None)
    and `counterparty`; zero amounts are skipped. Ids are unique within a batch.
    """

    amounts: np.ndarray
    counterparty: LedgerKey
    currency: str
    reason: str
    direction: Direction = "from_traders"
    trader_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_currency(self.currency)
        _check_reason(self.reason)
        if self.counterparty.kind is AccountKind.TRADER:
            raise InputError("counterparty", "a trader batch needs a house counterparty")
        if self.direction not in ("from_traders", "to_traders"):
            raise InputError("direction", f"from_traders or to_traders, got {self.direction!r}")
        amounts = self.amounts
        if not isinstance(amounts, np.ndarray) or amounts.dtype != np.int64 or amounts.ndim != 1:
            raise InputError("amounts", "expected a 1-D int64 numpy array")
        if amounts.size and int(amounts.min()) < 0:
            raise InputError("amounts", "a trader amount is negative")
        ids = self.trader_ids
        if ids is not None:
            if (
                not isinstance(ids, np.ndarray)
                or ids.dtype.kind not in "iu"
                or ids.shape != amounts.shape
            ):
                raise InputError("trader_ids", "expected an integer array aligned with amounts")
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) > MAX_TRADER_ID):
                raise InputError("trader_ids", f"ids must be in 0..{MAX_TRADER_ID}")
            # One row per trader keeps the vectorized overflow and cover checks exact.
            if ids.size and int(np.bincount(ids).max()) > 1:
                raise InputError("trader_ids", "a trader appears twice in one batch")
        elif amounts.size > MAX_TRADER_ID + 1:
            raise InputError("amounts", "more traders than MAX_TRADER_ID allows")


@dataclass(frozen=True, slots=True, order=True)
class Flow:
    """A summary bucket: money moved for `reason` from an account kind to another."""

    reason: str
    from_kind: str
    to_kind: str


def exact_int64_sum(values: np.ndarray) -> int:
    """Exact sum of an int64 array as a Python int (numpy's own sum wraps silently on overflow)."""
    if values.size == 0:
        return 0
    lo, hi = int(values.min()), int(values.max())
    if max(abs(lo), abs(hi)) * values.size <= INT64_MAX:
        return int(values.sum())
    # Split each value into a signed high half and an unsigned low 32-bit half: both sums fit.
    high = int((values >> 32).sum())
    low = int((values & 0xFFFFFFFF).sum())
    return (high << 32) + low


class _CurrencyBook:
    """Balances of one currency: a trader column plus the house accounts."""

    __slots__ = ("flows", "house", "traders", "used")

    def __init__(self) -> None:
        self.traders = np.zeros(_MIN_COLUMN, dtype=np.int64)
        self.used = 0  # one past the highest trader id ever touched
        self.house: dict[AccountKind, int] = {}
        self.flows: dict[Flow, int] = {}

    def reserve(self, trader_count: int) -> None:
        if trader_count > self.traders.size:
            grown = np.zeros(max(trader_count, 2 * self.traders.size), dtype=np.int64)
            grown[: self.traders.size] = self.traders
            self.traders = grown
        self.used = max(self.used, trader_count)


class Ledger:
    """Balances per (account, currency) changed only through postings; sums to zero exactly."""

    def __init__(self) -> None:
        self._books: dict[str, _CurrencyBook] = {}
        self._posting_count = 0

    # ----- reading -------------------------------------------------------------------------

    @property
    def posting_count(self) -> int:
        """Postings applied so far (each non-zero trader amount of a batch counts as one)."""
        return self._posting_count

    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted(self._books))

    def balance(self, key: LedgerKey, currency: str) -> int:
        book = self._books.get(currency)
        if book is None:
            return 0
        if key.kind is AccountKind.TRADER:
            tid = key.trader_id
            assert tid is not None
            return int(book.traders[tid]) if tid < book.used else 0
        return book.house.get(key.kind, 0)

    def trader_balances(self, currency: str) -> np.ndarray:
        """Read-only int64 view of trader balances by trader id (length: highest id touched + 1)."""
        book = self._books.get(currency)
        if book is None:
            return np.zeros(0, dtype=np.int64)
        view = book.traders[: book.used]
        view.flags.writeable = False
        return view

    def balances_of_kind(self, kind: AccountKind, currency: str) -> dict[LedgerKey, int]:
        """Non-zero balances of one kind. For traders prefer `trader_balances` (a numpy column)."""
        book = self._books.get(currency)
        if book is None:
            return {}
        if kind is AccountKind.TRADER:
            column = book.traders[: book.used]
            ids = np.flatnonzero(column)
            return {trader(int(i)): int(column[i]) for i in ids}
        amount = book.house.get(kind, 0)
        return {LedgerKey(kind): amount} if amount else {}

    def total(self, currency: str) -> int:
        """Sum over all accounts of `currency`; zero unless the ledger is broken."""
        book = self._books.get(currency)
        if book is None:
            return 0
        return exact_int64_sum(book.traders[: book.used]) + sum(book.house.values())

    def check(self) -> None:
        """Raise `LedgerImbalanceError` unless every currency sums to 0 and no fund is negative."""
        for currency, book in self._books.items():
            total = self.total(currency)
            if total != 0:
                raise LedgerImbalanceError(f"{currency} ledger sums to {total}, not 0")
            for kind in ALWAYS_NON_NEGATIVE:
                if book.house.get(kind, 0) < 0:
                    raise LedgerImbalanceError(f"{currency} {kind.value} is negative")

    def flows(self, currency: str) -> dict[Flow, int]:
        """Totals moved per (reason, from kind, to kind), e.g. fund surplus in and deficit out."""
        book = self._books.get(currency)
        return dict(book.flows) if book else {}

    def reason_total(self, currency: str, reason: str) -> int:
        return sum(v for flow, v in self.flows(currency).items() if flow.reason == reason)

    def inflow(self, kind: AccountKind, currency: str, reason: str | None = None) -> int:
        """Money credited to accounts of `kind`, for one reason or all."""
        return sum(
            v
            for flow, v in self.flows(currency).items()
            if flow.to_kind == kind.value and reason in (None, flow.reason)
        )

    def outflow(self, kind: AccountKind, currency: str, reason: str | None = None) -> int:
        """Money debited from accounts of `kind`, for one reason or all."""
        return sum(
            v
            for flow, v in self.flows(currency).items()
            if flow.from_kind == kind.value and reason in (None, flow.reason)
        )

    def state_digest(self) -> str:
        """sha256 hex of all balances; equal states give equal digests whatever the history."""
        digest = hashlib.sha256(b"ledger-v1")
        for currency in sorted(self._books):
            book = self._books[currency]
            if not any(book.house.values()) and not book.traders.any():
                continue  # an all-zero currency is the same state as one never used
            digest.update(b"\x00C" + currency.encode())
            for kind in sorted(book.house, key=lambda k: k.value):
                if book.house[kind]:
                    digest.update(f"\x00H{kind.value}={book.house[kind]}".encode())
            column = book.traders[: book.used]
            nonzero = np.flatnonzero(column)
            # Trim trailing zeros so column capacity and untouched ids never change the digest.
            width = int(nonzero[-1]) + 1 if nonzero.size else 0
            digest.update(f"\x00T{width}".encode())
            digest.update(np.ascontiguousarray(column[:width], dtype="<i8").tobytes())
        return digest.hexdigest()

    # ----- posting -------------------------------------------------------------------------

    def post(
        self,
        from_key: LedgerKey,
        to_key: LedgerKey,
        currency: str,
        amount: int,
        reason: str,
        *,
        allow_negative: bool = True,
    ) -> Posting | None:
        """Move `amount` from `from_key` to `to_key`. Zero is a no-op (returns None).

        With `allow_negative=False` the source must stay >= 0; the insurance fund always must.
        """
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InputError(
                "amount", f"expected an int in minor units, got {type(amount).__name__}"
            )
        if amount < 0:
            raise InputError("amount", f"must not be negative, got {amount}")
        if amount == 0:
            return None
        posting = Posting(from_key, to_key, currency, amount, reason)
        self._post_one(posting, allow_negative)
        return posting

    def post_many(
        self, items: Iterable[Posting | TraderBatch], *, allow_negative: bool = True
    ) -> int:
        """Apply postings and trader batches in order, all or nothing; returns postings applied.

        Each item is checked as `post` checks it, against the balances left by the items before it;
        if one fails, those already applied are reversed exactly and the error is re-raised.
        """
        applied: list[Posting | TraderBatch] = []
        count_before = self._posting_count
        try:
            for item in items:
                if isinstance(item, Posting):
                    self._post_one(item, allow_negative)
                elif isinstance(item, TraderBatch):
                    self._post_batch(item, allow_negative)
                else:
                    raise InputError("items", f"expected Posting or TraderBatch, got {item!r}")
                applied.append(item)
        except BaseException:
            for done in reversed(applied):
                self._reverse(done)
            self._posting_count = count_before
            raise
        return self._posting_count - count_before

    def post_signed(
        self,
        trader_ids: np.ndarray,
        amounts: np.ndarray,
        counterparty: LedgerKey,
        currency: str,
        reason: str,
    ) -> int:
        """Signed trader amounts against one house account in one step, as the two trader
        batches (to the traders where positive, from them where negative) would post them;
        `trader_ids` strictly increasing (one amount per trader, checked in one pass). Traders
        may go negative; nothing changes if a balance would leave int64. Returns postings."""
        _check_currency(currency)
        _check_reason(reason)
        if counterparty.kind is AccountKind.TRADER or counterparty.kind in ALWAYS_NON_NEGATIVE:
            raise InputError("counterparty", f"{counterparty} cannot take signed trader amounts")
        if amounts.dtype != np.int64 or trader_ids.shape != amounts.shape or amounts.ndim != 1:
            raise InputError("amounts", "expected 1-D int64 amounts aligned with trader_ids")
        if amounts.size == 0:
            return 0
        if int(trader_ids[0]) < 0 or int(trader_ids[-1]) > MAX_TRADER_ID:
            raise InputError("trader_ids", f"ids must be in 0..{MAX_TRADER_ID}")
        if amounts.size > 1 and not bool(np.all(trader_ids[1:] > trader_ids[:-1])):
            raise InputError("trader_ids", "expected strictly increasing ids")
        credit = np.maximum(amounts, 0)
        debit = credit - amounts
        paid_in, paid_out = exact_int64_sum(debit), exact_int64_sum(credit)
        book = self._book(currency)
        book.reserve(int(trader_ids[-1]) + 1)
        current = book.traders[trader_ids]
        if bool(np.any(current > INT64_MAX - credit)) or bool(np.any(current < INT64_MIN + debit)):
            raise OverflowError("a trader balance would leave int64")
        book.traders[trader_ids] = current + amounts
        kind = counterparty.kind
        book.house[kind] = book.house.get(kind, 0) + paid_in - paid_out
        if paid_out:
            self._add_flow(book, reason, kind, AccountKind.TRADER, paid_out)
        if paid_in:
            self._add_flow(book, reason, AccountKind.TRADER, kind, paid_in)
        count = int(np.count_nonzero(amounts))
        self._posting_count += count
        return count

    def _book(self, currency: str) -> _CurrencyBook:
        book = self._books.get(currency)
        if book is None:
            _check_currency(currency)
            book = self._books[currency] = _CurrencyBook()
        return book

    def _post_one(self, posting: Posting, allow_negative: bool) -> None:
        book = self._book(posting.currency)
        source, target, amount = posting.debit_from, posting.credit_to, posting.amount
        new_source = self.balance(source, posting.currency) - amount
        new_target = self.balance(target, posting.currency) + amount
        must_cover = not allow_negative or source.kind in ALWAYS_NON_NEGATIVE
        if must_cover and new_source < 0:
            raise InsufficientBalanceError(
                f"{source} has {new_source + amount} {posting.currency}, cannot pay {amount}"
            )
        # Check both sides before touching either, so a refused posting changes nothing.
        for key, value in ((source, new_source), (target, new_target)):
            if key.kind is AccountKind.TRADER and not INT64_MIN <= value <= INT64_MAX:
                raise OverflowError(f"{key} balance {value} leaves int64")
        self._set(book, source, new_source)
        self._set(book, target, new_target)
        self._add_flow(book, posting.reason, source.kind, target.kind, amount)
        self._posting_count += 1

    def _set(self, book: _CurrencyBook, key: LedgerKey, value: int) -> None:
        if key.kind is AccountKind.TRADER:
            assert key.trader_id is not None
            book.reserve(key.trader_id + 1)
            book.traders[key.trader_id] = value
        else:
            book.house[key.kind] = value

    @staticmethod
    def _add_flow(
        book: _CurrencyBook, reason: str, from_kind: AccountKind, to_kind: AccountKind, amount: int
    ) -> None:
        flow = Flow(reason, from_kind.value, to_kind.value)
        moved = book.flows.get(flow, 0) + amount
        if moved:
            book.flows[flow] = moved
        else:
            book.flows.pop(flow, None)  # a rolled-back batch leaves no empty bucket behind

    def _post_batch(self, batch: TraderBatch, allow_negative: bool) -> None:
        amounts = batch.amounts
        total = exact_int64_sum(amounts)
        if total == 0:
            return
        book = self._book(batch.currency)
        ids = batch.trader_ids
        book.reserve(int(ids.max()) + 1 if ids is not None else amounts.size)
        column = book.traders
        sign = -1 if batch.direction == "from_traders" else 1
        current = column[: amounts.size] if ids is None else column[ids]
        counterparty = book.house.get(batch.counterparty.kind, 0)
        new_counterparty = counterparty - sign * total
        if sign < 0:
            if not allow_negative and bool(np.any(current < amounts)):
                raise InsufficientBalanceError(f"a trader cannot pay its {batch.reason} amount")
            if bool(np.any(current < INT64_MIN + amounts)):
                raise OverflowError("a trader balance would leave int64")
        else:
            must_cover = not allow_negative or batch.counterparty.kind in ALWAYS_NON_NEGATIVE
            if must_cover and new_counterparty < 0:
                raise InsufficientBalanceError(
                    f"{batch.counterparty} has {counterparty}, cannot pay {total}"
                )
            if bool(np.any(current > INT64_MAX - amounts)):
                raise OverflowError("a trader balance would leave int64")
        self._apply_batch(batch, sign)
        book.house[batch.counterparty.kind] = new_counterparty
        source, target = AccountKind.TRADER, batch.counterparty.kind
        if sign > 0:
            source, target = target, source
        self._add_flow(book, batch.reason, source, target, total)
        self._posting_count += int(np.count_nonzero(amounts))

    def _apply_batch(self, batch: TraderBatch, sign: int) -> None:
        column = self._books[batch.currency].traders
        amounts, ids = batch.amounts, batch.trader_ids
        if ids is None:
            target = column[: amounts.size]
            if sign < 0:
                np.subtract(target, amounts, out=target)
            else:
                np.add(target, amounts, out=target)
        elif sign < 0:
            column[ids] -= amounts  # ids are unique (checked), so fancy indexing is exact
        else:
            column[ids] += amounts

    def _reverse(self, item: Posting | TraderBatch) -> None:
        """Undo an applied item exactly (restores earlier values, so it cannot overflow)."""
        if isinstance(item, Posting):
            book = self._books[item.currency]
            self._set(
                book, item.debit_from, self.balance(item.debit_from, item.currency) + item.amount
            )
            self._set(
                book, item.credit_to, self.balance(item.credit_to, item.currency) - item.amount
            )
            self._add_flow(
                book, item.reason, item.debit_from.kind, item.credit_to.kind, -item.amount
            )
            return
        total = exact_int64_sum(item.amounts)
        if total == 0:
            return
        book = self._books[item.currency]
        sign = -1 if item.direction == "from_traders" else 1
        self._apply_batch(item, -sign)
        kind = item.counterparty.kind
        book.house[kind] = book.house.get(kind, 0) + sign * total
        source, target = (AccountKind.TRADER, kind) if sign < 0 else (kind, AccountKind.TRADER)
        self._add_flow(book, item.reason, source, target, -total)


def _check_currency(currency: object) -> None:
    if not isinstance(currency, str) or not currency or not currency.isprintable():
        raise InputError("currency", f"expected a currency code, got {currency!r}")


def _check_reason(reason: object) -> None:
    if not isinstance(reason, str) or not reason:
        raise InputError("reason", f"expected a non-empty reason, got {reason!r}")


def fund_summary(ledger: Ledger, currency: str) -> Mapping[str, int]:
    """Insurance-fund figures for reports: balance, surplus in, deficit out, injections."""
    fund = AccountKind.INSURANCE_FUND
    return {
        "balance": ledger.balance(INSURANCE_FUND, currency),
        "surplus_in": ledger.inflow(fund, currency, Reason.LIQUIDATION_SURPLUS),
        "deficit_out": ledger.outflow(fund, currency, Reason.DEFICIT_COVER),
        "injections": ledger.inflow(fund, currency, Reason.INJECTION),
    }
