"""Values a stranger sends, bounded to what zkbridge and its database can hold — one place for the rules
every reader of outside bodies (Kommo's form, Zuora's callouts, usage feeds) applies:

- a whole number is ASCII digits only (`"²"`, `"①"` and `"--5"` are not numbers) and fits a 64-bit column;
- text holds no NUL and no unpaired surrogate (PostgreSQL refuses both; they are never meant);
- JSON is read without recursing past a sane depth (a 2 KB body of nested brackets is not a crash);
- a quantity has at most 12 digits before the point, 6 after, and 15 significant digits (what every
  database zkbridge runs on stores exactly, SQLite's floating point included).
Each refusal is a ValueError with words for the caller's 400 or the row's rejection.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any


class Refused(ValueError):
    """A value zkbridge refuses on these rules (as opposed to a body that is not JSON at all)."""


BIGINT_MAX = 2**63 - 1
_WHOLE = re.compile(r"-?[0-9]{1,19}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
MAX_QUANTITY = Decimal("1e12")


def whole_number(value: Any, what: str, *, positive: bool = False) -> int:
    text = str(value).strip()
    if not _WHOLE.fullmatch(text):
        raise Refused(f"{what} must be a whole number, got {text[:40]!r}")
    number = int(text)
    if abs(number) > BIGINT_MAX:
        raise Refused(f"{what} is out of range")
    if positive and number <= 0:
        raise Refused(f"{what} must be a positive number")
    return number


def clean_text(value: Any, what: str) -> str:
    """Text without NUL or unpaired surrogates (refused, not silently altered)."""
    text = str(value)
    if "\x00" in text:
        raise Refused(f"{what} contains a NUL character")
    if _SURROGATE.search(text):
        raise Refused(f"{what} contains an unpaired surrogate (not valid Unicode)")
    return text


def check_tree(value: Any, what: str = "the body") -> Any:
    """Every string (keys included) of a decoded JSON or form tree passes clean_text."""
    if isinstance(value, str):
        clean_text(value, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            clean_text(key, what)
            check_tree(item, what)
    elif isinstance(value, list):
        for item in value:
            check_tree(item, what)
    return value


def load_json(text: str) -> Any:
    """json.loads that answers a ValueError, never a RecursionError, and refuses NUL and lone surrogates."""
    try:
        return check_tree(json.loads(text))
    except RecursionError:
        raise Refused("the JSON is nested too deeply") from None


def json_body(body: bytes, not_json: str, encoding: str = "utf-8") -> Any:
    """A body read as JSON: a Refused (with its reason) or a ValueError saying `not_json`, never a crash."""
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        raise ValueError(f"{not_json} (it is not UTF-8)") from None
    try:
        return load_json(text)
    except Refused:
        raise
    except ValueError:
        raise ValueError(not_json) from None


def quantity(value: Any, what: str = "quantity") -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Refused(f"{what} must be a number, zero or more") from None
    if not number.is_finite() or number < 0:
        raise Refused(f"{what} must be a number, zero or more")
    if number >= MAX_QUANTITY:
        raise Refused(f"{what} must be less than 1,000,000,000,000")
    sign, digits, exponent = number.normalize().as_tuple()
    if isinstance(exponent, int) and exponent < -6:
        raise Refused(f"{what} has more than 6 decimal places")
    if len(digits) > 15:
        raise Refused(f"{what} has more than 15 significant digits")
    return number
