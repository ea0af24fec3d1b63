"""Parse and validate a `risk-scenario/1` document (shared spec/scenario.md) into the frozen values
of core.scenario_model. Every problem raises `InputError` naming the field path.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Collection
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from core.crowd import crowd_positions
from core.errors import InputError
from core.instruments import Instrument, TierTable
from core.limits import (
    MAX_ACCOUNTS,
    MAX_CONTRACTS,
    MAX_DECIMALS,
    MAX_FILE_BYTES,
    MAX_LEVERAGE,
    MAX_SEED,
    MAX_TICK_SECONDS,
    MAX_TICKS,
    check_id,
    check_text,
    check_time,
    clip,
)
from core.scenario_bounds import Totals, check_depth, check_price, decode_json, notional_minor
from core.scenario_model import (
    AccountSpec,
    ActionSpec,
    BookSpec,
    CrowdSpec,
    Market,
    OperatorSpec,
    Policy,
    PositionSpec,
    Scenario,
    SettlementPolicy,
)
from core.text import require_visible
from core.units import Currency, check_minor, parse_decimal

FORMAT = "risk-scenario/1"
DEFAULT_DEPTH_UNIT = "contracts per 1% from mid"
ROLES = ("viewer", "operator", "supervisor", "admin")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ACTION_COMMON_FIELDS = ("at", "operator", "action", "reason")
# Each action's own fields, all required, in parse order (an amount needs its currency first).
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "warn": ("account", "message"),
    "restrict": ("account",),
    "freeze": ("account",),
    "freeze_withdrawals": ("account",),
    "unfreeze": ("account",),
    "cancel_orders": ("account",),
    "force_reduce": ("account", "symbol", "contracts"),
    "inject": ("currency", "amount"),
    "adjust_settlement_price": ("family", "price"),
    "approve_clawback": ("family", "currency"),
    "reject_clawback": ("family", "currency"),
    "approve": ("request",),
    "reject": ("request",),
}

T = TypeVar("T")
PricePath = tuple[tuple[datetime, Decimal], ...]
_ABSENT: Any = object()
_KINDS = tuple(ACTION_FIELDS)
_CLAWBACK_DECISIONS = ("approve_clawback", "reject_clawback")
_ANY_ACTION_FIELD = tuple(dict.fromkeys(name for names in ACTION_FIELDS.values() for name in names))
_HH_MM = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
_CROWD_ID = re.compile(r"crowd-(0|[1-9][0-9]*)")
# ISO 8601 extended format in ASCII digits; the offset is checked to be UTC after parsing.
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_TIME_EXAMPLE = 'an ISO 8601 UTC time such as "2018-07-31T12:17:14Z"'


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; unreadable or malformed JSON is an InputError naming file and line."""
    return parse_scenario(read_scenario_doc(Path(path)))


def read_scenario_doc(path: Path) -> dict[str, Any]:
    """The decoded JSON of a scenario file, not yet validated."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            limit = f"{MAX_FILE_BYTES // 2**20} MiB"
            raise InputError("", f"{path}: expected a scenario file of at most {limit}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError("", f"cannot read scenario file {path}: {error}") from None
    try:
        doc = decode_json(text, str(path), _reject_duplicate_keys)
    except json.JSONDecodeError as error:
        where = f"{path} line {error.lineno} column {error.colno}"
        raise InputError("", f"{where}: expected valid JSON, found an error: {error.msg}") from None
    except _DuplicateKeyError as error:
        raise InputError("", f"{path}: {error}") from None
    if not isinstance(doc, dict):
        raise InputError("", f"{path}: expected a JSON object, found {_found(doc)}")
    return doc


def parse_scenario(doc: dict[str, Any]) -> Scenario:
    """Validate a decoded `risk-scenario/1` document and build the immutable Scenario."""
    check_depth(doc, "scenario")
    return _Parser().scenario(doc)


def parse_command(scenario: Scenario, command: Any, action_ids: list[str]) -> ActionSpec:
    """One operator command given while a run goes on, validated against the scenario like an
    action of its file; `action_ids` are the ids given so far (what approve and reject may name)."""
    parser = _Parser()
    parser.currencies = scenario.currencies
    parser.instruments = scenario.instruments
    for inst in scenario.instruments.values():
        parser.families.setdefault(inst.family, set()).add(inst.settle_currency)
    parser.account_ids = {a.id for a in scenario.accounts}
    parser.crowd_accounts = scenario.crowd.accounts if scenario.crowd else 0
    parser.action_ids = list(action_ids)
    return parser.action(command, "command")


class _Parser:
    """Parses the sections in dependency order, so each can check its references to earlier ones."""

    def __init__(self) -> None:
        self.currencies: dict[str, Currency] = {}
        self.indices: dict[str, PricePath] = {}
        self.instruments: dict[str, Instrument] = {}
        self.families: dict[str, set[str]] = {}  # family -> settle currencies
        self.account_ids: set[str] = set()
        self.crowd_accounts = 0
        self.operators: set[str] = set()
        self.action_ids: list[str] = []
        self.last_action_time: datetime | None = None
        self.price_ranges: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (low, high)
        self.money = Totals("amounts")
        self.notional = Totals("position notionals at their path's extreme prices")
        self.scenario_actions = False  # parsing a file's actions (not a live command)

    def scenario(self, doc: Any) -> Scenario:
        self.scenario_actions = True
        required = ("format", "name", "start", "currencies", "instruments", "insurance_fund")
        optional = ("crowd", "policy", "operators", "actions")
        defaults = {"description": "", "sources": [], "seed": 0, "tick_seconds": 1}
        top = _Fields(doc, "", (*required, "accounts", "market"), optional, defaults)
        if top.values["format"] != FORMAT:
            raise _expected("format", f'"{FORMAT}"', top.values["format"])
        seed = top.get("seed", _integer, minimum=0, maximum=MAX_SEED)
        decimals = top.get("currencies", _map, _decimals)
        self.currencies = {code: Currency(code, places) for code, places in decimals.items()}
        market = _Fields(
            top.values["market"], "market", ("indices",), (), {"marks": {}, "books": {}}
        )
        self.indices = market.get("indices", _map, _price_path)
        top.get("instruments", _list_of, self.instrument)
        marks = market.get("marks", _map, _price_path, self.instruments, "instrument symbol")
        for symbol, points in marks.items():
            self.price_range(symbol, points, market.at(f"marks.{clip(symbol)}"))
        fund = top.get("insurance_fund", self.amounts, non_negative=True)
        accounts = tuple(top.get("accounts", _list_of, self.account))
        crowd = top.get("crowd", self.crowd, seed, accounts) if "crowd" in top else None
        operators = tuple(top.get("operators", _list_of, self.operator, default=[]))
        start = top.get("start", _time)
        tick_seconds = top.get("tick_seconds", _integer, minimum=1, maximum=MAX_TICK_SECONDS)
        _check_ticks(start, tick_seconds, (*self.indices.values(), *marks.values()))
        return Scenario(
            name=top.get("name", _string),
            description=top.get("description", _string, allow_empty=True),
            sources=tuple(top.get("sources", _list_of, _string)),
            seed=seed,
            start=start,
            tick_seconds=tick_seconds,
            currencies=self.currencies,
            instruments=self.instruments,
            insurance_fund=fund,
            accounts=accounts,
            crowd=crowd,
            market=Market(
                self.indices,
                marks,
                market.get("books", _map, _book, self.instruments, "instrument symbol"),
            ),
            policy=top.get("policy", _policy, default={}),
            operators=operators,
            actions=tuple(top.get("actions", _list_of, self.action, default=[])),
            extras=_x_fields(top),
        )

    def amounts(self, value: Any, path: str, **bounds: bool) -> dict[str, Decimal]:
        """currency -> amount, each exact in its currency's minor unit."""
        codes = _map(value, path, lambda item, _: item, self.currencies, "currency")
        result: dict[str, Decimal] = {}
        for code, amount in codes.items():
            currency, at = self.currencies[code], f"{path}.{code}"
            result[code] = _money(amount, at, currency, **bounds)
            self.money.add(code, result[code].scaleb(currency.decimals), at)
        return result

    def price_range(self, symbol: str, points: PricePath, path: str) -> None:
        """Widen `symbol`'s price range by a path, each of its prices in the price unit's bound."""
        inst = self.instruments[symbol]
        for i, (_, price) in enumerate(points):
            check_price(inst, price, f"{path}[{i}][1]", exact=False)
        prices = [price for _, price in points]
        low, high = self.price_ranges.get(symbol, (min(prices), max(prices)))
        self.price_ranges[symbol] = (min(low, *prices), max(high, *prices))

    def instrument(self, value: Any, path: str) -> Instrument:
        required = ("symbol", "type", "contract_value", "settle_currency", "tick_size", "index")
        defaults = {"expiry": None, "mark": {}, "liquidation_band": "0.01"}
        fields = _Fields(value, path, (*required, "tiers"), ("family",), defaults)
        symbol = fields.get("symbol", _id)
        if symbol in self.instruments:
            raise _duplicate(fields.at("symbol"), "instrument symbol", symbol)
        mark = fields.get("mark", _Fields, (), (), {"ema_seconds": 60})
        instrument = Instrument(
            symbol=symbol,
            kind=fields.get("type", _choice, ("linear", "inverse")),
            contract_value=fields.get("contract_value", _decimal, positive=True),
            settle_currency=fields.get("settle_currency", _known, self.currencies, "currency"),
            tick_size=fields.get("tick_size", _decimal, positive=True),
            expiry=fields.get("expiry", _nullable, _time),
            family=fields.get("family", _id, default=symbol),
            index=fields.get("index", _known, self.indices, "index of market.indices"),
            tiers=fields.get("tiers", _tiers),
            ema_seconds=mark.get("ema_seconds", _decimal, positive=True),
            liquidation_band=fields.get("liquidation_band", _rate, Decimal("0.5"), True),
        )
        self.instruments[symbol] = instrument
        self.families.setdefault(instrument.family, set()).add(instrument.settle_currency)
        self.price_range(
            symbol, self.indices[instrument.index], f"market.indices.{instrument.index}"
        )
        return instrument

    def account(self, value: Any, path: str) -> AccountSpec:
        fields = _Fields(value, path, ("id",), (), {"balances": {}, "positions": []})
        account_id = fields.get("id", _id)
        if account_id in self.account_ids:
            raise _duplicate(fields.at("id"), "account id", account_id)
        self.account_ids.add(account_id)
        positions = fields.get("positions", _list_of, self.position)
        for j, position in enumerate(positions):
            if any(earlier.symbol == position.symbol for earlier in positions[:j]):
                at = f"{fields.at('positions')}[{j}].symbol"
                raise _duplicate(at, "symbol within the account", position.symbol)
        return AccountSpec(account_id, fields.get("balances", self.amounts), tuple(positions))

    def position(self, value: Any, path: str) -> PositionSpec:
        required = ("symbol", "side", "contracts", "entry_price", "margin_mode", "leverage")
        fields = _Fields(value, path, required, ("margin",))
        symbol = fields.get("symbol", _known, self.instruments, "instrument symbol")
        margin_mode = fields.get("margin_mode", _choice, ("isolated", "cross"))
        currency = self.currencies[self.instruments[symbol].settle_currency]
        margin: Decimal | None = None
        if margin_mode == "isolated":
            if "margin" not in fields:
                message = f"expected the isolated margin in {currency.code}, found none"
                raise InputError(fields.at("margin"), message)
            margin = fields.get("margin", _money, currency, non_negative=True)
            self.money.add(currency.code, margin.scaleb(currency.decimals), fields.at("margin"))
        elif fields.values.get("margin") is not None:
            what = "no margin on a cross position (it draws on the balance)"
            raise _expected(fields.at("margin"), what, fields.values["margin"])
        contracts = fields.get("contracts", _contracts)
        entry = fields.get("entry_price", _decimal, positive=True)
        inst = self.instruments[symbol]
        check_price(inst, entry, fields.at("entry_price"), exact=True)
        low, high = self.price_ranges[symbol]
        notional = notional_minor(inst, currency, contracts, min(low, entry), max(high, entry))
        self.notional.add(currency.code, notional, fields.at("contracts"))
        return PositionSpec(
            symbol=symbol,
            side=fields.get("side", _choice, ("long", "short")),
            contracts=contracts,
            entry_price=entry,
            margin_mode=margin_mode,
            leverage=fields.get("leverage", _leverage),
            margin=margin,
        )

    def crowd(
        self, value: Any, path: str, seed: int, accounts: tuple[AccountSpec, ...]
    ) -> CrowdSpec:
        fields = _Fields(value, path, ("accounts",), (), {"seed": seed})
        room = MAX_ACCOUNTS - len(accounts)
        self.crowd_accounts = fields.get("accounts", _integer, minimum=0, maximum=room)
        # A listed account may not take a name the generator gives one of its own.
        for i, account in enumerate(accounts):
            if self.is_crowd_account(account.id):
                raise _duplicate(f"accounts[{i}].id", "account id (the crowd makes it)", account.id)
        spec = CrowdSpec(
            accounts=self.crowd_accounts,
            seed=fields.get("seed", _integer, minimum=0, maximum=MAX_SEED),
            parameters=_x_fields(fields),
        )
        crowd_positions(spec, path)
        return spec

    def is_crowd_account(self, account_id: str) -> bool:
        match = _CROWD_ID.fullmatch(account_id)
        return match is not None and int(match[1]) < self.crowd_accounts

    def operator(self, value: Any, path: str) -> OperatorSpec:
        fields = _Fields(value, path, ("name", "role"))
        name = fields.get("name", _id)
        if name in self.operators:
            raise _duplicate(fields.at("name"), "operator name", name)
        self.operators.add(name)
        return OperatorSpec(name, fields.get("role", _choice, ROLES))

    def action(self, value: Any, path: str) -> ActionSpec:
        any_action = (*ACTION_COMMON_FIELDS, "id", "digest", *_ANY_ACTION_FIELD)
        kind = _Fields(value, path, ("action",), any_action).get("action", _choice, _KINDS)
        # Checked again with this action's own fields: a field of another action is unknown here.
        # A clawback decision may name the digest of the preview it decides.
        optional = ("id", "digest") if kind in _CLAWBACK_DECISIONS else ("id",)
        fields = _Fields(value, path, (*ACTION_COMMON_FIELDS, *ACTION_FIELDS[kind]), optional)
        moment = fields.get("at", _time)
        if self.last_action_time is not None and moment < self.last_action_time:
            previous = f"{self.last_action_time.isoformat()} or later (actions are in time order)"
            raise _expected(fields.at("at"), previous, fields.values["at"])
        self.last_action_time = moment
        if self.operators:
            operator = fields.get("operator", _known, self.operators, "operator")
        else:
            operator = fields.get("operator", _id)
        action_id = fields.get("id", _id) if "id" in fields else None
        params: dict[str, object] = {}
        for name in ACTION_FIELDS[kind]:
            params[name] = fields.get(name, self.action_param, name, params)
        if "digest" in fields:
            params["digest"] = fields.get("digest", _id)
        if kind == "adjust_settlement_price":
            for inst in self.instruments.values():
                if inst.family == params["family"]:
                    check_price(inst, params["price"], fields.at("price"), exact=True)  # type: ignore[arg-type]
        family, currency = params.get("family"), params.get("currency")
        if kind in _CLAWBACK_DECISIONS and currency not in self.families[str(family)]:
            settled_in = _listing(self.families[str(family)])
            raise _expected(
                fields.at("currency"), f"a currency {family} settles in ({settled_in})", currency
            )
        if action_id in self.action_ids:
            raise _duplicate(fields.at("id"), "action id", str(action_id))
        reason = fields.get("reason", require_visible)
        if action_id is not None:
            self.action_ids.append(action_id)
        return ActionSpec(moment, operator, kind, reason, action_id, params)

    def action_param(self, value: Any, path: str, name: str, parsed: dict[str, object]) -> object:
        """One action-specific field; `parsed` holds the fields of the action parsed before it."""
        parsers: dict[str, Callable[[], object]] = {
            "account": lambda: self.account_reference(value, path),
            "message": lambda: _string(value, path),
            "symbol": lambda: _known(value, path, self.instruments, "instrument symbol"),
            "contracts": lambda: _contracts(value, path),
            "currency": lambda: _known(value, path, self.currencies, "currency"),
            "amount": lambda: _money(
                value, path, self.currencies[str(parsed["currency"])], positive=True
            ),
            "family": lambda: _known(value, path, self.families, "family"),
            "price": lambda: _decimal(value, path, positive=True),
            "request": lambda: _known(value, path, self.action_ids, "id of an earlier action"),
        }
        return parsers[name]()

    def account_reference(self, value: Any, path: str) -> str:
        account_id = _id(value, path)
        if account_id in self.account_ids or self.is_crowd_account(account_id):
            return account_id
        if self.scenario_actions:
            # A scenario's action is refused when it applies (unknown_account, recorded with its
            # reason) rather than stopping the load; a command given live is bad input at once.
            return account_id
        crowd = f" or crowd-0..crowd-{self.crowd_accounts - 1}" if self.crowd_accounts else ""
        raise _expected(
            path, f"an id of accounts ({_listing(self.account_ids)}){crowd}", account_id
        )


class _Fields:
    """A JSON object at `path`: required, optional and defaulted fields; `x-` fields pass."""

    def __init__(
        self,
        value: Any,
        path: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        defaults: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(value, dict):
            raise _expected(path, "an object", value)
        self.values: dict[str, Any] = value
        self.path = path
        self.defaults = defaults or {}
        known = required + optional + tuple(self.defaults)
        for key in value:
            if key not in known and not key.startswith("x-"):
                expected = f"one of {', '.join(known)} or an x- field"
                found = f"unknown field {clip(key)!r}"
                raise _expected(self.at(_key(key)), expected, found, described=True)
        for key in required:
            if key not in value:
                raise InputError(self.at(key), "expected this required field, found none")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(
        self, key: str, parse: Callable[..., T], *args: Any, default: Any = _ABSENT, **options: Any
    ) -> T:
        """The field (or its default) parsed by `parse(value, path, *args, **options)`."""
        fallback = self.defaults.get(key, default)
        return parse(self.values.get(key, fallback), self.at(key), *args, **options)


def _x_fields(fields: _Fields) -> dict[str, Any]:
    """The object's `x-` fields, copied so that later edits to the document cannot reach them."""
    extras = {key: value for key, value in fields.values.items() if key.startswith("x-")}
    check_depth(extras, fields.path or "scenario")
    return copy.deepcopy(extras)


# ---------------------------------------------------------------- sections needing no references


def _tiers(value: Any, path: str) -> TierTable:
    fields = _Fields(value, path, ("basis", "levels"))
    raw_levels = fields.get("levels", _list, non_empty=True)
    levels: list[tuple[Decimal | None, Decimal, Decimal, Decimal | None]] = []
    for i, raw in enumerate(raw_levels):
        defaults = {"max": None, "maintenance_amount": None}
        level = _Fields(raw, f"{path}.levels[{i}]", ("mmr", "max_leverage"), (), defaults)
        upper = level.get("max", _nullable, _decimal, positive=True)
        if upper is None and i < len(raw_levels) - 1:
            raise InputError(
                level.at("max"), "expected a bound (only the last level may omit max), found none"
            )
        previous = levels[-1][0] if levels else None
        if upper is not None and previous is not None and upper <= previous:
            raise _expected(level.at("max"), f"more than the previous max {previous}", raw["max"])
        mmr = level.get("mmr", _rate, Decimal(1), False)
        max_leverage = level.get("max_leverage", _leverage)
        amount = level.get("maintenance_amount", _nullable, _decimal, non_negative=True)
        levels.append((upper, mmr, max_leverage, amount))
    return TierTable.build(fields.get("basis", _choice, ("contracts", "notional")), levels)


def _book(value: Any, path: str) -> BookSpec:
    defaults = {"depth_unit": DEFAULT_DEPTH_UNIT, "refill_seconds": 60}
    fields = _Fields(value, path, ("depth",), (), defaults)
    return BookSpec(
        depth=fields.get("depth", _decimal, positive=True),
        depth_unit=fields.get("depth_unit", _string),
        refill_seconds=fields.get("refill_seconds", _decimal, positive=True),
    )


def _policy(value: Any, path: str) -> Policy:
    fields = _Fields(value, path, (), (), asdict(Policy()))
    return Policy(
        deficit=fields.get("deficit", _choice, ("clawback", "adl")),
        partial_liquidation=fields.get("partial_liquidation", _boolean),
        fund_reservation=fields.get("fund_reservation", _boolean),
        clawback_approval=fields.get("clawback_approval", _choice, ("auto", "required")),
        settlement=fields.get("settlement", _settlement),
    )


def _settlement(value: Any, path: str) -> SettlementPolicy:
    fields = _Fields(value, path, (), (), asdict(Policy().settlement))
    time = fields.get("time", _string)
    if not _HH_MM.fullmatch(time):
        raise _expected(fields.at("time"), 'a UTC time of day "HH:MM"', time)
    return SettlementPolicy(
        every=fields.get("every", _choice, ("day", "week", "expiry")),
        weekday=fields.get("weekday", _choice, WEEKDAYS),
        time=time,
        price=fields.get("price", _choice, ("index_mean_1h",)),
    )


# ----------------------------------------------------------------------------- value helpers


def _found(value: Any) -> str:
    """A JSON value, briefly, for an error message."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    text = json.dumps(value, default=repr)
    text = text if len(text) <= 60 else text[:56] + "..."
    kind = {int: "the integer ", float: "the JSON number ", str: "the string "}.get(type(value), "")
    return kind + text


def _key(name: str) -> str:
    """A key as a field path may show it: clipped, and quoted when it holds unprintables."""
    return clip(name) if name.isprintable() else clip(repr(name))


def _expected(path: str, what: str, value: Any, *, described: bool = False) -> InputError:
    """`expected <what>, found <value>`; `described` when value is already a description."""
    return InputError(path, f"expected {what}, found {value if described else _found(value)}")


def _duplicate(path: str, what: str, value: str) -> InputError:
    return InputError(path, f"expected a unique {what}, found {clip(value)!r} again")


def _listing(names: Collection[str], limit: int = 6) -> str:
    shown = [clip(name) for name in sorted(names)[:limit]]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(shown) + more if shown else "none"


def _map(
    value: Any,
    path: str,
    parse: Callable[[Any, str], T],
    known: Collection[str] | None = None,
    what: str = "",
) -> dict[str, T]:
    """A name -> value object, each value parsed; `x-` names skipped, others in `known` if given."""
    if not isinstance(value, dict):
        raise _expected(path, "an object", value)
    result: dict[str, T] = {}
    for name, item in value.items():
        at = f"{path}.{_key(name)}"
        if not name.strip():
            raise InputError(at, "expected a name, found an empty key")
        if known is not None and name not in known and not name.startswith("x-"):
            raise _expected(at, f"a known {what} ({_listing(known)}) as key", name)
        if known is None and not name.startswith("x-"):
            check_id(name, at)
        if not name.startswith("x-"):
            result[name] = parse(item, f"{path}.{name}")
    return result


def _list(value: Any, path: str, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise _expected(path, "a list", value)
    if non_empty and not value:
        raise InputError(path, "expected at least one item, found an empty list")
    return value


def _list_of(value: Any, path: str, parse: Callable[[Any, str], T]) -> list[T]:
    return [parse(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path))]


def _nullable(value: Any, path: str, parse: Callable[..., T], **options: Any) -> T | None:
    return None if value is None else parse(value, path, **options)


def _string(value: Any, path: str, *, allow_empty: bool = False) -> str:
    """Free text: a name to show, a description, a reason."""
    if not isinstance(value, str):
        raise _expected(path, "a string", value)
    if not allow_empty and not value.strip():
        raise _expected(path, "a non-empty string", value)
    return check_text(value, path)


def _id(value: Any, path: str) -> str:
    """A name other records refer to (account, symbol, operator, action id)."""
    if not isinstance(value, str):
        raise _expected(path, "a string", value)
    return check_id(value, path)


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> Any:
    """One of `choices` (typed Any so it fits the model's Literal fields)."""
    if not isinstance(value, str) or value not in choices:
        raise _expected(path, "one of " + ", ".join(f'"{choice}"' for choice in choices), value)
    return value


def _known(value: Any, path: str, names: Collection[str], what: str) -> str:
    if not isinstance(value, str):
        raise _expected(path, "a string", value)
    name = value
    if name not in names:
        raise _expected(path, f"a known {what} ({_listing(names)})", name)
    return name


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _expected(path, "true or false", value)
    return value


def _integer(value: Any, path: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole count given as a JSON integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(path, "a JSON integer", value)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum:,}" if maximum is not None else f">= {minimum}"
        raise InputError(path, f"expected an integer {bounds}, found {clip(str(value))}")
    return value


def _decimals(value: Any, path: str) -> int:
    """A currency's decimals: the engine holds money in int64 minor units, which at more than
    MAX_DECIMALS would cap every amount below a few thousand units."""
    places = _integer(value, path, minimum=0)
    if places > MAX_DECIMALS:
        raise InputError(
            path,
            f"expected at most {MAX_DECIMALS} decimals (amounts are 64-bit integers of the minor "
            f"unit; {places} would cap each at {Decimal(2**53).scaleb(-places):.4f} units), "
            f"found {places}",
        )
    return places


def _leverage(value: Any, path: str) -> Decimal:
    number = _decimal(value, path, positive=True)
    if number > MAX_LEVERAGE:
        raise _expected(path, f"a leverage of at most {MAX_LEVERAGE}", value)
    return number


def _check_ticks(start: datetime, tick_seconds: int, paths: Collection[PricePath]) -> None:
    """At most MAX_TICKS from `start` to the end of the longest path."""
    end = max((points[-1][0] for points in paths), default=start)
    ticks = int((end - start).total_seconds()) // tick_seconds + 1
    if ticks > MAX_TICKS:
        raise InputError(
            "tick_seconds",
            f"expected at most {MAX_TICKS:,} ticks from start to the end of the longest price "
            f"path, found {ticks:,} (a longer tick_seconds shortens the run)",
        )


def _contracts(value: Any, path: str) -> int:
    """A number of contracts > 0: a JSON integer or a whole-number decimal string ("10")."""
    number = value
    if isinstance(value, str):
        try:
            number = parse_decimal(value, path)
        except InputError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | Decimal) or number != int(number):
        raise _expected(path, 'a whole number of contracts (a JSON integer or "10")', value)
    if number <= 0:
        raise _expected(path, "a number of contracts > 0", value)
    if number > MAX_CONTRACTS:
        raise _expected(path, f"at most {MAX_CONTRACTS:,} (2^40) contracts", value)
    return int(number)


def _decimal(
    value: Any, path: str, *, positive: bool = False, non_negative: bool = False
) -> Decimal:
    """A decimal string (or JSON integer); a JSON float is refused so no binary rounding gets in."""
    if isinstance(value, float):
        raise _expected(path, 'a decimal string such as "0.005" (use a decimal string)', value)
    try:
        number = parse_decimal(value, path)
    except InputError:
        raise _expected(path, 'a finite decimal string such as "0.005"', value) from None
    if (positive and number <= 0) or (non_negative and number < 0):
        raise _expected(path, "a number > 0" if positive else "a number >= 0", value)
    return number


def _rate(value: Any, path: str, upper: Decimal, upper_inclusive: bool) -> Decimal:
    """A rate in [0, upper] or [0, upper)."""
    number = _decimal(value, path, non_negative=True)
    if number > upper or (number == upper and not upper_inclusive):
        interval = f"[0, {upper}]" if upper_inclusive else f"[0, {upper})"
        raise _expected(path, f"a rate in {interval}", value)
    return number


def _money(value: Any, path: str, currency: Currency, **bounds: bool) -> Decimal:
    """An amount exact in the currency's minor unit."""
    amount = _decimal(value, path, **bounds)
    # Read off the digits rather than via Fraction: exports can hold a million balances.
    _, digits, exponent = amount.as_tuple()
    below_minor_unit = -currency.decimals - int(exponent)
    if below_minor_unit > 0 and any(digits[-below_minor_unit:]):
        raise _expected(path, f"at most {currency.decimals} decimals ({currency.code})", value)
    check_minor(int(amount.scaleb(currency.decimals)), path, currency)
    return amount


def _time(value: Any, path: str) -> datetime:
    """An ISO 8601 time in UTC (`Z` or `+00:00`), returned tz-aware in UTC."""
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value):
        raise _expected(path, _TIME_EXAMPLE, value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _expected(path, _TIME_EXAMPLE, value) from None
    if moment.utcoffset() != timedelta(0):
        raise _expected(path, "a UTC time ending in Z or +00:00", value)
    return check_time(moment.replace(tzinfo=UTC), path)


def _price_path(value: Any, path: str) -> PricePath:
    """[[time, price], ...] with at least one point and strictly increasing times."""
    points: list[tuple[datetime, Decimal]] = []
    for i, raw in enumerate(_list(value, path, non_empty=True)):
        at = f"{path}[{i}]"
        if not isinstance(raw, list) or len(raw) != 2:
            raise _expected(at, "a [time, price] pair", raw)
        moment = _time(raw[0], f"{at}[0]")
        if points and moment <= points[-1][0]:
            raise _expected(f"{at}[0]", f"a time after {points[-1][0].isoformat()}", raw[0])
        points.append((moment, _decimal(raw[1], f"{at}[1]", positive=True)))
    return tuple(points)


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a key given twice in one object would silently lose a value."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"expected each key once per object, found {key!r} twice")
        result[key] = value
    return result
