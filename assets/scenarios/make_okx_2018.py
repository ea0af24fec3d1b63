"""Writes okx-2018-btc0928.json: the calibration knobs are the arguments (margin, depth, crowd, refill, trough)."""

import json
import sys
from pathlib import Path

trough = sys.argv[5] if len(sys.argv) > 5 else "6950"
whale_margin = sys.argv[1] if len(sys.argv) > 1 else "2600"
depth = sys.argv[2] if len(sys.argv) > 2 else "600000"
crowd = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
refill = sys.argv[4] if len(sys.argv) > 4 else "600"
tiers = {"basis": "contracts", "levels": [{"mmr": "0.01", "max_leverage": "20"}]}


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
    "description": "The 31 July 2018 BTC0928 incident: account 2051247 holds a 4,168,515-contract long in the BTC quarterly (100 USD inverse contracts), refuses to reduce and is frozen; at 20:17:14 HKT (12:17:14 UTC) a falling index liquidates it into a thin book; the 10 BTC insurance fund cannot cover the deficit; the company injects 2,500 BTC before the 3 August 16:00 HKT settlement; the rest is clawed back from profitable accounts of the BTC futures family.",
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
            "balances": {"BTC": "0"},
            "positions": [
                {
                    "symbol": "BTC-USD-180928",
                    "side": "long",
                    "contracts": 4168515,
                    "entry_price": "8100",
                    "margin_mode": "isolated",
                    "margin": whale_margin,
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
target = Path(__file__).with_name("okx-2018-btc0928.json")
target.write_text(json.dumps(doc, indent=1))
