"""One parser reads a provider's number for the mappers (money.decimal_of) and the generic
connector (convert.to_decimal); each names the refusal its own way."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.generic.convert import ConversionError, to_decimal
from connectors.money import decimal_of, parse_decimal
from connectors.spec import MappingError


@pytest.mark.parametrize(
    ("value", "number"),
    [("12.50", "12.50"), (" 3 ", "3"), (7, "7"), (0.1, "0.1"), (Decimal("1.005"), "1.005")],
)
def test_a_number_is_the_decimal_it_was_written_as(value: object, number: str) -> None:
    assert parse_decimal(value) == Decimal(number)
    assert str(decimal_of(value, "a")) == str(to_decimal(value)) == number


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a number, got a boolean"),
        ("12,50", "'12,50' is not a number"),
        ([1], "expected a number, got list"),
        ("NaN", "'NaN' is not a finite number"),
        (float("inf"), "inf is not a finite number"),
    ],
)
def test_a_value_that_is_no_number_is_refused_saying_why(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_decimal(value)
    with pytest.raises(MappingError, match=f"^schema_violation: Amount: {message}$"):
        decimal_of(value, "Amount")
    with pytest.raises(ConversionError, match=f"^{message}$"):
        to_decimal(value)
