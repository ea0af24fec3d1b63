"""Clawback allocation against a plain-int oracle (every code path) and ADL ranking by hand."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.engine.deficit import (
    FAST_TOTAL_LIMIT,
    _allocate_fast,
    _allocate_wide,
    adl_order,
    adl_quintiles,
    adl_ranking,
    allocate_clawback,
    allocate_clawback_reference,
    effective_leverage,
)
from core.model.errors import InputError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SAT = 10**8


def check_allocation(deficit: int, profits: list[int]) -> None:
    """The fast allocation equals the oracle and keeps every promise of the clawback rule."""
    fast = allocate_clawback(deficit, np.array(profits, dtype=np.int64))
    reference = allocate_clawback_reference(deficit, profits)
    assert fast.same_as(reference)
    paying = [max(p, 0) for p in profits]
    total = sum(paying)
    amounts = [int(a) for a in fast.amounts]
    assert fast.total_profit == total
    assert sum(amounts) == min(deficit, total) == fast.recovered
    assert fast.unrecovered == deficit - min(deficit, total)
    assert fast.ratio == (Fraction(min(deficit, total), total) if total else 0)
    for amount, profit in zip(amounts, paying, strict=True):
        assert 0 <= amount <= profit
        if total and deficit < total:  # largest remainder: floor or floor + 1 of the exact share
            assert amount - deficit * profit // total in (0, 1)
    assert not fast.amounts.flags.writeable


# ----- hand-worked cases ----------------------------------------------------------------------


def test_seed_case_two_traders_ratio_eight_ninths() -> None:
    # A went bankrupt leaving an uncovered 8 BTC; B made 9 BTC: B pays 8, ratio 8/9.
    allocation = allocate_clawback(8 * SAT, np.array([-8 * SAT, 9 * SAT], dtype=np.int64))
    assert allocation.ratio == Fraction(8, 9)
    assert allocation.amounts.tolist() == [0, 8 * SAT]
    assert allocation.total_profit == 9 * SAT
    assert allocation.unrecovered == 0


def test_largest_remainder_by_hand() -> None:
    # 5*[1, 2, 4] / 7 = [0.714, 1.428, 2.857]: floors [0, 1, 2] leave 2 units for remainders 5, 6.
    allocation = allocate_clawback(5, np.array([1, 2, 4], dtype=np.int64))
    assert allocation.amounts.tolist() == [1, 1, 3]
    assert allocation.ratio == Fraction(5, 7)


def test_equal_remainders_go_to_lower_index() -> None:
    assert allocate_clawback(2, np.array([5, 5, 5], dtype=np.int64)).amounts.tolist() == [1, 1, 0]
    amounts = allocate_clawback(2, np.array([5, 0, 5, -5, 5], dtype=np.int64)).amounts
    assert amounts.tolist() == [1, 0, 1, 0, 0]


def test_deficit_larger_than_all_profit_takes_all_and_reports_the_rest() -> None:
    allocation = allocate_clawback(100, np.array([10, -3, 5], dtype=np.int64))
    assert allocation.amounts.tolist() == [10, 0, 5]
    assert allocation.unrecovered == 85
    assert allocation.ratio == 1


@pytest.mark.parametrize(
    ("deficit", "profits", "ratio", "unrecovered"),
    [(0, [5, 6], Fraction(0), 0), (7, [-1, 0], Fraction(0), 7), (3, [], Fraction(0), 3)],
)
def test_nothing_to_take(
    deficit: int, profits: list[int], ratio: Fraction, unrecovered: int
) -> None:
    allocation = allocate_clawback(deficit, np.array(profits, dtype=np.int64))
    assert not allocation.amounts.any()
    assert (allocation.ratio, allocation.unrecovered) == (ratio, unrecovered)


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InputError, match="deficit"):
        allocate_clawback(-1, np.array([1], dtype=np.int64))
    with pytest.raises(InputError, match="deficit"):
        allocate_clawback(True, np.array([1], dtype=np.int64))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="profits"):
        allocate_clawback(1, np.array([1.5]))


def test_exact_where_float_is_not() -> None:
    # 1.2e11 * 1e11 overflows int64 and float64 loses the units; D*p/T here is an exact integer.
    profits = [10**11, 10**11, 2 * 10**11 + 3]
    check_allocation(2 * 10**11 + 1, profits)
    check_allocation(sum(profits) - 1, profits)
    # The float estimate of the quotient lands one below (16*49/49 -> 15.99...) and one above
    # (D = T - 1, p/T < 2**-14: the estimate rounds up to p) and must be corrected.
    check_allocation(16, [49])
    check_allocation(2**40 + 16 * 2**50 - 1, [2**40] + [2**50] * 16)


def test_int64_extremes() -> None:
    check_allocation(INT64_MAX, [INT64_MAX, INT64_MAX, 1])  # wide path: T > 2**62
    check_allocation(2**62 - 1, [2**61, 2**61 - 1, 1])  # split path at the fast limit
    check_allocation(3, [INT64_MIN, INT64_MAX])


def test_large_arrays_match_the_reference() -> None:
    rng = np.random.default_rng(42)
    profits = (rng.pareto(1.2, 100_000) * 1e6).astype(np.int64) - 300_000
    total = int(np.maximum(profits, 0).sum())
    for deficit in (1, total // 7, total - 1):
        check_allocation(deficit, profits.tolist())
    equal = [10**9] * 50_000
    check_allocation(12_345_678_901, equal)


# ----- properties -----------------------------------------------------------------------------

small = st.integers(-(10**12), 10**12)
huge = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([INT64_MAX, INT64_MAX - 1, 2**62, 2**61 + 1, 2**51, 2**51 - 1, 2**53 + 1]),
)
profit_lists = st.one_of(
    st.lists(small, max_size=40),
    st.lists(huge, max_size=8),
    st.lists(st.integers(2**51, 2**60), min_size=1, max_size=3),  # split path, T <= 2**62
    st.builds(lambda value, n: [value] * n, st.one_of(small, huge), st.integers(1, 30)),
)


@st.composite
def clawback_cases(draw: st.DrawFn) -> tuple[int, list[int]]:
    profits = draw(profit_lists)
    total = sum(max(p, 0) for p in profits)
    deficit = draw(
        st.one_of(
            st.integers(0, total + 10),
            st.sampled_from([1, max(total - 1, 0), total, total // 2, total // 3 + 1]),
            st.integers(0, INT64_MAX),
        )
    )
    return deficit, profits


@settings(max_examples=600, deadline=None)
@given(clawback_cases())
def test_allocation_equals_reference(case: tuple[int, list[int]]) -> None:
    check_allocation(*case)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clawback_cases())
def test_every_path_equals_reference(case: tuple[int, list[int]]) -> None:
    """Force the split estimate and the object path on inputs that would not reach them."""
    deficit, profits = case
    paying = np.maximum(np.array(profits, dtype=np.int64), 0)
    total = int(sum(max(p, 0) for p in profits))
    if not 0 < deficit < total:
        return
    expected = allocate_clawback_reference(deficit, profits).amounts
    assert np.array_equal(_allocate_wide(paying, deficit, total), expected)
    if total <= FAST_TOTAL_LIMIT:
        for largest in (0, INT64_MAX):  # direct estimate where allowed, split estimate always
            if largest == 0 and max(profits) >= 2**51:
                continue
            assert np.array_equal(_allocate_fast(paying, deficit, total, largest), expected)


# ----- auto-deleveraging ----------------------------------------------------------------------


def test_effective_leverage_long_short_and_bankrupt() -> None:
    mark = np.array([10_000.0, -10_000.0, 5_000.0, 5_000.0, np.nan])
    bankruptcy = np.array([9_000.0, -11_000.0, 5_000.0, 6_000.0, 1.0])
    leverage = effective_leverage(mark, bankruptcy)
    assert leverage[:4].tolist() == [10.0, 10.0, np.inf, np.inf]
    assert np.isnan(leverage[4])


def test_adl_ranking_profit_times_loss_divided_by_leverage() -> None:
    pnl = np.array([0.5, 0.2, -0.1, 0.0, 0.3, -0.2])
    leverage = np.array([2.0, 10.0, 5.0, np.inf, np.inf, 0.0])
    scores = adl_ranking(pnl, leverage)
    assert scores.tolist() == [1.0, 2.0, pytest.approx(-0.02), 0.0, np.inf, -np.inf]
    with pytest.raises(InputError):
        adl_ranking(np.array([np.nan]), np.array([1.0]))


def test_adl_order_highest_first_ties_by_index() -> None:
    scores = np.array([1.0, 2.0, 2.0, -0.5, 3.0, 0.0, -0.0])
    mask = np.array([True, True, True, True, False, True, True])
    assert adl_order(scores, mask).tolist() == [1, 2, 0, 5, 6, 3]
    assert adl_order(scores).tolist() == [4, 1, 2, 0, 5, 6, 3]


def test_adl_quintiles_by_group() -> None:
    # Group 0: ten positions, scores 0..9 -> places 9..0 -> two per quintile, highest gets 5.
    scores = np.concatenate([np.arange(10.0), [7.0, 1.0]])
    groups = np.array([0] * 10 + [1, 1])
    quintiles = adl_quintiles(scores, groups)
    assert quintiles.dtype == np.int8
    assert quintiles[:10].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintiles[10:].tolist() == [5, 3]  # a queue of two: head 5, second 5 - 5*1//2 = 3
    mask = np.ones(12, dtype=bool)
    mask[9] = False
    masked = adl_quintiles(scores, groups, mask)
    assert masked[9] == 0 and masked[8] == 5


@given(
    st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0, np.inf, -np.inf]), max_size=30),
    st.data(),
)
def test_adl_order_is_a_stable_descending_permutation(
    values: list[float], data: st.DataObject
) -> None:
    scores = np.array(values, dtype=np.float64)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values))))
    order = adl_order(scores, mask if mask.size else None).tolist()
    expected = sorted(
        (i for i in range(len(values)) if not mask.size or mask[i]), key=lambda i: (-values[i], i)
    )
    assert order == expected
    groups = np.array([i % 3 for i in range(len(values))], dtype=np.int64)
    quintiles = adl_quintiles(scores, groups)
    for g in range(3):
        queue = [i for i in sorted(range(len(values)), key=lambda i: (-values[i], i)) if i % 3 == g]
        assert [int(quintiles[i]) for i in queue] == [
            5 - 5 * d // len(queue) for d in range(len(queue))
        ]
    # Group numbers beyond what sorts by radix (or below zero) queue the same way.
    assert adl_quintiles(scores, groups * 40_000 - 5).tolist() == quintiles.tolist()
