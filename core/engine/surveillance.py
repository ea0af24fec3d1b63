"""Surveillance: alert rules run over the whole book every `interval_seconds` of simulated time,
vectorized (concentration, fast accumulation, near-liquidation, fund coverage under a price shock,
projected clawback ratio, price far from its index); each breach is raised once, until it clears.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import numpy as np

from core.model.errors import InputError
from core.model.events import AlertCleared, AlertRaised
from core.model.thresholds import Thresholds

if TYPE_CHECKING:
    from core.engine.state import EngineState

PER_POSITION_RULES = ("concentration", "accumulation", "near_liquidation")
RULES = (*PER_POSITION_RULES, "fund_coverage", "clawback_ratio", "price_vs_index")


BIG_BOOK_POSITIONS = 200_000
BIG_BOOK_INTERVAL_SECONDS = 300


# name -> (lowest, highest, lowest allowed itself); None: unbounded
_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "interval_seconds": (1, None, True),
    "concentration": (0, 1, False),
    "accumulation": (0, 1, False),
    "accumulation_window_seconds": (1, None, True),
    "near_liquidation": (1, None, False),
    "material_share": (0, 1, True),
    "shock": (0, 1, False),
    "fund_coverage": (0, None, False),
    "clawback_ratio": (0, 1, False),
    "price_vs_index": (0, None, False),
    "critical_factor": (1, None, True),
}


def parse_thresholds(changes: dict[str, object], base: Thresholds) -> Thresholds:
    """`base` with `changes` applied; InputError names the threshold (`thresholds.shock`)."""
    types = {f.name: f.type for f in fields(Thresholds)}
    values: dict[str, float | int] = {}
    for name, raw in changes.items():
        path = f"thresholds.{name}"
        if name not in types:
            raise InputError(path, f"expected one of {', '.join(types)}, found {name!r}")
        if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
            raise InputError(path, f"expected a number, found {raw!r}")
        try:
            number = Decimal(str(raw).strip())
        except InvalidOperation:
            raise InputError(path, f"expected a number, found {raw!r}") from None
        if not number.is_finite():
            raise InputError(path, f"expected a finite number, found {raw!r}")
        low, high, low_allowed = _BOUNDS[name]
        if (
            number < low
            or (number == low and not low_allowed)
            or (high is not None and number > high)
        ):
            interval = f"{'[' if low_allowed else '('}{low}, {high if high is not None else 'inf'}"
            interval += "]" if high is not None else ")"
            raise InputError(path, f"expected a value in {interval}, found {raw!r}")
        if types[name] in (int, "int"):
            if number != number.to_integral_value():
                raise InputError(path, f"expected a whole number of seconds, found {raw!r}")
            values[name] = int(number)
        else:
            values[name] = float(number)
    return replace(base, **values)  # type: ignore[arg-type]


class Surveillance:
    """Runs the rules for one engine and remembers which alerts are standing."""

    def __init__(self, engine: EngineState, thresholds: Thresholds | None = None) -> None:
        self.engine = engine
        self.thresholds = thresholds or Thresholds()
        self.last_run: int | None = None  # seconds since the start
        self.n_instruments = len(engine.instruments)
        keys = len(engine.book.account_ids) * self.n_instruments
        self.standing = {rule: np.zeros(keys, dtype=bool) for rule in PER_POSITION_RULES}
        self.standing_markets: dict[str, set[str]] = {
            "fund_coverage": set(),
            "clawback_ratio": set(),
            "price_vs_index": set(),
        }

    def state_repr(self) -> str:
        digest = hashlib.sha256()
        for rule in PER_POSITION_RULES:
            digest.update(np.packbits(self.standing[rule]).tobytes())
        markets = sorted((rule, sorted(names)) for rule, names in self.standing_markets.items())
        return f"{self.last_run}|{asdict(self.thresholds)}|{digest.hexdigest()}|{markets}"

    def set_thresholds(self, **changes: object) -> tuple[Thresholds, Thresholds]:
        """Change thresholds (validated; nothing changes on an error) and return (before, after)
        for the journal and the audit log. The next run uses them."""
        before = self.thresholds
        self.thresholds = parse_thresholds(changes, before)
        return before, self.thresholds

    def standing_alerts(self) -> list[tuple[str, str | None, str | None]]:
        """(rule, account, symbol) of every alert raised and not cleared."""
        out: list[tuple[str, str | None, str | None]] = []
        for rule in PER_POSITION_RULES:
            out += [(rule, *self._names(int(key))) for key in np.flatnonzero(self.standing[rule])]
        for rule, names in self.standing_markets.items():
            out += [(rule, None, name) for name in sorted(names)]
        return out

    def run_due(self, now: datetime) -> None:
        seconds = int((now - self.engine.scenario.start).total_seconds())
        interval = self.thresholds.interval_seconds
        if len(self.engine.book) > BIG_BOOK_POSITIONS:
            # A run values the whole book (about 0.2 s at 1M positions): big books run less often.
            interval = max(interval, BIG_BOOK_INTERVAL_SECONDS)
        if self.last_run is None or seconds - self.last_run >= interval:
            self.last_run = seconds
            self.evaluate()

    # ----- the rules --------------------------------------------------------------------

    def evaluate(self) -> None:
        """Run every rule once over the current book and emit what changed."""
        engine, book = self.engine, self.engine.book
        if len(engine.valuation.equity) != len(book):
            engine.valuation = book.revalue(engine.marks)  # rows were added since the last tick
        t = self.thresholds
        k = self.n_instruments
        open_rows = book.contracts > 0
        contracts = np.where(open_rows, book.contracts, 0).astype(np.float64)
        longs = np.bincount(book.instrument, weights=contracts * (book.side > 0), minlength=k)
        shorts = np.bincount(book.instrument, weights=contracts * (book.side < 0), minlength=k)
        # Open interest: one side's contracts; the larger side where the book is unbalanced
        # (counterparties outside the book, positions the liquidation desk holds), so no share
        # exceeds 100%.
        oi = np.maximum(longs, shorts)
        n_keys = len(book.account_ids) * k
        key = book.account * k + book.instrument
        net = np.bincount(key, weights=book.side * contracts, minlength=n_keys)
        oi_of_key = np.tile(oi, len(book.account_ids))
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(oi_of_key > 0, np.abs(net) / oi_of_key, 0.0)
        self._per_position(
            "concentration",
            share >= t.concentration,
            share,
            t.concentration,
            lambda a, s, v, i: (
                f"{a} holds {v:.1%} of the open interest of {s} ({abs(net[i]):,.0f} contracts)"
            ),
        )
        growth = self._growth(net)
        with np.errstate(divide="ignore", invalid="ignore"):
            grown = np.where(oi_of_key > 0, growth / oi_of_key, 0.0)
        hours = t.accumulation_window_seconds / 3600
        self._per_position(
            "accumulation",
            (growth > 0) & (grown >= t.accumulation),
            grown,
            t.accumulation,
            lambda a, s, v, i: (
                f"{a} added {growth[i]:,.0f} {s} contracts within {hours:g} h"
                f" ({v:.1%} of the open interest)"
            ),
        )
        self._near_liquidation(open_rows, contracts, oi, n_keys)
        self._fund_coverage()
        self._clawback_ratio()
        self._price_vs_index()

    def _growth(self, net: np.ndarray) -> np.ndarray:
        """How much each position's size grew through trades within the window (0 without)."""
        engine = self.engine
        trading = getattr(engine, "trading", None)
        growth = np.zeros(len(net))
        if trading is None or not trading.log_key:
            return growth
        now = int((engine.now - engine.scenario.start).total_seconds())
        keys, changes = trading.changes_since(now - self.thresholds.accumulation_window_seconds)
        if keys.size == 0:
            return growth
        touched, where = np.unique(keys, return_inverse=True)
        window = np.bincount(where, weights=changes, minlength=len(touched))
        now_net = net[touched]
        growth[touched] = np.abs(now_net) - np.abs(now_net - window)
        return growth

    def _near_liquidation(
        self, open_rows: np.ndarray, contracts: np.ndarray, oi: np.ndarray, n_keys: int
    ) -> None:
        book, t = self.engine.book, self.thresholds
        ratio = self.engine.valuation.margin_ratio
        material = contracts >= t.material_share * oi[book.instrument]
        rows = np.flatnonzero(open_rows & material & (ratio <= t.near_liquidation))
        worst = np.full(n_keys, np.inf)
        keys = book.account[rows] * self.n_instruments + book.instrument[rows]
        np.minimum.at(worst, keys, ratio[rows])  # few rows: only material positions near the line
        self._per_position(
            "near_liquidation",
            np.isfinite(worst),
            worst,
            t.near_liquidation,
            lambda a, s, v, i: f"{a} {s} margin ratio {v:.3f} (liquidated at 1)",
            higher_is_worse=False,
        )

    def _fund_coverage(self) -> None:
        engine, book, t = self.engine, self.engine.book, self.thresholds
        worst = np.zeros(book.n_currencies)
        for sign in (1.0, -1.0):
            worst = np.maximum(worst, self._deficit_after(engine.marks * (1 + sign * t.shock)))
        breaches: dict[str, tuple[float, float, str]] = {}
        for c, code in enumerate(engine.currency_codes):
            scale = float(book.currencies[c].scale)
            owed = sum(v for (_, cur), v in engine.uncovered.items() if cur == code)
            free = max(0, engine.desk.fund_free(code) - owed) / scale
            limit = free * t.fund_coverage
            if worst[c] > limit:
                message = (
                    f"a {t.shock:.0%} move would leave a deficit of {worst[c]:,.8g} {code};"
                    f" the fund has {free:,.8g} {code} free"
                )
                breaches[code] = (float(worst[c]), limit, message)
        self._per_market("fund_coverage", breaches)

    def _deficit_after(self, marks: np.ndarray) -> np.ndarray:
        """Per currency: what the accounts would owe beyond their collateral (major units) if the
        marks jumped to `marks` at once (no liquidation on the way: a gap)."""
        book = self.engine.book
        x = book.x_of_marks(marks)[book.instrument]
        upnl = np.where(book.contracts > 0, book.upnl_a * x + book.upnl_b, 0.0)
        isolated_equity = np.where(book.isolated, book.iso_margin_major + upnl, 0.0)
        per_currency = np.bincount(
            book.position_currency,
            weights=np.maximum(0.0, -isolated_equity),
            minlength=book.n_currencies,
        )
        cash = (book.balances / book.currency_scale).ravel()
        group_equity = cash + np.bincount(
            book.group, weights=np.where(book.isolated, 0.0, upnl), minlength=book.n_groups
        )
        short_of = np.maximum(0.0, -group_equity).reshape(-1, book.n_currencies)
        return per_currency + short_of.sum(axis=0)

    def _clawback_ratio(self) -> None:
        engine, book, t = self.engine, self.engine.book, self.thresholds
        breaches: dict[str, tuple[float, float, str]] = {}
        for (family, code), pnl in engine.period_pnl.items():
            pending = engine.uncovered[(family, code)]
            shared = pending - max(0, engine.desk.fund_free(code))
            if shared <= 0:
                continue
            scale = float(engine.scenario.currencies[code].scale)
            in_family = np.array([i.family == family for i in engine.instruments])
            rows = np.flatnonzero(in_family[book.instrument] & (book.contracts > 0))
            upnl = np.bincount(
                book.account[rows],
                weights=engine.valuation.upnl[rows],
                minlength=len(book.account_ids),
            )
            profit = pnl / scale + upnl
            total = float(profit[profit > 0].sum())
            # All profit is taken at most; the rest would stay unrecovered.
            ratio = min(1.0, shared / scale / total) if total > 0 else 1.0
            if ratio >= t.clawback_ratio:
                message = (
                    f"settlement now would claw back {ratio:.2%} of {family} {code} profit"
                    f" ({shared / scale:,.8g} {code} uncovered beyond the fund)"
                )
                breaches[f"{family}/{code}"] = (ratio, t.clawback_ratio, message)
        self._per_market("clawback_ratio", breaches)

    def _price_vs_index(self) -> None:
        engine, t = self.engine, self.thresholds
        breaches: dict[str, tuple[float, float, str]] = {}
        for k, inst in enumerate(engine.instruments):
            last = engine.liquidity[k].mid_after_impact(engine.fair_mid(k))
            index = engine.index_now[inst.index]
            gap = abs(last / index - 1) if index > 0 else 0.0
            if gap >= t.price_vs_index:
                message = (
                    f"{inst.symbol} trades at {last:,.2f}, {gap:.1%} from its index {index:,.2f}"
                )
                breaches[inst.symbol] = (gap, t.price_vs_index, message)
        self._per_market("price_vs_index", breaches)

    # ----- raising and clearing ---------------------------------------------------------

    def _per_position(
        self,
        rule: str,
        breach: np.ndarray,
        values: np.ndarray,
        threshold: float,
        message: Callable[[str, str, float, int], str],
        *,
        higher_is_worse: bool = True,
    ) -> None:
        engine = self.engine
        standing = self.standing[rule]
        for key in np.flatnonzero(breach & ~standing).tolist():
            account, symbol = self._names(key)
            value = float(values[key])
            engine.emit(
                AlertRaised(
                    engine.now,
                    rule,
                    account,
                    symbol,
                    self._severity(value, threshold, higher_is_worse),
                    message(account, symbol, value, key),
                    value,
                    threshold,
                )
            )
        for key in np.flatnonzero(standing & ~breach).tolist():
            value = float(values[key]) if np.isfinite(values[key]) else 0.0
            engine.emit(AlertCleared(engine.now, rule, *self._names(key), value))
        self.standing[rule] = breach.copy()

    def _per_market(self, rule: str, breaches: dict[str, tuple[float, float, str]]) -> None:
        engine = self.engine
        standing = self.standing_markets[rule]
        for name in sorted(set(breaches) - standing):
            value, threshold, message = breaches[name]
            severity = self._severity(value, threshold, True) if threshold > 0 else "critical"
            engine.emit(
                AlertRaised(engine.now, rule, None, name, severity, message, value, threshold)
            )
        for name in sorted(standing - set(breaches)):
            engine.emit(AlertCleared(engine.now, rule, None, name, 0.0))
        self.standing_markets[rule] = set(breaches)

    def _severity(self, value: float, threshold: float, higher_is_worse: bool) -> str:
        factor = self.thresholds.critical_factor
        if higher_is_worse:
            critical = value >= threshold * factor
        else:  # a margin ratio: the distance to 1 shrunk by the factor
            critical = value - 1 <= (threshold - 1) / factor
        return "critical" if critical else "warning"

    def _names(self, key: int) -> tuple[str, str]:
        account, k = divmod(key, self.n_instruments)
        return self.engine.book.account_ids[account], self.engine.instruments[k].symbol
