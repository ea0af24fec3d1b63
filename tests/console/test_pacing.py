"""The worker's snapshot spacing: three times the recent builds' average cost apart, so that a
build that also redid the self-paced columns does not freeze the screen for three times its cost,
while building still takes about a third of the engine thread's time."""

from __future__ import annotations

from console.worker.pacing import averaged_build_cost


def spaced(costs: list[float]) -> list[float]:
    """The interval the worker leaves after each of these builds (three times the average)."""
    average, intervals = costs[0], []
    for cost in costs:
        average = averaged_build_cost(average, cost)
        intervals.append(3 * average)
    return intervals


def test_one_dear_build_does_not_hold_the_next_snapshot_three_times_as_long() -> None:
    costs = [0.1] * 12 + [1.2] + [0.1] * 4
    intervals = spaced(costs)
    after_dear = intervals[12]
    assert 3 * 0.1 < after_dear < 0.5 * 3 * 1.2
    assert intervals[-1] < after_dear  # the average decays back towards the cheap builds


def test_building_stays_near_a_third_of_the_time_over_a_run() -> None:
    costs = ([0.1] * 5 + [0.7]) * 20  # the risk prices or the stress ladder redone every sixth
    intervals = spaced(costs)
    share = sum(costs) / sum(intervals)
    assert 0.28 < share < 0.40


def test_steady_builds_keep_their_own_spacing() -> None:
    intervals = spaced([0.2] * 40)
    assert abs(intervals[-1] - 0.6) < 1e-3
