"""The Overview's stress ladder on the two-traders scenario: its 0 % rung is the overview's
figures, the deficit grows with the shock against each side, and the table shows the rungs."""

from __future__ import annotations

from typing import Any

from conftest import TWO_TRADERS, wait_snapshot

BTC = 10**8


def rungs(snap: Any, code: str = "BTC") -> dict[float, Any]:
    return {r.shock: r for r in snap.stress if r.currency == code}


def test_stress_ladder_before_the_gap_grows_with_the_shock_against_either_side(
    qtbot: Any, bridge: Any
) -> None:
    bridge.open(TWO_TRADERS)
    snap = wait_snapshot(qtbot, bridge)
    ladder = rungs(snap)
    assert sorted(ladder) == [-0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2]
    # A long and B short 10 at 1 with 1 BTC each: 20 % either way leaves the loser 1 BTC short.
    assert ladder[-0.2].new_deficit == ladder[0.2].new_deficit == BTC
    assert ladder[-0.15].deficit_left == BTC // 2
    assert ladder[-0.2].clawback_ratio == 0.5  # 1 BTC of the winner's 2
    downs = [ladder[s].deficit_left for s in (0.0, -0.05, -0.1, -0.15, -0.2)]
    ups = [ladder[s].deficit_left for s in (0.0, 0.05, 0.1, 0.15, 0.2)]
    assert downs == sorted(downs) and ups == sorted(ups)
    zero, o = ladder[0.0], snap.overview[0]
    assert zero.new_deficit == 0 and zero.liquidations == 0
    assert zero.clawback_ratio == (o.projected_clawback_ratio or 0.0)


def test_stress_ladder_zero_rung_is_the_overview_after_the_gap(qtbot: Any, settings: Any) -> None:
    from console.window.main_window import MainWindow

    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    window.open_source(TWO_TRADERS)
    wait_snapshot(qtbot, window.bridge)
    window.bridge.step(5)
    snap = wait_snapshot(qtbot, window.bridge, lambda s: s.tick == 5)
    qtbot.waitUntil(lambda: window.snapshot is snap)
    ladder, o = rungs(snap), snap.overview[0]
    zero = ladder[0.0]
    # B's short is all that is open: no new deficit anywhere; the 8 BTC waiting is all left.
    assert zero.deficit_left + zero.fund_pays == o.deficit_uncovered == 8 * BTC
    assert zero.fund_pays == min(o.fund_balance - o.fund_reserved, o.deficit_uncovered)
    assert zero.clawback_ratio == o.projected_clawback_ratio
    # The price up takes B's profit away: the same deficit over less profit.
    ratios = [ladder[s].clawback_ratio for s in sorted(ladder)]
    assert ratios == sorted(ratios) and ratios[0] < zero.clawback_ratio < ratios[-1]
    shown = window.overview.ladder
    model = shown.model
    assert [c.title for c in model.columns][2:] == [
        "-20%", "-15%", "-10%", "-5%", "0 %", "+5%", "+10%", "+15%", "+20%"
    ]  # fmt: skip
    texts = {model.cell_text(r, 1): model.cell_text(r, 6) for r in range(model.rowCount())}
    assert texts["Deficit left"] == "8.00000000"
    assert texts["Clawback ratio"] == f"{o.projected_clawback_ratio:.2%}"
    assert (
        window.overview.cards["BTC"].values["clawback"].text().startswith(texts["Clawback ratio"])
    )
    window.close()
