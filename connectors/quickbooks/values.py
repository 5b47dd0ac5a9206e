"""Exact conversions between QuickBooks Online values and canonical ones.

QuickBooks states money as decimal numbers in the transaction's currency (``TotalAmt:
362.07``), timestamps with the company's UTC offset (``2015-07-23T10:58:12-07:00``, or
``-0700`` in classic webhooks) and countries as free text. Canonical data wants integer
minor units, aware UTC and ISO 3166 alpha-2. Everything here is pure and raises
MappingError naming the provider path it could not convert.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from connectors.money import decimal_of, exponent
from connectors.spec import MappingError

_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})"
)

# What QuickBooks users type in an address's free-text Country, for the countries whose
# editions QuickBooks Online sells (US, CA, GB, AU, IN, FR, ...) and their neighbours.
# Anything else that is not already a two-letter code is dropped, never guessed.
_COUNTRY_ALIASES: dict[str, str] = {
    "USA": "US",
    "U.S.A.": "US",
    "U.S.": "US",
    "UNITED STATES": "US",
    "UNITED STATES OF AMERICA": "US",
    "CAN": "CA",
    "CANADA": "CA",
    "UK": "GB",
    "U.K.": "GB",
    "GBR": "GB",
    "GREAT BRITAIN": "GB",
    "UNITED KINGDOM": "GB",
    "ENGLAND": "GB",
    "SCOTLAND": "GB",
    "WALES": "GB",
    "NORTHERN IRELAND": "GB",
    "AUS": "AU",
    "AUSTRALIA": "AU",
    "NZL": "NZ",
    "NEW ZEALAND": "NZ",
    "IND": "IN",
    "INDIA": "IN",
    "FRA": "FR",
    "FRANCE": "FR",
    "IRL": "IE",
    "IRELAND": "IE",
    "MEX": "MX",
    "MEXICO": "MX",
    "DEU": "DE",
    "GERMANY": "DE",
    "ESP": "ES",
    "SPAIN": "ES",
    "ZAF": "ZA",
    "SOUTH AFRICA": "ZA",
    "SGP": "SG",
    "SINGAPORE": "SG",
    "HKG": "HK",
    "HONG KONG": "HK",
}


def to_minor(value: Any, currency: str, path: str, *, round_extra: bool = False) -> int:
    """A decimal amount in ``currency`` as integer minor units, exactly.

    More decimals than the currency has is a MappingError, unless ``round_extra``: unit
    prices may carry sub-cent precision in QuickBooks, and those are rounded half to even.
    """
    places = exponent(currency, path)
    scaled = decimal_of(value, path).scaleb(places)
    whole = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    if whole != scaled and not round_extra:
        raise MappingError(
            "schema_violation", f"{path}: {value} has more decimals than {currency} allows"
        )
    return int(whole)


def from_minor(minor: int, currency: str, path: str) -> Decimal:
    """Integer minor units of ``currency`` as the decimal amount QuickBooks takes."""
    return Decimal(minor).scaleb(-exponent(currency, path))


def json_number(value: Decimal, path: str) -> int | float:
    """``value`` as a JSON number that serialises to exactly its decimal text.

    The shared HTTP session serialises bodies with ``json.dumps``, which cannot write a
    Decimal. A float's ``repr`` is the shortest text that parses back to it, which is the
    decimal's own digits whenever it has at most 15 significant ones (IEEE 754 binary64,
    DBL_DIG = 15); anything that would not come out as the same digits is refused.
    """
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise MappingError(
            "schema_violation", f"{path}: {value} has too many digits to send exactly"
        )
    return as_float


def parse_timestamp(value: Any, path: str) -> datetime:
    """A QuickBooks timestamp (any offset form, any fraction length) as aware UTC."""
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected an ISO 8601 timestamp")
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise MappingError(
            "schema_violation", f"{path}: {value!r} is not an ISO 8601 timestamp with an offset"
        )
    fraction = (match["fraction"] or ".0")[1:7].ljust(6, "0")
    zone = match["zone"]
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}")
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not a real time") from None
    return moment.replace(tzinfo=tz).astimezone(UTC)


def parse_date(value: Any, path: str) -> date:
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not a date") from None


def country_code(value: str) -> str | None:
    """ISO 3166 alpha-2 for a QuickBooks free-text country, or None if not recognisable."""
    text = " ".join(value.split()).upper()
    if len(text) == 2 and text.isascii() and text.isalpha():
        return text
    return _COUNTRY_ALIASES.get(text)
