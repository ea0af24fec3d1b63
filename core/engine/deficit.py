"""Uncovered deficits: exact clawback allocation (largest remainder) and auto-deleveraging ranking.

Money here is exact integers in minor units; ADL scores are float64 (ranking only, never posted).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from core.engine.ledger import INT64_MAX, exact_int64_sum
from core.model.errors import InputError

# The int64 fast path needs every residual D*p - q*T in [-T, 2T) to fit int64: T <= 2**62 (46
# billion BTC in satoshi). Larger totals take an exact but slower Python-int path.
FAST_TOTAL_LIMIT = 2**62
# Below this profit a float64 estimate of D*p/T is off by less than one (see _QuotientEstimate).
_DIRECT_PROFIT_LIMIT = 2**51
_SPLIT_BITS = 31
# 32k int64 = 256 KB per temporary: a block's working set stays in L2 cache.
_BLOCK = 1 << 15


@dataclass(frozen=True, slots=True, eq=False)
class ClawbackAllocation:
    """What each account pays toward an uncovered deficit.

    `amounts` is a read-only int64 array aligned with the profits; `ratio` is the deficit taken
    over the total profit (0 when nobody profited); `unrecovered` is the deficit left over when it
    exceeds all profit.
    """

    amounts: np.ndarray
    total_profit: int
    ratio: Fraction
    unrecovered: int

    @property
    def recovered(self) -> int:
        """Sum of `amounts`: min(deficit, total profit)."""
        return self.ratio.numerator * self.total_profit // self.ratio.denominator

    def same_as(self, other: ClawbackAllocation) -> bool:
        return (
            self.total_profit == other.total_profit
            and self.ratio == other.ratio
            and self.unrecovered == other.unrecovered
            and np.array_equal(self.amounts, other.amounts)
        )


def allocate_clawback(deficit: int, profits: np.ndarray) -> ClawbackAllocation:
    """Share `deficit` over positive `profits` (int64) pro rata, exactly, by largest remainder.

    Account i pays floor(D*p_i/T); the R units left go one each to the R largest remainders
    D*p_i mod T, ties to the lower index. Losses and zeros pay nothing; nobody pays more than their
    profit; the parts sum to min(D, T). Exact for any int64 input.
    """
    _check_deficit(deficit)
    if not isinstance(profits, np.ndarray) or profits.dtype != np.int64 or profits.ndim != 1:
        raise InputError("profits", "expected a 1-D int64 numpy array")
    if profits.size == 0:
        return _result(np.zeros(0, dtype=np.int64), 0, deficit)
    smallest, largest = int(profits.min()), int(profits.max())
    # Accounts with a loss or no position pay nothing; skip the copy when nobody lost.
    paying = profits if smallest >= 0 else np.maximum(profits, 0)
    largest = max(largest, 0)
    total = int(paying.sum()) if largest * paying.size <= INT64_MAX else exact_int64_sum(paying)
    if deficit == 0 or total == 0:
        return _result(np.zeros(profits.size, dtype=np.int64), total, deficit)
    if deficit >= total:
        return _result(paying.copy(), total, deficit)
    if total <= FAST_TOTAL_LIMIT:
        return _result(_allocate_fast(paying, deficit, total, largest), total, deficit)
    return _result(_allocate_wide(paying, deficit, total), total, deficit)


def allocate_clawback_reference(deficit: int, profits: list[int]) -> ClawbackAllocation:
    """The same allocation in plain Python ints, one account at a time: the oracle for tests."""
    _check_deficit(deficit)
    paying = [p if p > 0 else 0 for p in profits]
    total = sum(paying)
    if deficit == 0 or total == 0:
        return _result(np.zeros(len(paying), dtype=np.int64), total, deficit)
    if deficit >= total:
        return _result(np.array(paying, dtype=np.int64), total, deficit)
    amounts: list[int] = []
    remainders: list[int] = []
    for profit in paying:
        quotient, remainder = divmod(deficit * profit, total)
        amounts.append(quotient)
        remainders.append(remainder)
    left = deficit - sum(amounts)
    ranked = sorted((i for i, p in enumerate(paying) if p > 0), key=lambda i: (-remainders[i], i))
    for i in ranked[:left]:
        amounts[i] += 1
    return _result(np.array(amounts, dtype=np.int64), total, deficit)


def _check_deficit(deficit: object) -> None:
    if isinstance(deficit, bool) or not isinstance(deficit, int) or deficit < 0:
        raise InputError("deficit", f"expected an int >= 0 in minor units, got {deficit!r}")


def _result(amounts: np.ndarray, total: int, deficit: int) -> ClawbackAllocation:
    taken = min(deficit, total)
    amounts.flags.writeable = False
    ratio = Fraction(taken, total) if total else Fraction(0)
    return ClawbackAllocation(amounts, total, ratio, deficit - taken)


def _allocate_fast(profits: np.ndarray, deficit: int, total: int, largest: int) -> np.ndarray:
    """Exact allocation with int64 arithmetic for 0 < D < T <= 2**62.

    Each quotient q = floor(D*p/T) is estimated in float64, off by at most one (see
    `_QuotientEstimate`); the residual D*p - q*T is then in [-T, 2T), so int64 arithmetic wrapping
    modulo 2**64 gives it exactly, and the few misses are corrected. The remainder units go to the
    largest residuals, found with one partition. Work runs in blocks so temporaries stay in cache.
    """
    size = profits.size
    quotients = np.empty(size, dtype=np.int64)
    remainders = np.empty(size, dtype=np.int64)
    block = min(size, _BLOCK)
    floats = np.empty(block, dtype=np.float64)
    scratch = np.empty(block, dtype=np.int64)
    estimate = _QuotientEstimate(deficit, total, split=largest >= _DIRECT_PROFIT_LIMIT)
    for start in range(0, size, block):
        part = slice(start, start + block)
        p, q, r = profits[part], quotients[part], remainders[part]
        estimate.into(p, q, floats[: p.size])
        np.multiply(p, deficit, out=r)  # wraps modulo 2**64, on purpose
        r -= np.multiply(q, total, out=scratch[: p.size])
        # Viewed unsigned, a negative residual is huge: one comparison finds both kinds of miss.
        missed = r.view(np.uint64) >= np.uint64(total)
        if missed.any():  # rare: only where D*p/T is within the float error of an integer
            off = np.flatnonzero(missed)
            steps = r[off] // total  # -1 or +1
            q[off] += steps
            r[off] -= steps * total
    units = deficit - int(quotients.sum())  # sum q <= D < 2**62: no overflow
    if units == 0:
        return quotients
    # Remainders sum to units*T and each is below T, so more than `units` of them are positive:
    # accounts that pay nothing (remainder 0) never get a unit.
    kth = size - units
    threshold = np.partition(remainders, kth)[kth]  # the units-th largest remainder
    winners = remainders >= threshold
    extra = int(np.count_nonzero(winners)) - units
    if extra:
        # Ties at the threshold straddle the cut: the highest-index `extra` of them lose.
        winners[np.flatnonzero(remainders == threshold)[-extra:]] = False
    quotients += winners
    return quotients


class _QuotientEstimate:
    """floor(D*p/T) give or take one, for int64 p >= 0 and D < T <= 2**62.

    Direct (p < 2**51): p is exact in float64 and D/T is rounded once, so the product is within
    2**-52 relative of D*p/T, i.e. less than 0.5 absolute. Split (any int64 p): with
    p = h*2**31 + l and D*2**31 = Qh*T + Rh (exact Python ints, once), D*p/T = h*Qh + (h*Rh + l*D)/T
    where h*Qh <= q is exact in int64 and the fraction, below 2**33, has a float error far below 1.
    """

    def __init__(self, deficit: int, total: int, *, split: bool) -> None:
        self.ratio = deficit / total  # Python int / int is correctly rounded
        self.split = split
        self.high_quotient, high_remainder = divmod(deficit << _SPLIT_BITS, total)
        self.high_ratio = high_remainder / total

    def into(self, p: np.ndarray, out: np.ndarray, floats: np.ndarray) -> None:
        if not self.split:
            np.multiply(p, self.ratio, out=floats)
            np.copyto(out, floats, casting="unsafe")  # truncation = floor: everything is >= 0
            return
        high = p >> _SPLIT_BITS
        np.multiply(high, self.high_ratio, out=floats)
        floats += (p & ((1 << _SPLIT_BITS) - 1)) * self.ratio
        np.copyto(out, floats, casting="unsafe")
        out += high * self.high_quotient


def _allocate_wide(profits: np.ndarray, deficit: int, total: int) -> np.ndarray:
    """Exact allocation for T > 2**62 (4.6e18 minor units): object arrays of Python ints, slow."""
    products = profits.astype(object) * deficit
    quotients_obj = products // total
    remainders = products - quotients_obj * total
    quotients = quotients_obj.astype(np.int64)  # q <= p: fits
    units = deficit - exact_int64_sum(quotients)
    if units:
        # Rank remainders (< T) by an exact two-word key; lexsort is stable: ties keep index order.
        shift = max(0, total.bit_length() - 62)
        high = (remainders >> shift).astype(np.int64)
        low = (remainders & ((1 << shift) - 1)).astype(np.int64)
        quotients[np.lexsort((-low, -high))[:units]] += 1
    return quotients


# ----- auto-deleveraging --------------------------------------------------------------------


def effective_leverage(mark_value: np.ndarray, bankruptcy_value: np.ndarray) -> np.ndarray:
    """|mark value| / (mark value - bankruptcy value), per position (DESIGN.md, ADL).

    Values are signed (side * notional at the mark and at the bankruptcy price), so the margin
    cushion `mark - bankruptcy` is positive for every position that is still solvent. A cushion of
    zero or less (at or past bankruptcy) gives +inf: such a position is first in line. NaN in gives
    NaN out (and `adl_ranking` refuses it).
    """
    mark = np.asarray(mark_value, dtype=np.float64)
    bankruptcy = np.asarray(bankruptcy_value, dtype=np.float64)
    cushion = mark - bankruptcy
    leverage = np.full(cushion.shape, np.inf)
    solvent = cushion > 0
    np.divide(np.abs(mark), cushion, out=leverage, where=solvent)
    leverage[np.isnan(cushion)] = np.nan
    return leverage


def adl_ranking(pnl_pct: np.ndarray, effective_leverage: np.ndarray) -> np.ndarray:
    """ADL score: PnL% * leverage for a profit, PnL% / leverage for a loss, 0 when flat.

    Higher scores are deleveraged first. Infinite leverage makes a profit +inf and a loss -0.0;
    zero leverage makes a loss -inf (no exposure, last in line).
    """
    pnl = np.asarray(pnl_pct, dtype=np.float64)
    leverage = np.asarray(effective_leverage, dtype=np.float64)
    if pnl.shape != leverage.shape:
        raise InputError("effective_leverage", "must be aligned with pnl_pct")
    if np.isnan(pnl).any() or np.isnan(leverage).any() or (leverage < 0).any():
        raise InputError("effective_leverage", "NaN or negative input")
    scores = np.zeros(pnl.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.multiply(pnl, leverage, out=scores, where=pnl > 0)
        np.divide(pnl, leverage, out=scores, where=pnl < 0)
    return scores


def adl_order(scores: np.ndarray, candidate_mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of candidates, highest score first, ties to the lower index (deterministic)."""
    values = np.asarray(scores, dtype=np.float64)
    candidates = np.flatnonzero(_candidates(candidate_mask, values.shape))
    picked = values[candidates]
    if np.isnan(picked).any():
        raise InputError("scores", "NaN score among ADL candidates")
    # Negating keeps the stable sort's tie rule (lower index first); -0.0 and 0.0 compare equal.
    return candidates[np.argsort(-picked, kind="stable")]


def adl_quintiles(
    scores: np.ndarray,
    groups: np.ndarray | None = None,
    candidate_mask: np.ndarray | None = None,
) -> np.ndarray:
    """int8 quintile 1..5 of each position's place in its group's ADL queue (5 = first in line).

    Groups are positions of the same instrument and side. A position d-th in a queue of n (d from
    0) gets 5 - floor(5*d/n): the head of any queue shows 5 lights. Ties in score follow the queue
    order (lower index first), so equal scores may straddle a boundary. Non-candidates get 0.
    """
    values = np.asarray(scores, dtype=np.float64)
    group_ids = np.zeros(values.size, dtype=np.int64) if groups is None else np.asarray(groups)
    if group_ids.shape != values.shape:
        raise InputError("groups", "must be aligned with scores")
    quintiles = np.zeros(values.size, dtype=np.int8)
    candidates = np.flatnonzero(_candidates(candidate_mask, values.shape))
    if candidates.size == 0:
        return quintiles
    picked = values[candidates]
    if np.isnan(picked).any():
        raise InputError("scores", "NaN score among ADL candidates")
    picked_groups = group_ids[candidates]
    # Score descending, then group, both sorts stable so that ties keep index order: this is
    # np.lexsort((-picked, picked_groups)) in about 60% of its time at 1M positions (a few
    # groups sort by radix).
    by_score = np.argsort(-picked, kind="stable")
    groups_by_score = picked_groups[by_score]
    if groups_by_score.min() >= 0 and groups_by_score.max() < 2**15:
        groups_by_score = groups_by_score.astype(np.int16)
    order = by_score[np.argsort(groups_by_score, kind="stable")]
    sorted_groups = picked_groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, sorted_groups.size])
    group_start = np.repeat(starts, sizes)
    group_size = np.repeat(sizes, sizes)
    place = np.arange(sorted_groups.size) - group_start
    quintiles[candidates[order]] = 5 - (5 * place) // group_size
    return quintiles


def _candidates(candidate_mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if candidate_mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(candidate_mask, dtype=bool)
    if mask.shape != shape:
        raise InputError("candidate_mask", "must be aligned with scores")
    return mask
