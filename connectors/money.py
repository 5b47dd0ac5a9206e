"""ISO 4217 minor units and exact decimals: what every connector's money conversion needs.

Canonical money is integer minor units plus a currency code (DESIGN invariant 9), so each
provider's amounts are scaled by their currency's exponent. The table is ISO 4217's own
and the same for every provider; how a provider writes an amount (a decimal string, a
JSON number) stays in its folder.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from connectors.spec import MappingError

# ISO 4217 List One, "Minor unit" column (SIX, amendment 179 and later): the currencies
# whose exponent is not 2. Every other accepted code has 2 (schemas.records lists them).
_ZERO_DIGITS = (
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
    "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
)  # fmt: skip
EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DIGITS, 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# List One gives these "N.A." as minor unit (precious metals, bond units, SDR, test and
# "no currency" codes): an amount in them cannot be stated in minor units at all.
NO_MINOR_UNIT: frozenset[str] = frozenset(
    ["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"]
)


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point in ``currency``'s minor unit (JPY 0, USD 2, KWD 3)."""
    return EXPONENTS.get(currency, 2)


def exponent(currency: str, path: str) -> int:
    """``minor_unit_digits``, or MappingError naming ``path`` for a currency without a
    minor unit."""
    if currency in NO_MINOR_UNIT:
        raise MappingError("schema_violation", f"{path}: {currency} has no minor unit")
    return minor_unit_digits(currency)


def parse_decimal(value: object) -> Decimal:
    """A JSON number (or decimal string) as the Decimal it was written as; ValueError
    saying what is wrong with any other value (each caller names where it was).

    A float comes from ``json.loads`` of the provider's text; ``repr`` gives back the
    shortest text that parses to it, which is the provider's own text for any number of
    up to 15 significant digits (every amount Xero and QuickBooks hold).
    """
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def decimal_of(value: object, path: str) -> Decimal:
    """``parse_decimal`` for a mapper: a value that is no number is a MappingError naming
    ``path``."""
    try:
        return parse_decimal(value)
    except ValueError as exc:
        raise MappingError("schema_violation", f"{path}: {exc}") from None


def exact_percent(tax: int, amount: int, places: int = 4) -> str | None:
    """``tax`` as a percentage of ``amount`` written with at most ``places`` decimals, or
    None when no such percentage gives exactly ``tax``.

    For providers that take a line's tax as a rate and compute the amount themselves
    (PayPal, Square): a canonical tax amount is pushed only when the rate reproduces it.
    """
    if tax == 0:
        return "0"
    if amount <= 0:
        return None
    percent = (Decimal(tax) * 100 / Decimal(amount)).quantize(Decimal(1).scaleb(-places))
    if percent_of(amount, percent) != tax:
        return None
    return format(percent.normalize(), "f")


def percent_of(amount: int, percent: Decimal) -> int:
    """The tax a provider computes from a rate: ``amount * percent / 100``, half up."""
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
