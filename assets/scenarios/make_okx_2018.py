"""Writes okx-2018-btc0928.json: the calibration knobs are the arguments (margin, depth, crowd,
refill, trough); the whale's buys in the hours before the crash are generated as `x-trades`."""

import json
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

from core.engine.trading import average_entry_units
from core.model.instruments import PRICE_SUBTICKS

trough = sys.argv[5] if len(sys.argv) > 5 else "6950"
whale_margin = sys.argv[1] if len(sys.argv) > 1 else "2600"
depth = sys.argv[2] if len(sys.argv) > 2 else "600000"
crowd = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
refill = sys.argv[4] if len(sys.argv) > 4 else "600"
tiers = {"basis": "contracts", "levels": [{"mmr": "0.01", "max_leverage": "20"}]}

# The whale: what it holds when the crash begins (12:17:14 UTC), and where it starts the replay.
WHALE_CONTRACTS, WHALE_ENTRY, WHALE_MARGIN = 4_168_515, Decimal("8100"), Decimal(whale_margin)
START_CONTRACTS, START_ENTRY, START_MARGIN = 168_515, Decimal("8150"), Decimal("110")
TICK = Decimal("0.01")
UNITS_PER_TICK = PRICE_SUBTICKS  # the engine keeps prices in tick / PRICE_SUBTICKS


def mark_at(path: list[list[str]], moment: datetime) -> Decimal:
    """The pinned BTC0928 mark at `moment`, interpolated like the engine's price paths."""
    points = [(datetime.fromisoformat(t).replace(tzinfo=UTC), Decimal(p)) for t, p in path]
    for (t0, p0), (t1, p1) in pairwise(points):
        if t0 <= moment <= t1:
            share = Decimal((moment - t0).total_seconds()) / Decimal((t1 - t0).total_seconds())
            return p0 + (p1 - p0) * share
    raise ValueError(f"{moment} is outside the path")


def entry_after(sizes: list[int], prices: list[int]) -> int:
    """The whale's entry (price units) after its buys, computed as the engine computes it."""
    held, entry = START_CONTRACTS, int(START_ENTRY / TICK) * UNITS_PER_TICK
    for size, price in zip(sizes, prices, strict=True):
        entry = average_entry_units(True, held, entry, size, price)
        held += size
    return entry


def whale_trades(path: list[list[str]]) -> list[dict[str, object]]:
    """Buys every 30 minutes from 00:30 to 09:30 UTC, heaviest first, lifting offers 0.05% above
    the mark; the last two are tuned so that the entry is exactly 8,100 after the last one. Their
    margins add up to the cash the whale starts with. A last buy after the freeze is refused."""
    start = datetime(2018, 7, 31, 0, 0, 4, tzinfo=UTC)
    times = [start + timedelta(minutes=30 * i) for i in range(1, 20)]
    prices = [
        int((mark_at(path, t) * Decimal("1.0005")).quantize(TICK) / TICK) * UNITS_PER_TICK
        for t in times
    ]
    to_buy = WHALE_CONTRACTS - START_CONTRACTS
    target = int(WHALE_ENTRY / TICK) * UNITS_PER_TICK

    def sizes_for(decay: float) -> list[int]:
        weights = [decay**i for i in range(len(times))]
        sizes = [int(to_buy * w / sum(weights)) for w in weights]
        sizes[0] += to_buy - sum(sizes)
        return sizes

    low, high = 0.5, 1.0  # a faster decay buys more early, at higher prices: a higher entry
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (
            (low, middle) if entry_after(sizes_for(middle), prices) < target else (middle, high)
        )
    sizes = sizes_for(low)
    # Exactly 8,100: move contracts from the second-to-last buy to the last and solve the last
    # price (inverse: F = N*E*P / (n*P + m*E)), kept on the tick and within a dollar of plan.
    planned = prices[-1]
    for shift in range(0, sizes[-2]):
        trial = [*sizes[:-2], sizes[-2] - shift, sizes[-1] + shift]
        entry = entry_after(trial[:-1], prices[:-1])
        held, last = WHALE_CONTRACTS - trial[-1], trial[-1]
        exact = Fraction(target * last * entry, WHALE_CONTRACTS * entry - target * held)
        tick_units = round(exact / UNITS_PER_TICK) * UNITS_PER_TICK
        if abs(tick_units - planned) > 100 * UNITS_PER_TICK:
            continue
        if entry_after(trial, [*prices[:-1], tick_units]) == target:
            sizes, prices = trial, [*prices[:-1], tick_units]
            break
    else:
        raise SystemExit("no buy sequence lands the entry exactly on 8,100")
    cash = WHALE_MARGIN - START_MARGIN
    margins = [(cash * size / to_buy).quantize(Decimal("0.00000001")) for size in sizes]
    margins[-1] += cash - sum(margins)
    trades: list[dict[str, object]] = [
        {
            "at": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "account": "2051247",
            "symbol": "BTC-USD-180928",
            "side": "buy",
            "contracts": size,
            "price": str(Decimal(price) / UNITS_PER_TICK * TICK),
            "margin": str(margin),
        }
        for t, size, price, margin in zip(times, sizes, prices, margins, strict=True)
    ]
    trades.append(
        {
            "at": "2018-07-31T10:30:04Z",
            "account": "2051247",
            "symbol": "BTC-USD-180928",
            "side": "buy",
            "contracts": 200_000,
            "price": "7900",
            "margin": "125",
        }
    )
    return trades


def inst(symbol, expiry):
    return {
        "symbol": symbol,
        "type": "inverse",
        "contract_value": "100",
        "settle_currency": "BTC",
        "tick_size": "0.01",
        "expiry": expiry,
        "family": "BTC-USD",
        "index": "BTC-USD",
        "tiers": tiers,
        "mark": {"ema_seconds": "1"},
        "liquidation_band": "0.01",
    }


doc = {
    "format": "risk-scenario/1",
    "name": "okx-2018-btc0928",
    "description": "The 31 July 2018 BTC0928 incident: account 2051247 builds a 4,168,515-contract long in the BTC quarterly (100 USD inverse contracts) in the hours before the crash, refuses to reduce and is frozen; at 20:17:14 HKT (12:17:14 UTC) a falling index liquidates it into a thin book; the 10 BTC insurance fund cannot cover the deficit; the company injects 2,500 BTC before the 3 August 16:00 HKT settlement; the rest is clawed back from profitable accounts of the BTC futures family.",
    "sources": [
        "OKX notice on the 31 July 2018 BTC0928 incident (seed 003): account 2051247, 4,168,515 contracts, 20:17:14, the 2,500 BTC injection, the settlement safeguards",
        "Published ranges this scenario is calibrated to: a clawback of about 1,200 BTC at a ratio of about 17-18%",
    ],
    "seed": 2018,
    "start": "2018-07-31T00:00:04Z",
    "tick_seconds": 10,
    "currencies": {"BTC": 8},
    "instruments": [
        inst("BTC-USD-180803", "2018-08-03T08:00:00Z"),
        inst("BTC-USD-180928", "2018-09-28T08:00:00Z"),
    ],
    "insurance_fund": {"BTC": "10"},
    "accounts": [
        {
            "id": "2051247",
            "balances": {"BTC": str(WHALE_MARGIN - START_MARGIN)},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "long",
                    "contracts": START_CONTRACTS,
                    "entry_price": str(START_ENTRY),
                    "margin_mode": "isolated",
                    "margin": str(START_MARGIN),
                    "leverage": "20",
                }
            ],
        },
        {
            "id": "mm-1",
            "balances": {"BTC": "30000"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "short",
                    "contracts": 2000000,
                    "entry_price": "8100",
                    "margin_mode": "cross",
                    "leverage": "10",
                }
            ],
        },
        {
            "id": "mm-2",
            "balances": {"BTC": "20000"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "short",
                    "contracts": 1500000,
                    "entry_price": "8110",
                    "margin_mode": "cross",
                    "leverage": "10",
                }
            ],
        },
        {
            "id": "mm-4",
            "balances": {"BTC": "15000"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "short",
                    "contracts": 1500000,
                    "entry_price": "8150",
                    "margin_mode": "cross",
                    "leverage": "10",
                }
            ],
        },
        {
            "id": "mm-5",
            "balances": {"BTC": "15000"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "long",
                    "contracts": 1500000,
                    "entry_price": "8150",
                    "margin_mode": "cross",
                    "leverage": "10",
                }
            ],
        },
        {
            "id": "mm-3",
            "balances": {"BTC": "10000"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "short",
                    "contracts": 668515,
                    "entry_price": "8090",
                    "margin_mode": "cross",
                    "leverage": "10",
                }
            ],
        },
    ],
    "crowd": {
        "accounts": crowd,
        "seed": 31,
        "x-size-median": "3000",
        "x-entry-spread": "0.01",
        "x-instrument-weights": {"BTC-USD-180803": "1", "BTC-USD-180928": "2"},
    },
    "market": {
        "indices": {
            "BTC-USD": [
                ["2018-07-31T00:00:04Z", "8150"],
                ["2018-07-31T06:00:00Z", "8060"],
                ["2018-07-31T10:00:00Z", "7930"],
                ["2018-07-31T12:17:04Z", "7805"],
                ["2018-07-31T12:17:14Z", "7780"],
                ["2018-07-31T13:00:00Z", "7720"],
                ["2018-08-01T00:00:00Z", "7620"],
                ["2018-08-02T00:00:00Z", "7560"],
                ["2018-08-03T06:00:00Z", "7470"],
                ["2018-08-03T08:00:04Z", "7450"],
            ]
        },
        "marks": {
            "BTC-USD-180928": [
                ["2018-07-31T00:00:04Z", "8150"],
                ["2018-07-31T06:00:00Z", "8060"],
                ["2018-07-31T10:00:00Z", "7930"],
                ["2018-07-31T12:17:04Z", "7805"],
                ["2018-07-31T12:17:14Z", "7780"],
                ["2018-07-31T12:24:00Z", "7250"],
                ["2018-07-31T12:31:00Z", trough],
                ["2018-07-31T13:10:00Z", "7350"],
                ["2018-07-31T14:00:00Z", "7690"],
                ["2018-08-01T00:00:00Z", "7620"],
                ["2018-08-02T00:00:00Z", "7560"],
                ["2018-08-03T06:00:00Z", "7470"],
                ["2018-08-03T08:00:04Z", "7450"],
            ]
        },
        "books": {
            "BTC-USD-180928": {
                "depth": depth,
                "depth_unit": "contracts per 1% from mid",
                "refill_seconds": refill,
            },
            "BTC-USD-180803": {
                "depth": "400000",
                "depth_unit": "contracts per 1% from mid",
                "refill_seconds": "60",
            },
        },
    },
    "policy": {
        "deficit": "clawback",
        "partial_liquidation": False,
        "fund_reservation": False,
        "clawback_approval": "required",
        "settlement": {
            "every": "week",
            "weekday": "friday",
            "time": "08:00",
            "price": "index_mean_1h",
        },
    },
    "operators": [{"name": "alice", "role": "operator"}, {"name": "carol", "role": "supervisor"}],
    "actions": [
        {
            "at": "2018-07-31T04:00:04Z",
            "operator": "alice",
            "action": "warn",
            "account": "2051247",
            "message": "reduce your BTC0928 position",
            "reason": "position far above the concentration threshold",
        },
        {
            "at": "2018-07-31T10:00:04Z",
            "operator": "alice",
            "action": "freeze",
            "account": "2051247",
            "reason": "refused repeated requests to reduce",
        },
        {
            "at": "2018-08-03T02:00:04Z",
            "id": "inject-2500",
            "operator": "alice",
            "action": "inject",
            "currency": "BTC",
            "amount": "2500",
            "reason": "company reserve to reduce the clawback",
        },
        {
            "at": "2018-08-03T02:10:04Z",
            "operator": "carol",
            "action": "approve",
            "request": "inject-2500",
            "reason": "approved by management",
        },
    ],
    "x-notes": "see okx-2018-btc0928.md",
}
doc["x-trades"] = whale_trades(doc["market"]["marks"]["BTC-USD-180928"])
target = Path(__file__).with_name("okx-2018-btc0928.json")
target.write_text(json.dumps(doc, indent=1))
