"""Parse and validate a `risk-scenario/1` document (shared spec/scenario.md) into the frozen values
of core.model.scenario_values. Every problem raises `InputError` naming the field path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.model.errors import InputError
from core.model.instruments import CONVENTIONS, Instrument
from core.model.limits import (
    MAX_ACCOUNTS,
    MAX_FILE_BYTES,
    MAX_SEED,
    MAX_TICK_SECONDS,
    clip,
)
from core.model.scenario_values import (
    AccountSpec,
    ActionSpec,
    CrowdSpec,
    Market,
    OperatorSpec,
    PositionSpec,
    Scenario,
)
from core.model.text import require_visible
from core.model.units import Currency
from core.scenario.bounds import Totals, check_depth, check_price, decode_json, notional_minor
from core.scenario.crowd import crowd_positions
from core.scenario.fields import (
    PricePath,
    _book,
    _check_ticks,
    _choice,
    _contracts,
    _decimal,
    _decimals,
    _duplicate,
    _DuplicateKeyError,
    _expected,
    _Fields,
    _found,
    _id,
    _integer,
    _known,
    _leverage,
    _list_of,
    _listing,
    _map,
    _money,
    _nullable,
    _policy,
    _price_path,
    _rate,
    _reject_duplicate_keys,
    _string,
    _tiers,
    _time,
    _x_fields,
)

FORMAT = "risk-scenario/1"
ROLES = ("viewer", "operator", "supervisor", "admin")
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

_KINDS = tuple(ACTION_FIELDS)
_CLAWBACK_DECISIONS = ("approve_clawback", "reject_clawback")
_ANY_ACTION_FIELD = tuple(dict.fromkeys(name for names in ACTION_FIELDS.values() for name in names))
_CROWD_ID = re.compile(r"crowd-(0|[1-9][0-9]*)")


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
        top.get("instruments", _list_of, self.instrument, non_empty=True)
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
        defaults = {
            "expiry": None,
            "mark": {},
            "liquidation_band": "0.01",
            "margin_convention": "mark",
            "close_fee_rate": "0",
        }
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
            margin_convention=fields.get("margin_convention", _choice, CONVENTIONS),
            # A taker fee above 10% is no exchange's: a typo, not a convention.
            close_fee_rate=fields.get("close_fee_rate", _rate, Decimal("0.1"), False),
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


# ---------------------------------------------------------------- sections needing no references


# ----------------------------------------------------------------------------- value helpers
