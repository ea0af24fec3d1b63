"""The incident report's money as values: the deficit waterfall of a currency, and each clawback
with its largest allocations. Exact ints in minor units."""

from __future__ import annotations

from dataclasses import dataclass

from core.report.scope import money


@dataclass(frozen=True, slots=True)
class Waterfall:
    """Where the deficits of one currency went. `deficit` equals the sum of the other amounts:
    the fund's own money (opening balance and surpluses) pays before an injection made in the
    range; `clawback` is the part shared by profitable accounts (applied or pending approval),
    each clawback counted once (a rejected one shares nothing); `open` is what was still
    uncovered at the end of the range (negative: the range settled deficits that arose before
    it)."""

    currency: str
    deficit: int = money()
    fund: int = money()
    injection: int = money()
    clawback: int = money()
    unrecovered: int = money()
    open: int = money()
    fund_start: int = money()
    fund_end: int = money()
    injected: int = money()
    surplus_in: int = money()
    clawback_status: str = ""
    adl_fills: int = 0
    adl_contracts: int = 0

    def steps(self) -> tuple[tuple[str, int], ...]:
        return (
            ("insurance fund", self.fund),
            ("company injection", self.injection),
            (
                "clawback" + (f" ({self.clawback_status})" if self.clawback_status else ""),
                self.clawback,
            ),
            ("unrecovered", self.unrecovered),
            ("open at the end of the range", self.open),
        )


@dataclass(frozen=True, slots=True)
class Allocation:
    account: str
    currency: str
    profit: int = money()
    amount: int = money()


@dataclass(frozen=True, slots=True)
class Clawback:
    """One clawback with its most affected accounts (every allocation is in the CSV): `time` is
    when the settlement computed it, `decided_at` when it was applied or rejected ("" while it
    was still pending at the end of the range). A rejected clawback charges nobody."""

    seq: int
    time: str
    decided_at: str
    family: str
    currency: str
    ratio: str
    status: str
    accounts_charged: int
    profitable_accounts: int
    deficit: int = money()
    total_profit: int = money()
    unrecovered: int = money()
    charged: int = money()
    top: tuple[Allocation, ...] = ()
