"""Price paths, the index, the mark EMA and the settlement-window mean (core.market.prices)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from core.market.prices import (
    MarkPriceEMA,
    PinnedMark,
    PricePath,
    PriceUnavailableError,
    SettlementWindow,
    decimals_of,
    ema_alpha,
    index_price,
    whole_seconds,
)
from core.model.errors import InputError

T0 = datetime(2018, 7, 31, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def two_point_path() -> PricePath:
    # 8100 -> 7480 over 12 hours, then 7480 -> 7600 over the next hour.
    return PricePath(
        ((T0, Decimal("8100")), (at(43_200), Decimal("7480")), (at(46_800), Decimal("7600")))
    )


# --- PricePath -------------------------------------------------------------------------------


def test_path_is_exact_at_its_points() -> None:
    path = two_point_path()
    assert path.at(T0) == 8100.0
    assert path.at(at(43_200)) == 7480.0
    assert path.at(at(46_800)) == 7600.0


def test_path_interpolates_linearly_between_points() -> None:
    path = two_point_path()
    assert path.at(at(21_600)) == pytest.approx(7790.0, abs=1e-9)  # halfway down
    assert path.at(at(43_200 + 900)) == pytest.approx(7510.0, abs=1e-9)  # a quarter up


def test_path_is_constant_outside_its_points() -> None:
    path = two_point_path()
    assert path.at(at(-3600)) == 8100.0
    assert path.at(at(10 * 86_400)) == 7600.0


def test_sample_matches_at_for_a_run_starting_elsewhere() -> None:
    path = two_point_path()
    run_start = at(-600)  # the run starts ten minutes before the path's first point
    ticks = np.arange(0, 48_000, 7, dtype=np.int64)
    sampled = path.sample(ticks, run_start)
    expected = np.array([path.at(run_start + timedelta(seconds=int(s))) for s in ticks])
    assert np.array_equal(sampled, expected)
    assert sampled[0] == 8100.0 and sampled[-1] == 7600.0


def test_path_rejects_bad_points_naming_the_field() -> None:
    with pytest.raises(InputError, match="at least one point"):
        PricePath((), name="market.indices.BTC-USD")
    with pytest.raises(InputError) as caught:
        PricePath(((T0, Decimal(1)), (T0, Decimal(2))), name="market.indices.BTC-USD")
    assert caught.value.field == "market.indices.BTC-USD[1]"
    with pytest.raises(InputError, match="UTC offset"):
        PricePath(((datetime(2018, 7, 31), Decimal(1)),))
    with pytest.raises(InputError, match="positive"):
        PricePath(((T0, Decimal(0)),))


def test_a_single_point_path_is_flat() -> None:
    path = PricePath(((T0, Decimal("100.5")),))
    assert path.at(at(-1)) == path.at(at(1)) == 100.5


def test_whole_seconds() -> None:
    assert whole_seconds(T0, at(3600)) == 3600
    assert whole_seconds(T0, 42) == 42
    with pytest.raises(ValueError, match="whole number"):
        whole_seconds(T0, at(0.5))


# --- index -----------------------------------------------------------------------------------


def test_index_drops_an_outlier() -> None:
    # Median of all is 101; 150 is 48.5% away and dropped; the median of 100 and 101 remains.
    assert index_price([100.0, 101.0, 150.0]) == 100.5
    assert index_price([7480.0, 7490.0, 7470.0, 7485.0, 5000.0]) == pytest.approx(7482.5)


def test_index_keeps_all_close_sources() -> None:
    assert index_price([100.0, 101.0, 102.0]) == 101.0
    assert index_price([100.0, 101.0, 102.0, 103.0]) == 101.5


def test_index_boundary_and_special_cases() -> None:
    assert index_price([100.0, 105.0, 110.0]) == 105.0  # 110 is exactly 5/105 < 5% away: kept
    assert index_price([100.0, 100.0, 106.0]) == 100.0  # 6% away: dropped
    assert index_price([7480.0]) == 7480.0  # a lone source is its own median
    assert index_price([100.0, math.nan, 101.0, 0.0]) == 100.5  # down venues ignored
    assert index_price([100.0, 150.0], max_deviation=0.5) == 125.0


def test_index_without_a_usable_source_is_an_error() -> None:
    with pytest.raises(PriceUnavailableError):
        index_price([])
    with pytest.raises(PriceUnavailableError):
        index_price([math.nan, -1.0])
    with pytest.raises(PriceUnavailableError, match="every index source"):
        index_price([100.0, 120.0])  # two that disagree: neither can be trusted


# --- mark --------------------------------------------------------------------------------------


def test_mark_starts_at_the_index() -> None:
    ema = MarkPriceEMA(60.0)
    assert ema.update(index=100.0, mid=100.0, dt=0.0) == 100.0
    assert ema.update(index=100.0, mid=110.0, dt=0.0) == 100.0  # no time, no move


def test_mark_step_response_after_tau_seconds() -> None:
    # A basis step from 0 to 10 at tau = 60 s: after 60 s the basis has moved 1 - 1/e of it,
    # whether the minute passes in 1 s ticks or in one step.
    in_ticks = MarkPriceEMA(60.0)
    for _ in range(60):
        mark = in_ticks.update(index=100.0, mid=110.0, dt=1.0)
    in_one_step = MarkPriceEMA(60.0).update(index=100.0, mid=110.0, dt=60.0)
    expected = 100.0 + 10.0 * (1 - math.exp(-1))
    assert mark == pytest.approx(expected, abs=1e-9)
    assert in_one_step == pytest.approx(expected, abs=1e-12)


def test_mark_tracks_a_moving_index_with_the_basis_smoothed() -> None:
    ema = MarkPriceEMA.for_instrument(Decimal(60))
    ema.update(index=100.0, mid=110.0, dt=60.0)
    basis = ema.state()
    # The index jumps; the basis EMA only moves by this step's alpha.
    mark = ema.update(index=200.0, mid=200.0, dt=1.0)
    assert mark == pytest.approx(200.0 + basis * math.exp(-1 / 60))
    restored = MarkPriceEMA(60.0)
    restored.restore(ema.state())
    assert restored.mark(300.0) == ema.mark(300.0)


def test_ema_alpha_edges() -> None:
    assert ema_alpha(0.0, 60.0) == 0.0
    assert ema_alpha(5.0, 0.0) == 1.0
    assert ema_alpha(1.0, 60.0) == pytest.approx(1 - math.exp(-1 / 60), rel=1e-15)
    with pytest.raises(ValueError):
        ema_alpha(-1.0, 60.0)


def test_pinned_mark_follows_its_path() -> None:
    pinned = PinnedMark(PricePath(((T0, Decimal("8100")), (at(100), Decimal("8000")))))
    assert pinned.advance(at(0), index=1.0, mid=2.0, dt=1.0) == 8100.0
    assert pinned.advance(at(50), index=1.0, mid=2.0, dt=1.0) == pytest.approx(8050.0)
    assert pinned.advance(at(500), index=1.0, mid=2.0, dt=1.0) == 8000.0
    assert np.allclose(pinned.sample(np.array([0, 25, 100]), T0), [8100.0, 8075.0, 8000.0])


# --- settlement window -----------------------------------------------------------------------


def test_settlement_mean_over_a_crafted_hour() -> None:
    window = SettlementWindow(T0, price_decimals=2)
    window.add(0, 1_000_000.0)  # exactly one hour before `until`: outside (until - 3600, until]
    for second in range(1, 3601):
        window.add(second, 8000.0 if second <= 1800 else 8001.0)
    window.add(3601, 1_000_000.0)  # after `until`: outside
    assert window.count(at(3600)) == 3600
    # 1800 samples at 8000 and 1800 at 8001: the mean is 8000.5 exactly.
    assert window.mean_exact(at(3600)) == Fraction(16001, 2)
    assert window.mean(at(3600), tick_size=Decimal("0.01")) == Decimal("8000.50")
    assert window.mean(at(3600), tick_size=Decimal("1")) == Decimal("8000")  # half to even
    assert window.mean(at(3600)) == Decimal("8000.50")  # to price_decimals without a tick


def test_settlement_mean_of_a_ramp() -> None:
    # The index climbs 0.1 per second from 7000 at t=0: samples 7000.1 .. 7360.0 at t = 1..3600.
    # Their mean is 7000 + 0.1 * (1 + 3600) / 2 = 7180.05.
    path = PricePath(((T0, Decimal("7000")), (at(3600), Decimal("7360"))))
    window = SettlementWindow(T0, price_decimals=2)
    ticks = np.arange(0, 3601, dtype=np.int64)
    window.extend(ticks, path.sample(ticks, T0))
    assert window.mean_exact(3600) == Fraction(718005, 100)
    assert window.mean(3600, tick_size=Decimal("0.01")) == Decimal("7180.05")
    assert window.mean(3600, tick_size=Decimal("0.1")) == Decimal("7180.0")  # 71800.5 ticks: even
    assert window.mean(3600, tick_size=Decimal("0.5")) == Decimal("7180.0")
    assert window.mean(1800, seconds=60) == Decimal("7177.05")  # 7174.2 .. 7180.0


def test_settlement_add_and_extend_agree() -> None:
    prices = 7480.0 + np.sin(np.arange(5000) / 100.0) * 50.0
    one_by_one = SettlementWindow(T0, price_decimals=4)
    for second, price in enumerate(prices):
        one_by_one.add(second, float(price))
    batched = SettlementWindow(T0, price_decimals=4)
    batched.extend(np.arange(5000), prices)
    assert one_by_one.mean_exact(4999) == batched.mean_exact(4999)
    assert all(
        np.array_equal(a, b) for a, b in zip(one_by_one.snapshot(), batched.snapshot(), strict=True)
    )


def test_settlement_storage_stays_bounded_over_days() -> None:
    window = SettlementWindow(T0, price_decimals=2, retention_seconds=7200)
    days = 3 * 86_400
    ticks = np.arange(days, dtype=np.int64)
    window.extend(ticks, 7000.0 + (ticks % 1000) * 0.01)
    for second in range(days, days + 100):
        window.add(at(second), Decimal("7000.00"))
    assert len(window) <= window.capacity <= 4 * 7200  # not 3 days' worth of samples
    assert window.count(days + 99) == 3600
    with pytest.raises(PriceUnavailableError, match="dropped"):
        window.mean(at(86_400))  # a day back: no longer kept


def test_settlement_window_refusals() -> None:
    window = SettlementWindow(T0, price_decimals=2)
    with pytest.raises(PriceUnavailableError):
        window.mean(3600)
    window.add(10, 100.0)
    with pytest.raises(ValueError, match="not after"):
        window.add(10, 101.0)
    with pytest.raises(ValueError):
        window.add(11, math.nan)


def test_settlement_snapshot_restores() -> None:
    window = SettlementWindow(T0, price_decimals=2)
    window.extend(np.arange(1, 101), np.linspace(100.0, 200.0, 100))
    copy = SettlementWindow(T0, price_decimals=2)
    copy.restore(*window.snapshot())
    assert copy.mean_exact(100) == window.mean_exact(100)
    copy.add(101, 300.0)
    assert copy.count(101) == 101


def test_decimals_of() -> None:
    assert decimals_of(Decimal("0.01")) == 2
    assert decimals_of(Decimal("100")) == 0
    assert decimals_of(Decimal("7480.250")) == 2
