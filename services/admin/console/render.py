"""Templates and the filters they use: times, money with its currency, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2

from connectors.money import NO_MINOR_UNIT, minor_unit_digits

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Canonical record fields that hold integer minor units (schemas/records.py).
MONEY_FIELDS = frozenset(
    {"subtotal", "tax", "total", "amount_due", "amount_paid", "amount", "unit_amount"}
)


def money(minor: Any, currency: Any) -> str:
    """``12345, "USD"`` → ``123.45 USD``: exact (Decimal scaling, never a float)."""
    if not isinstance(minor, int) or isinstance(minor, bool) or not isinstance(currency, str):
        return str(minor)
    if currency in NO_MINOR_UNIT:
        return f"{minor} {currency}"
    digits = minor_unit_digits(currency)
    value = Decimal(minor).scaleb(-digits)
    return f"{value:,.{digits}f} {currency}"


def when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, json=as_json)
    env.globals.update(money=money, MONEY_FIELDS=MONEY_FIELDS)
    return env
