"""bus.money: minor units ↔ Decimal by Stripe's currency exponents (case 018), exact, never via float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bus.errors import PermanentError
from bus.money import (
    ISO_4217_ACTIVE,
    KNOWN_CURRENCIES,
    THREE_DECIMAL_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    UnknownCurrencyError,
    exponent,
    format_money,
    json_number,
    to_decimal,
    to_minor,
)


def same(actual: Decimal, expected: str) -> None:
    """Equal value *and* the same digits/exponent (Decimal("42.00") is not Decimal("42") here)."""
    assert isinstance(actual, Decimal)
    assert actual == Decimal(expected)
    assert actual.as_tuple() == Decimal(expected).as_tuple()


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        (1999, "USD", "19.99"),
        (1500, "JPY", "1500"),
        (1234, "KWD", "1.234"),
        # case 018's four inputs
        (8000, "jpy", "8000"),
        (55000, "krw", "55000"),
        (4200, "usd", "42.00"),
        (15990, "clp", "15990"),
        # edges
        (0, "USD", "0.00"),
        (5, "USD", "0.05"),
        (-1999, "USD", "-19.99"),
        (1, "BHD", "0.001"),
        (500, "ISK", "5.00"),  # Stripe keeps ISK two-decimal (special case)
        (100, "MGA", "100"),  # ISO says 2, Stripe says 0: Stripe wins
        (10**30 + 1, "USD", "10000000000000000000000000000.01"),  # beyond the default 28-digit context: no rounding
    ],
)
def test_to_decimal(minor: int, currency: str, expected: str) -> None:
    same(to_decimal(minor, currency), expected)


def test_exponents_follow_stripe() -> None:
    assert {exponent(c) for c in ZERO_DECIMAL_CURRENCIES} == {0}
    assert {exponent(c) for c in THREE_DECIMAL_CURRENCIES} == {3}
    assert exponent("usd") == exponent("EUR") == exponent("HUF") == exponent("TWD") == 2
    assert len(ZERO_DECIMAL_CURRENCIES) == 16 and len(THREE_DECIMAL_CURRENCIES) == 5
    assert ZERO_DECIMAL_CURRENCIES | THREE_DECIMAL_CURRENCIES <= KNOWN_CURRENCIES


@pytest.mark.parametrize("currency", ["XYZ", "xyz", "ABC", "", "US", "USDX", "usd ", "XXX", "XAU", "IQD", "CLF"])
def test_unknown_currency_is_a_permanent_error(currency: str) -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        to_decimal(100, currency)
    assert isinstance(info.value, PermanentError)
    assert info.value.reason == f"unknown_currency_exponent: {currency.upper()}"
    with pytest.raises(UnknownCurrencyError):
        exponent(currency)
    with pytest.raises(UnknownCurrencyError):
        to_minor(Decimal(1), currency)


def test_unknown_currency_reason_for_xyz() -> None:
    with pytest.raises(UnknownCurrencyError, match=r"^unknown_currency_exponent: XYZ$"):
        exponent("xyz")


def test_not_any_three_letters() -> None:
    assert "USD" in ISO_4217_ACTIVE and "ZWG" in ISO_4217_ACTIVE and "XCG" in ISO_4217_ACTIVE
    assert "QQQ" not in KNOWN_CURRENCIES
    assert exponent("BGN") == 2  # withdrawn 2026 (euro) but still on older provider objects


def test_non_string_currency() -> None:
    with pytest.raises(UnknownCurrencyError, match="unknown_currency_exponent: None"):
        exponent(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("minor", [19.99, 1999.0, True, "1999", Decimal("1999"), None])
def test_to_decimal_rejects_non_int(minor: object) -> None:
    with pytest.raises(TypeError):
        to_decimal(minor, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("19.99"), "USD", 1999),
        (Decimal("1500"), "JPY", 1500),
        (Decimal("1.234"), "KWD", 1234),
        (Decimal("8000"), "jpy", 8000),
        (Decimal("42.00"), "usd", 4200),
        (Decimal("42"), "usd", 4200),
        (Decimal("19.990"), "USD", 1999),  # trailing zeros are not extra decimals
        (Decimal("1.5E+3"), "JPY", 1500),
        (Decimal("-0.01"), "USD", -1),
        (42, "USD", 4200),
    ],
)
def test_to_minor(amount: Decimal, currency: str, expected: int) -> None:
    result = to_minor(amount, currency)
    assert type(result) is int and result == expected


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(Decimal("19.999"), "USD"), (Decimal("1.5"), "JPY"), (Decimal("0.0001"), "KWD"), (Decimal("NaN"), "USD")],
)
def test_to_minor_rejects_extra_decimals(amount: Decimal, currency: str) -> None:
    with pytest.raises(ValueError):
        to_minor(amount, currency)


@pytest.mark.parametrize("amount", [19.99, True, "19.99"])
def test_to_minor_rejects_float(amount: object) -> None:
    with pytest.raises(TypeError):
        to_minor(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD", "CLP", "KRW", "BHD", "ISK"])
@pytest.mark.parametrize("minor", [0, 1, 7, 99, 100, 1999, 4200, 55000, 123456789, -250, 2**63])
def test_round_trip(minor: int, currency: str) -> None:
    assert to_minor(to_decimal(minor, currency), currency) == minor


def test_format_money() -> None:
    assert format_money(1999, "usd") == "19.99 USD"
    assert format_money(1500, "JPY") == "1500 JPY"
    assert format_money(1234, "KWD") == "1.234 KWD"
    assert format_money(4200, "USD") == "42.00 USD"
    assert format_money(1, "USD") == "0.01 USD"
    assert format_money(-5, "USD") == "-0.05 USD"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("19.99", "19.99"), ("1500", "1500"), ("42.00", "42"), ("1.234", "1.234"), ("0.1", "0.1"), ("1E+2", "100")],
)
def test_json_number_is_exact(amount: str, expected: str) -> None:
    import json

    number = json_number(Decimal(amount))
    text = json.dumps(number)
    assert text == expected
    assert json.loads(text, parse_float=Decimal) == Decimal(amount)


def test_json_number_refuses_what_a_double_cannot_hold() -> None:
    with pytest.raises(ValueError):
        json_number(Decimal("12345678901234567.89"))
    with pytest.raises(ValueError):
        json_number(Decimal("Infinity"))
