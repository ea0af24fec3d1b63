"""Double-entry ledger: zero sum after every posting, a fund never negative, atomic batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine.ledger import (
    CLEARING,
    COMPANY,
    FEES,
    INSURANCE_FUND,
    INT64_MAX,
    OUTSIDE,
    ROUNDING,
    AccountKind,
    InsufficientBalanceError,
    Ledger,
    LedgerKey,
    Posting,
    Reason,
    TraderBatch,
    exact_int64_sum,
    fund_summary,
    trader,
)
from core.model.errors import InputError

BTC = "BTC"


def funded_ledger() -> Ledger:
    ledger = Ledger()
    ledger.post(COMPANY, INSURANCE_FUND, BTC, 1_000, Reason.INJECTION)
    for tid in range(3):
        ledger.post(OUTSIDE, trader(tid), BTC, 100, Reason.DEPOSIT)
    return ledger


def test_postings_move_money_and_sum_to_zero() -> None:
    ledger = funded_ledger()
    posting = ledger.post(trader(0), CLEARING, BTC, 30, Reason.REALIZED_PNL)
    assert posting == Posting(trader(0), CLEARING, BTC, 30, Reason.REALIZED_PNL)
    assert ledger.balance(trader(0), BTC) == 70
    assert ledger.balance(CLEARING, BTC) == 30
    assert ledger.balance(OUTSIDE, BTC) == -300
    assert ledger.balance(trader(99), BTC) == 0
    assert ledger.balance(trader(0), "USDT") == 0
    assert ledger.total(BTC) == 0
    assert ledger.posting_count == 5
    ledger.check()


def test_zero_is_a_no_op_and_bad_amounts_are_refused() -> None:
    ledger = funded_ledger()
    digest = ledger.state_digest()
    assert ledger.post(trader(0), FEES, BTC, 0, Reason.FEE) is None
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="amount"):
            ledger.post(trader(0), FEES, BTC, bad, Reason.FEE)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="credit_to"):
        ledger.post(FEES, FEES, BTC, 1, Reason.FEE)
    with pytest.raises(InputError, match="reason"):
        ledger.post(trader(0), FEES, BTC, 1, "")
    with pytest.raises(InputError, match="trader_id"):
        LedgerKey(AccountKind.FEES, 3)
    with pytest.raises(InputError, match="trader_id"):
        trader(-1)
    assert ledger.state_digest() == digest
    assert ledger.posting_count == 4


def test_fund_never_goes_negative() -> None:
    ledger = funded_ledger()
    digest = ledger.state_digest()
    for allow_negative in (False, True):  # the fund is non-negative whatever the caller asks
        with pytest.raises(InsufficientBalanceError):
            ledger.post(
                INSURANCE_FUND,
                CLEARING,
                BTC,
                1_001,
                Reason.DEFICIT_COVER,
                allow_negative=allow_negative,
            )
    assert ledger.state_digest() == digest
    ledger.post(INSURANCE_FUND, CLEARING, BTC, 1_000, Reason.DEFICIT_COVER, allow_negative=False)
    assert ledger.balance(INSURANCE_FUND, BTC) == 0
    ledger.check()


def test_allow_negative_false_guards_any_source() -> None:
    ledger = funded_ledger()
    with pytest.raises(InsufficientBalanceError):
        ledger.post(trader(1), OUTSIDE, BTC, 101, Reason.WITHDRAWAL, allow_negative=False)
    ledger.post(trader(1), CLEARING, BTC, 150, Reason.REALIZED_PNL)  # a bankrupt trader: allowed
    assert ledger.balance(trader(1), BTC) == -50
    ledger.check()


def test_trader_balance_overflow_is_refused() -> None:
    ledger = Ledger()
    ledger.post(OUTSIDE, trader(0), BTC, INT64_MAX - 5, Reason.DEPOSIT)
    with pytest.raises(OverflowError):
        ledger.post(OUTSIDE, trader(0), BTC, 10, Reason.DEPOSIT)
    assert ledger.balance(trader(0), BTC) == INT64_MAX - 5
    ledger.post(COMPANY, OUTSIDE, BTC, 10 * INT64_MAX, Reason.INJECTION)  # house accounts: any int
    ledger.check()


def test_flows_report_fund_surplus_deficit_and_injections() -> None:
    ledger = funded_ledger()
    ledger.post(CLEARING, INSURANCE_FUND, BTC, 40, Reason.LIQUIDATION_SURPLUS)
    ledger.post(CLEARING, INSURANCE_FUND, BTC, 2, Reason.LIQUIDATION_SURPLUS)
    ledger.post(INSURANCE_FUND, CLEARING, BTC, 300, Reason.DEFICIT_COVER)
    assert fund_summary(ledger, BTC) == {
        "balance": 742,
        "surplus_in": 42,
        "deficit_out": 300,
        "injections": 1_000,
    }
    assert ledger.reason_total(BTC, Reason.DEPOSIT) == 300
    assert ledger.inflow(AccountKind.TRADER, BTC) == 300
    assert ledger.outflow(AccountKind.CLEARING, BTC, Reason.LIQUIDATION_SURPLUS) == 42
    assert ledger.balances_of_kind(AccountKind.TRADER, BTC) == {trader(i): 100 for i in range(3)}
    assert ledger.balances_of_kind(AccountKind.ROUNDING, BTC) == {}


def test_clawback_batch_over_a_million_traders() -> None:
    ledger = Ledger()
    rng = np.random.default_rng(1)
    deposits = rng.integers(1, 10**10, 1_000_000)
    ledger.post_many([TraderBatch(deposits, OUTSIDE, BTC, Reason.DEPOSIT, "to_traders")])
    clawback = deposits // 7
    count = ledger.post_many([TraderBatch(clawback, CLEARING, BTC, Reason.CLAWBACK)])
    assert count == np.count_nonzero(clawback)
    assert np.array_equal(ledger.trader_balances(BTC), deposits - clawback)
    assert ledger.balance(CLEARING, BTC) == exact_int64_sum(clawback)
    assert ledger.posting_count == np.count_nonzero(deposits) + count
    assert not ledger.trader_balances(BTC).flags.writeable
    ledger.check()


def test_batch_with_ids_and_refusals() -> None:
    ledger = funded_ledger()
    ids = np.array([2, 0, 7])
    ledger.post_many(
        [TraderBatch(np.array([5, 0, 9]), FEES, BTC, Reason.FEE, trader_ids=ids)],
        allow_negative=True,
    )
    assert [ledger.balance(trader(i), BTC) for i in (0, 2, 7)] == [100, 95, -9]
    with pytest.raises(InputError, match="twice"):
        TraderBatch(np.array([1, 1]), FEES, BTC, Reason.FEE, trader_ids=np.array([3, 3]))
    with pytest.raises(InputError, match="negative"):
        TraderBatch(np.array([1, -1]), FEES, BTC, Reason.FEE)
    with pytest.raises(InputError, match="amounts"):
        TraderBatch(np.array([1.0]), FEES, BTC, Reason.FEE)
    with pytest.raises(InputError, match="counterparty"):
        TraderBatch(np.array([1]), trader(1), BTC, Reason.FEE)


def test_post_many_is_all_or_nothing() -> None:
    ledger = funded_ledger()
    before = (ledger.state_digest(), ledger.posting_count, ledger.flows(BTC))
    batch = [
        Posting(INSURANCE_FUND, CLEARING, BTC, 900, Reason.DEFICIT_COVER),
        TraderBatch(np.array([10, 20, 30]), INSURANCE_FUND, BTC, Reason.CLAWBACK),
        TraderBatch(np.array([1, 1, 1]), INSURANCE_FUND, BTC, Reason.ADL, "to_traders"),
        Posting(INSURANCE_FUND, CLEARING, BTC, 500, Reason.DEFICIT_COVER),  # fund has 157: refused
    ]
    with pytest.raises(InsufficientBalanceError):
        ledger.post_many(batch)
    assert (ledger.state_digest(), ledger.posting_count, ledger.flows(BTC)) == before
    assert ledger.post_many(batch[:3]) == 1 + 3 + 3
    assert ledger.balance(INSURANCE_FUND, BTC) == 1_000 - 900 + 60 - 3
    with pytest.raises(InsufficientBalanceError):  # traders 0..2 hold 91, 81, 71
        ledger.post_many(
            [TraderBatch(np.array([1, 82, 1]), FEES, BTC, "fee")], allow_negative=False
        )
    ledger.check()


def test_state_digest_depends_on_balances_only() -> None:
    first, second = Ledger(), Ledger()
    first.post(OUTSIDE, trader(5), BTC, 10, Reason.DEPOSIT)
    first.post(trader(5), FEES, BTC, 3, Reason.FEE)
    second.post(OUTSIDE, FEES, BTC, 3, Reason.FEE)
    second.post(OUTSIDE, trader(5), BTC, 7, Reason.DEPOSIT)
    second.post(OUTSIDE, trader(5_000), "USDT", 1, Reason.DEPOSIT)  # grows the column...
    second.post(trader(5_000), OUTSIDE, "USDT", 1, Reason.WITHDRAWAL)  # ...back to all zero
    assert first.state_digest() == second.state_digest()
    second.post(ROUNDING, trader(5), BTC, 1, Reason.ROUNDING)
    assert first.state_digest() != second.state_digest()
    assert len(first.state_digest()) == 64


HOUSE = [INSURANCE_FUND, CLEARING, COMPANY, FEES, ROUNDING, OUTSIDE]
keys = st.one_of(st.sampled_from(HOUSE), st.builds(trader, st.integers(0, 6)))
operations = st.one_of(
    st.tuples(
        st.just("post"), keys, keys, st.sampled_from(["BTC", "USDT"]), st.integers(0, 10**20)
    ),
    st.tuples(st.just("post"), keys, keys, st.just("BTC"), st.integers(0, 500)),
    st.tuples(
        st.just("batch"),
        st.sampled_from(HOUSE),
        st.sampled_from(["from_traders", "to_traders"]),
        st.just("BTC"),
        st.lists(st.integers(0, 500), min_size=0, max_size=6),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(operations, st.booleans()), max_size=40))
def test_random_sequences_balance_and_match_a_model(steps: list) -> None:
    ledger = Ledger()
    model: dict[tuple[str, LedgerKey], int] = {}
    for (kind, *args), allow_negative in steps:
        before = ledger.state_digest()
        try:
            if kind == "post":
                source, target, currency, amount = args
                ledger.post(source, target, currency, amount, "x", allow_negative=allow_negative)
                moves = [(source, currency, -amount), (target, currency, amount)]
            else:
                house, direction, currency, amounts = args
                array = np.array(amounts, dtype=np.int64)
                ledger.post_many(
                    [TraderBatch(array, house, currency, "x", direction)],
                    allow_negative=allow_negative,
                )
                sign = -1 if direction == "from_traders" else 1
                moves = [(trader(i), currency, sign * a) for i, a in enumerate(amounts)]
                moves.append((house, currency, -sign * sum(amounts)))
        except (InsufficientBalanceError, OverflowError, InputError):
            assert ledger.state_digest() == before  # refused: nothing changed
            continue
        for key, currency, delta in moves:
            model[(currency, key)] = model.get((currency, key), 0) + delta
        ledger.check()
        assert ledger.balance(INSURANCE_FUND, "BTC") >= 0
        for (currency, key), value in model.items():
            assert ledger.balance(key, currency) == value
        for currency in ("BTC", "USDT"):
            assert ledger.total(currency) == 0
