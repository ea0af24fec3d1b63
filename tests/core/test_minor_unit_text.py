"""Money as text: one function, two forms (plain for files, display for people), both exact."""

from __future__ import annotations

from datetime import UTC, datetime

from core.model.events import DeficitUncovered
from core.model.units import format_minor
from core.session.snapshot import describe


def test_display_money_keeps_every_decimal_with_thousands_separators() -> None:
    assert format_minor(123_306_502_985, 8, display=True) == "1,233.06502985"
    assert format_minor(800_000_000, 8, display=True) == "8.00000000"
    assert format_minor(-5, 6, display=True) == "-0.000005"
    assert format_minor(1_234_567, 0, display=True) == "1,234,567"
    # The plain form (files, commands, the audit log) is unchanged: exact, trimmed, no commas.
    assert format_minor(123_306_502_985, 8) == "1233.06502985"
    assert format_minor(800_000_000, 8) == "8"


def test_event_text_shows_amounts_exactly_not_through_float() -> None:
    # 2**60 minor units: a float keeps 53 bits, so `value / 10**places` printed other digits.
    amount = 2**60 + 1
    event = DeficitUncovered(datetime(2018, 7, 31, tzinfo=UTC), "DEMO-USD", "BTC", amount)
    _, _, text = describe(event, {"BTC": 8})
    assert f"amount={format_minor(amount, 8, display=True)}" in text
    assert "11,529,215,046.06846977" in text
