"""The mark tick's valuation pass compiled with numba: every position and cross group valued in
two passes over the rows instead of about twenty numpy passes. `PositionBook.revalue_numpy` is
the reference it must match to the bit (tests/core/test_kernels.py)."""

from __future__ import annotations

import os

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the reference path still runs
    numba = None

# RISK_NUMPY_ONLY=1 runs the numpy reference path everywhere (to compare, or to bisect).
ENABLED = numba is not None and os.environ.get("RISK_NUMPY_ONLY", "") not in ("1", "true")


def _stale_rows(
    x_inst: np.ndarray, instrument: np.ndarray, tier_lo: np.ndarray, tier_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's price variable, and the rows whose cached tier band no longer holds it."""
    n = instrument.size
    x = np.empty(n)
    stale = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        value = x_inst[instrument[i]]
        x[i] = value
        if value <= tier_lo[i] or value > tier_hi[i]:
            stale[count] = i
            count += 1
    return x, stale[:count]


def _value_rows(
    x: np.ndarray,
    upnl_a: np.ndarray,
    upnl_b: np.ndarray,
    mm_c: np.ndarray,
    mm_d: np.ndarray,
    size_per_x: np.ndarray,
    leverage: np.ndarray,
    isolated: np.ndarray,
    group: np.ndarray,
    cash: np.ndarray,
    iso_margin: np.ndarray,
    contracts: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """The same arithmetic, in the same order, as PositionBook.revalue_numpy."""
    n, groups = x.size, cash.size
    upnl, maintenance, notional = np.empty(n), np.empty(n), np.empty(n)
    group_upnl, group_maintenance = np.zeros(groups), np.zeros(groups)
    group_margin = np.zeros(groups)
    for i in range(n):
        u = upnl_a[i] * x[i] + upnl_b[i]
        m = mm_c[i] * x[i] - mm_d[i]
        size = size_per_x[i] * x[i]
        upnl[i], maintenance[i], notional[i] = u, m, size
        if not isolated[i]:
            g = group[i]
            group_upnl[g] += u
            group_maintenance[g] += m
            group_margin[g] += size / leverage[i]
    group_equity = cash + group_upnl
    equity, requirement = np.empty(n), np.empty(n)
    liquidatable = np.empty(n, dtype=np.bool_)
    for i in range(n):
        if isolated[i]:
            equity[i] = iso_margin[i] + upnl[i]
            requirement[i] = maintenance[i]
        else:
            equity[i] = group_equity[group[i]]
            requirement[i] = group_maintenance[group[i]]
        liquidatable[i] = contracts[i] > 0 and equity[i] <= requirement[i]
    return (
        notional,
        upnl,
        maintenance,
        equity,
        requirement,
        liquidatable,
        group_equity,
        group_maintenance,
        group_margin,
    )


if ENABLED:
    # No fastmath: a fused multiply-add or a reordered sum would move the last bit.
    stale_rows = numba.njit(cache=True, nogil=True)(_stale_rows)
    value_rows = numba.njit(cache=True, nogil=True)(_value_rows)
else:  # pragma: no cover
    stale_rows = _stale_rows
    value_rows = _value_rows
