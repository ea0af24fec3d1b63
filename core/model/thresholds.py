"""When each surveillance rule fires: the thresholds as a value, shared by the engine's rules,
the desk's alert settings and the console's alerts view."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When each rule fires. Shares and ratios are fractions (0.1 = 10%)."""

    # How often the rules run, in seconds of simulated time (not every tick: the book is big).
    interval_seconds: int = 60
    # An account's net position holds at least this share of the instrument's open interest.
    concentration: float = 0.10
    # A position grew by at least this share of the instrument's open interest within the window
    # (seed 003: the 2018 account built 4,168,515 contracts in hours).
    accumulation: float = 0.05
    accumulation_window_seconds: int = 6 * 3600
    # Margin ratio (equity / maintenance margin; liquidation at 1) at or below this...
    near_liquidation: float = 1.2
    # ...for positions of at least this share of open interest (a desk watches material ones).
    material_share: float = 0.001
    # Fund coverage: the deficit a sudden move of every price by this fraction (up or down, the
    # worse) would leave beyond the losers' collateral...
    shock: float = 0.10
    # ...exceeds this multiple of the fund's free balance (after the deficits it already owes).
    fund_coverage: float = 1.0
    # The clawback ratio settlement would apply now is at or above this.
    clawback_ratio: float = 0.01
    # The contract's own price (its book mid) is at least this far from its index, as a fraction.
    price_vs_index: float = 0.05
    # A breach this many times beyond its threshold is `critical`, otherwise `warning`.
    critical_factor: float = 2.0
