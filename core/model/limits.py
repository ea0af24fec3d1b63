"""The bounds every input is held to (docs/limits.md): what the int64 engine holds exactly, with
headroom for sums, and the sizes past which a file, a crowd or a run is refused instead of tried.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

from core.model.errors import InputError

# A single amount (balance, margin, fund, injection) in minor units. 2^53 also keeps it exact as a
# float64, which valuation uses.
MAX_MINOR = 2**53
# Per currency, the sum of the money a scenario declares and, apart, of its positions' notional at
# the extremes of their price paths. Every flow (PnL, deficit, clawback) is bounded by these, so
# 2^60 + 2^60 leaves a factor of four below int64 (2^63) for the sums of a tick.
MAX_TOTAL_MINOR = 2**60
# A price as a count of the instrument's price units (tick_size / 10,000).
MAX_PRICE_UNITS = 2**53
MAX_CONTRACTS = 2**40
# 12 decimals hold 9,007 currency units per amount under MAX_MINOR; 18 would hold 0.009.
MAX_DECIMALS = 12
MAX_LEVERAGE = 1000
MAX_ACCOUNTS = 2_000_000  # named plus crowd
MAX_POSITIONS = 5_000_000
MAX_TICKS = 1_000_000
MAX_TICK_SECONDS = 86_400
MAX_DEPTH = 32  # nesting of JSON objects and lists
MAX_FILE_BYTES = 256 * 2**20
MAX_NUMBER_CHARS = 40  # a decimal string or JSON number literal
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 10_000
MAX_SEED = 2**63 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive

# Only ASCII digits are numbers: `\d` and str.isdecimal() also take full-width and other scripts.
# An exponent of two digits at most ("0E-8", as str(Decimal) writes it): "1e999999999" is short but
# would take Fraction arithmetic hours.
DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?")
WHOLE = re.compile(r"[0-9]+")
_SHOWN = 40


def clip(text: str, limit: int = _SHOWN) -> str:
    """`text` as an error message may quote it: the first `limit` characters and an ellipsis."""
    return text if len(text) <= limit else text[:limit] + "…"


def check_id(value: object, field: str) -> str:
    """A name other records refer to: non-empty, at most MAX_ID_CHARS, no control, format or
    unassigned characters, no space at either end."""
    if not isinstance(value, str):
        raise InputError(field, f"expected a string, found {type(value).__name__}")
    if len(value) > MAX_ID_CHARS:
        shown = clip(value)
        raise InputError(field, f"expected at most {MAX_ID_CHARS} characters, found {shown!r}")
    if not value.strip():
        raise InputError(field, f"expected a non-empty name, found {value!r}")
    if value != value.strip():
        raise InputError(field, f"expected no space at either end, found {value!r}")
    bad = next((c for c in value if unicodedata.category(c)[0] == "C"), None)
    if bad is not None:
        raise InputError(field, f"expected no control character (found U+{ord(bad):04X})")
    return value


def check_text(value: str, field: str) -> str:
    """Free text (a name, a reason, a message): at most MAX_TEXT_CHARS, no control characters but
    tab and line breaks."""
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(field, f"expected at most {MAX_TEXT_CHARS} characters, found {len(value)}")
    bad = next((c for c in value if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
    if bad is not None:
        raise InputError(field, f"expected no control character (found U+{ord(bad):04X})")
    return value


def check_time(moment: datetime, field: str) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise InputError(
            field,
            f"expected a time from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d}, "
            f"found {moment.isoformat()}",
        )
    return moment
