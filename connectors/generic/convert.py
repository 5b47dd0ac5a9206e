"""Value conversions a mapping file can name: money, timestamps, dates, decimals.

Every function is exact and pure. Money never passes through a float: a provider's decimal
amount becomes integer minor units with Decimal arithmetic and the currency's ISO 4217
exponent, and back. A JSON number the provider wrote with a fraction reaches us as a float
only when someone else parsed the body (``connectors.http.send`` uses ``json.loads``);
``repr`` of such a float is the shortest text that reads back to it, which for any amount
written with at most 15 significant digits is exactly what the provider wrote.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.money import NO_MINOR_UNIT, minor_unit_digits, parse_decimal
from schemas.errors import DeadLetter
from schemas.records import ACCEPTED_CURRENCIES

# UTC, a fixed offset, or a named zone with daylight saving (America/New_York).
Zone = tzinfo
TimestampKind = Literal["iso8601", "unix_seconds", "unix_millis"]
TIMESTAMP_KINDS: tuple[TimestampKind, ...] = ("iso8601", "unix_seconds", "unix_millis")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
# Unix times beyond year 9999 are not timestamps any datetime can hold.
_MAX_UNIX_SECONDS = 253_402_300_799


class ConversionError(DeadLetter, ValueError):
    """A value that does not fit the conversion; the message says what was expected.
    A provider's record that does not fit its mapping is a ``schema_violation``."""

    def __init__(self, detail: str) -> None:
        super().__init__("schema_violation", detail, message=detail)


def currency_exponent(code: str) -> int:
    """Decimal places of ``code``'s minor unit (JPY 0, USD 2, KWD 3)."""
    if code not in ACCEPTED_CURRENCIES or code in NO_MINOR_UNIT:
        raise ConversionError(f"{code!r} is not a currency with a minor unit")
    return minor_unit_digits(code)


def to_decimal(value: Any) -> Decimal:
    """A provider's number (decimal string, integer, Decimal or float) as an exact Decimal."""
    try:
        return parse_decimal(value)
    except ValueError as exc:
        raise ConversionError(str(exc)) from None


def to_minor_units(value: Any, currency: str) -> int:
    """A decimal amount in ``currency`` as integer minor units; more decimals than the
    currency has is an error rather than a silent rounding."""
    exponent = currency_exponent(currency)
    scaled = to_decimal(value).scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ConversionError(f"{value!r} has more than {exponent} decimals for {currency}")
    return int(scaled)


def from_minor_units(units: Any, currency: str) -> str:
    """Integer minor units as the decimal string a provider takes ("12.50", JPY "1250")."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise ConversionError(f"expected integer minor units, got {type(units).__name__}")
    exponent = currency_exponent(currency)
    return f"{Decimal(units).scaleb(-exponent):.{exponent}f}"


def integer(value: Any) -> int:
    """An amount already in minor units: an integer, or a string of one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ConversionError(f"expected integer minor units, got {value!r}")


def decimal_text(value: Any) -> str:
    """A quantity as canonical fixed-point text ("1.5", never "1.5E+1")."""
    return format(to_decimal(value), "f")


def parse_offset(text: str) -> timezone:
    """``UTC``/``Z`` or a fixed offset ``+10:00`` / ``-0330``."""
    if text in {"UTC", "Z"}:
        return UTC
    match = _OFFSET.fullmatch(text)
    if match is None:
        raise ValueError(f"timezone {text!r} is not UTC or an offset like +10:00")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24):
        raise ValueError(f"timezone {text!r} is not a UTC offset")
    return timezone(-delta if sign == "-" else delta)


def parse_zone(text: str) -> Zone:
    """``UTC``, a fixed offset (``+10:00``), or an IANA zone name (``America/New_York``)
    whose offset follows its daylight-saving rules."""
    if text in {"UTC", "Z"} or _OFFSET.fullmatch(text):
        return parse_offset(text)
    if "/" not in text or text.startswith("/") or ".." in text:
        # ZoneInfo would also take "EST" or "GMT+5" (POSIX names whose sign is inverted);
        # a region/city name says what it means.
        raise ValueError(
            f"timezone {text!r} is not UTC, an offset like +10:00 or a zone like America/New_York"
        )
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {text!r} is not a known IANA zone") from None


def parse_timestamp(value: Any, fmt: str, zone: Zone) -> datetime:
    """A provider timestamp as an aware UTC datetime; ``zone`` applies to naive values.

    In a named zone, a local time the autumn's repeated hour makes ambiguous reads as its
    first occurrence (daylight time), and one the spring's skipped hour never had reads
    with the offset before the change (``fold=0``, as ``zoneinfo`` does)."""
    if fmt in {"unix_seconds", "unix_millis"}:
        number = to_decimal(value)
        seconds = number / 1000 if fmt == "unix_millis" else number
        if not 0 <= seconds <= _MAX_UNIX_SECONDS:
            raise ConversionError(f"{value!r} is not a {fmt} timestamp")
        whole = int(seconds)
        micros = int(((seconds - whole) * 1_000_000).to_integral_value())
        return datetime.fromtimestamp(whole, UTC) + timedelta(microseconds=micros)
    if not isinstance(value, str):
        raise ConversionError(f"expected a timestamp string, got {type(value).__name__}")
    try:
        if fmt == "iso8601":
            parsed = datetime.fromisoformat(value.strip())
        else:
            parsed = datetime.strptime(value.strip(), fmt)
    except ValueError:
        raise ConversionError(f"{value!r} does not match {fmt}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime, fmt: str, zone: Zone) -> Any:
    """``moment`` as the provider writes it: a number for unix formats, else text in ``zone``."""
    if moment.tzinfo is None:
        raise ConversionError("timestamp lacks a timezone")
    if fmt == "unix_seconds":
        return int(moment.timestamp())
    if fmt == "unix_millis":
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return delta // timedelta(milliseconds=1)
    local = moment.astimezone(zone)
    if fmt == "iso8601":
        text = local.isoformat()
        return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
    return local.strftime(fmt)


def parse_canonical_timestamp(value: Any) -> datetime:
    """A canonical timestamp (ISO 8601 text with an offset) as an aware datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ConversionError(f"{value!r} is not an ISO 8601 timestamp") from None
    else:
        raise ConversionError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if parsed.tzinfo is None:
        raise ConversionError(f"{value!r} lacks a timezone")
    return parsed


def parse_date(value: Any, fmt: str) -> str:
    """A provider date as canonical ISO text ("2024-03-14")."""
    if not isinstance(value, str):
        raise ConversionError(f"expected a date string, got {type(value).__name__}")
    try:
        if fmt == "iso":
            return date.fromisoformat(value.strip()).isoformat()
        return datetime.strptime(value.strip(), fmt).date().isoformat()
    except ValueError:
        raise ConversionError(f"{value!r} does not match {fmt}") from None


def format_date(value: Any, fmt: str) -> str:
    """A canonical ISO date as the provider writes it."""
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        raise ConversionError(f"{value!r} is not an ISO date") from None
    return day.isoformat() if fmt == "iso" else day.strftime(fmt)
