"""Ascora amounts: decimal strings ("123.45") next to an ISO 4217 code, never floats.

Canonical money is integer minor units, so every conversion needs the currency's
exponent. A string with more decimals than the currency has (``"1.005"`` AUD, ``"1.5"``
JPY) is refused rather than rounded: rounding would silently change what a customer owes.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal

from connectors.money import exponent
from connectors.spec import MappingError

# Plain decimal notation only: no exponent ("1E+2"), no sign other than a leading minus,
# no thousands separators, no surrounding spaces. Decimal() alone would accept all of them.
# 30 digits either side is far beyond any amount (2**63 minor units has 19 digits) and
# keeps every value exact inside _EXACT's precision.
_DECIMAL_STRING = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")
# Enough precision that scaling a 60-digit value never rounds.
_EXACT = Context(prec=80)


def parse_decimal(value: object, path: str) -> Decimal:
    """A decimal string as an exact Decimal; floats and numbers are refused (inexact JSON)."""
    if not isinstance(value, str) or not _DECIMAL_STRING.fullmatch(value):
        raise MappingError("schema_violation", f"{path}: expected a decimal string like '12.50'")
    return Decimal(value)


def to_minor(value: object, currency: str, path: str) -> int:
    """``"123.45"`` in ``currency`` as integer minor units (12345 for AUD, 123 for "123" JPY)."""
    amount = parse_decimal(value, path)
    scaled = amount.scaleb(exponent(currency, path), _EXACT)
    if scaled != scaled.to_integral_value():
        raise MappingError(
            "schema_violation",
            f"{path}: {value} has more decimals than {currency} allows",
        )
    return int(scaled)


def to_decimal_string(minor: int, currency: str, path: str) -> str:
    """Integer minor units as Ascora's decimal string, with exactly the currency's decimals."""
    places = exponent(currency, path)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"
