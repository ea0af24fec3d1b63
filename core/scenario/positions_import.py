"""Accounts and positions from a CSV or Parquet file (docs/exchange-data.md), one row per
position, read by pyarrow into the columns of the position book: no Python loop per row, decimals
exact, every bad cell named by file, row and column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.model.errors import InputError
from core.model.instruments import Instrument
from core.model.limits import MAX_CONTRACTS, MAX_ID_CHARS, MAX_LEVERAGE, MAX_MINOR, MAX_PRICE_UNITS
from core.model.units import Currency
from core.scenario.crowd import CrowdColumns
from core.scenario.decimal_columns import (
    CellError,
    Scaled,
    as_text,
    cell_text,
    decimal_scale,
    first_row,
    scaled_column,
)

REQUIRED = ("account", "symbol", "side", "contracts", "entry_price", "margin_mode", "leverage")
OPTIONAL = ("margin", "balance")
# What `export --table positions` adds: the valuation at the store's last mark, ignored here so
# that an export reads back as it is.
VALUATION = ("mark_price", "notional", "upnl", "maintenance_margin")
SIDES = ("long", "short")
MODES = ("isolated", "cross")


@dataclass(frozen=True, slots=True)
class _Source:
    """The file's columns as strings (leverage may stay a float column), and how to name a cell."""

    path: Path
    table: pa.Table
    csv: bool

    def where(self, row: int, column: str) -> str:
        line = f" (line {row + 2})" if self.csv else ""
        return f"{self.path} row {row + 1}{line} column {column}"

    def text(self, column: str) -> pa.Array:
        array = as_text(self.table.column(column))
        if array is None:
            kind = self.table.schema.field(column).type
            raise InputError(
                f"{self.path} column {column}",
                f"expected text, integer or decimal values (a binary float has already lost the "
                f"decimal meant), found {kind}",
            )
        return array


def read_positions(
    path: str | Path,
    instruments: Sequence[Instrument],
    currencies: Sequence[Currency],
    *,
    reserved: str | None = None,
) -> CrowdColumns:
    """The accounts and positions of a `.csv` or `.parquet` file as book columns; accounts in the
    order they first appear. `reserved` is a regular expression no account id may match (the
    crowd's own ids when a crowd is added)."""
    return _columns(_open(Path(path)), list(instruments), list(currencies), reserved)


def _open(path: Path) -> _Source:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(str(path), f"expected a .csv or .parquet file, found {suffix or 'none'}")
    try:
        if suffix == ".parquet":
            names = pq.read_schema(path).names
        else:
            with path.open(encoding="utf-8", newline="") as handle:
                names = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, pa.ArrowException) as error:
        raise InputError(str(path), f"cannot read the positions file: {error}") from None
    _check_header(path, names)
    wanted = [name for name in names if name in REQUIRED + OPTIONAL]
    try:
        if suffix == ".parquet":
            table = pq.read_table(path, columns=wanted)
        else:
            convert = pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                include_columns=wanted,
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            )
            table = pacsv.read_csv(path, convert_options=convert)
    except (OSError, pa.ArrowException) as error:
        raise InputError(str(path), f"cannot read the positions file: {error}") from None
    return _Source(path, table.combine_chunks(), suffix == ".csv")


def _check_header(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path} column {name}", "expected each column once, found it twice")
        seen.add(name)
        if name not in REQUIRED + OPTIONAL + VALUATION and not name.startswith("x-"):
            known = ", ".join(REQUIRED + OPTIONAL)
            raise InputError(f"{path} column {name}", f"expected one of {known} or an x- column")
    for name in REQUIRED:
        if name not in seen:
            raise InputError(f"{path} column {name}", "expected this required column, found none")


def _cells(source: _Source, column: str, scale: int, *, allow_empty: bool = False) -> Scaled:
    try:
        raw = source.table.column(column).combine_chunks()
        if pa.types.is_dictionary(raw.type):
            raw = raw.dictionary_decode()
        if not (pa.types.is_integer(raw.type) or pa.types.is_decimal128(raw.type)):
            raw = source.text(column)  # refuses a float column, naming it
        return scaled_column(raw, scale, allow_empty=allow_empty)
    except CellError as error:
        raise InputError(source.where(error.row, column), error.message) from None


def _refuse(source: _Source, column: str, mask: np.ndarray | pa.Array, message: str) -> None:
    row = first_row(mask)
    if row is not None:
        found = cell_text(source.text(column), row)
        raise InputError(source.where(row, column), f"{message}, found {found}")


def _choice(source: _Source, column: str, choices: Sequence[str]) -> np.ndarray:
    text = source.text(column)
    index = pc.index_in(text, value_set=pa.array(list(choices)))
    _refuse(source, column, pc.is_null(index), f"expected one of {', '.join(choices)}")
    return index.to_numpy(zero_copy_only=False).astype(np.int64)


def _columns(
    source: _Source,
    instruments: list[Instrument],
    currencies: list[Currency],
    reserved: str | None,
) -> CrowdColumns:
    symbols = [inst.symbol for inst in instruments]
    codes = [currency.code for currency in currencies]
    n_rows = source.table.num_rows
    if n_rows == 0:
        raise InputError(str(source.path), "expected at least one position row, found none")

    accounts = source.text("account")
    _refuse(source, "account", pc.is_null(accounts), "expected an account id")
    _check_ids(source, accounts, reserved)
    encoded = pc.dictionary_encode(accounts)
    account = encoded.indices.to_numpy().astype(np.int64)
    account_ids = tuple(encoded.dictionary.to_pylist())

    instrument = _choice(source, "symbol", symbols)
    side = 1 - 2 * _choice(source, "side", SIDES)
    isolated = _choice(source, "margin_mode", MODES) == 0
    currency = np.array([codes.index(i.settle_currency) for i in instruments])[instrument]

    contracts = _cells(source, "contracts", 0).values
    _refuse(
        source, "contracts", (contracts < 1) | (contracts > MAX_CONTRACTS), "expected 1 to 2^40"
    )
    entry_units = _price_units(source, instruments, instrument)
    leverage = _leverage(source)
    iso_margin = _margin(source, currencies, currency, isolated)
    balances = _balances(source, currencies, account, currency, len(account_ids))

    # One position per account and symbol: a second row would silently net into the first.
    key = account * len(symbols) + instrument
    order = np.argsort(key, kind="stable")
    repeated = order[1:][key[order][1:] == key[order][:-1]]
    if repeated.size:
        row = int(repeated.min())
        earlier = int(order[np.searchsorted(key[order], key[row])])
        raise InputError(
            source.where(row, "symbol"),
            f"expected one position per account and symbol, found a second {symbols[instrument[row]]}"
            f" position of {account_ids[account[row]]!r} (the first is row {earlier + 1})",
        )
    return CrowdColumns(
        account_ids=account_ids,
        balances=balances,
        account=account,
        instrument=instrument,
        side=side.astype(np.int8),
        contracts=contracts,
        entry_units=entry_units,
        isolated=isolated,
        iso_margin=iso_margin,
        leverage=leverage,
    )


def _check_ids(source: _Source, accounts: pa.Array, reserved: str | None) -> None:
    """Account ids as the scenario format takes them (core/model/limits.py `check_id`)."""
    length = pc.utf8_length(accounts)
    _refuse(source, "account", pc.equal(length, 0), "expected a non-empty account id")
    _refuse(source, "account", pc.greater(length, MAX_ID_CHARS), "expected at most 128 characters")
    trimmed = pc.utf8_trim_whitespace(accounts)
    _refuse(source, "account", pc.not_equal(trimmed, accounts), "expected no space at either end")
    _refuse(
        source,
        "account",
        pc.match_substring_regex(accounts, r"\p{C}"),
        "expected no control character",
    )
    if reserved is not None:
        taken = pc.match_substring_regex(accounts, f"^(?:{reserved})$")
        _refuse(source, "account", taken, "expected an id the crowd does not give (crowd-N)")


def _price_units(source: _Source, instruments: list[Instrument], k: np.ndarray) -> np.ndarray:
    """Entry prices as counts of each row's instrument's price unit, exact."""
    units = [decimal_scale(inst.price_unit) for inst in instruments]
    scale = max(s for _, s in units)
    divisor = np.array([m * 10 ** (scale - s) for m, s in units], dtype=np.int64)[k]
    scaled = _cells(source, "entry_price", scale).values
    _refuse(source, "entry_price", scaled <= 0, "expected a price greater than zero")
    _refuse(
        source,
        "entry_price",
        scaled % divisor != 0,
        "expected a multiple of the instrument's price unit (tick_size / 10,000)",
    )
    entry = scaled // divisor
    _refuse(source, "entry_price", entry > MAX_PRICE_UNITS, "expected at most 2^53 price units")
    return entry


def _leverage(source: _Source) -> np.ndarray:
    column = source.table.column("leverage")
    if pa.types.is_floating(column.type):  # a ratio the book holds as float64 anyway
        values = column.to_numpy()
        _refuse(source, "leverage", np.isnan(values), "expected a leverage")
    else:
        scaled = _cells(source, "leverage", 8)
        values = scaled.values / 1e8
    _refuse(source, "leverage", (values <= 0) | (values > MAX_LEVERAGE), "expected 0 to 1000")
    return values.astype(np.float64)


def _money_scale(currencies: list[Currency], currency: np.ndarray) -> tuple[int, np.ndarray]:
    scale = max(c.decimals for c in currencies)
    divisor = np.array([10 ** (scale - c.decimals) for c in currencies], dtype=np.int64)
    return scale, divisor[currency]


def _margin(
    source: _Source, currencies: list[Currency], currency: np.ndarray, isolated: np.ndarray
) -> np.ndarray:
    """Isolated margin in minor units of the settle currency; none on a cross position."""
    if "margin" not in source.table.column_names:
        if isolated.any():
            row = int(np.flatnonzero(isolated)[0])
            raise InputError(source.where(row, "margin"), "expected the isolated margin column")
        return np.zeros(len(isolated), dtype=np.int64)
    scale, divisor = _money_scale(currencies, currency)
    cells = _cells(source, "margin", scale, allow_empty=True)
    missing = isolated & ~cells.given
    _refuse(source, "margin", missing, "expected the isolated margin")
    _refuse(source, "margin", ~isolated & cells.given, "expected no margin on a cross position")
    return _minor(source, "margin", cells.values, divisor, negative=False)


def _minor(
    source: _Source, column: str, scaled: np.ndarray, divisor: np.ndarray, *, negative: bool
) -> np.ndarray:
    _refuse(source, column, scaled % divisor != 0, "expected whole minor units of the currency")
    minor = scaled // divisor
    if not negative:
        _refuse(source, column, minor < 0, "expected an amount of 0 or more")
    _refuse(source, column, np.abs(minor) > MAX_MINOR, "expected at most 2^53 minor units")
    return minor


def _balances(
    source: _Source,
    currencies: list[Currency],
    account: np.ndarray,
    currency: np.ndarray,
    n_accounts: int,
) -> np.ndarray:
    """Cross collateral per account and currency, given on any of the account's rows in that
    currency and the same on every row that gives it."""
    balances = np.zeros((n_accounts, len(currencies)), dtype=np.int64)
    if "balance" not in source.table.column_names:
        return balances
    scale, divisor = _money_scale(currencies, currency)
    cells = _cells(source, "balance", scale, allow_empty=True)
    minor = _minor(source, "balance", cells.values, divisor, negative=True)
    rows = np.flatnonzero(cells.given)
    group = account[rows] * len(currencies) + currency[rows]
    order = np.argsort(group, kind="stable")
    same_group = group[order][1:] == group[order][:-1]
    differs = same_group & (minor[rows][order][1:] != minor[rows][order][:-1])
    if differs.any():
        row = int(rows[order][1:][differs].min())
        mask = np.zeros(len(account), dtype=bool)
        mask[row] = True
        _refuse(source, "balance", mask, "expected the balance the account's earlier rows give")
    balances.reshape(-1)[group] = minor[rows]
    return balances
