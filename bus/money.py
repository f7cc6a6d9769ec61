"""Money: integer minor units ↔ exact ``Decimal`` amounts, by currency exponent, never through binary floats.

Events carry money as an integer in minor units plus an ISO 4217 code (``{"amount": 1999, "currency": "usd"}``).
How many minor units make one major unit depends on the currency, and the table used here is **Stripe's**, because
Stripe defines what its integers mean (https://docs.stripe.com/currencies#zero-decimal and
https://docs.stripe.com/currencies#three-decimal):

- zero-decimal (exponent 0, ``1500`` JPY is ¥1500): BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF;
- three-decimal (exponent 3, ``1234`` KWD is 1.234 KWD): BHD JOD KWD OMR TND;
- every other known currency: exponent 2 (``1999`` USD is 19.99 USD). This includes ISK, HUF and TWD, which
  Stripe keeps as two-decimal in its API although their amounts must be multiples of 100
  (https://docs.stripe.com/currencies#special-cases).

"Known" means an active ISO 4217 alphabetic code (ISO 4217 list one, https://www.iso.org/iso-4217-currency-codes.html,
maintained by SIX: https://www.six-group.com/en/products-services/financial-information/data-standards.html), or a
recently withdrawn code that still appears on provider objects (BGN became EUR on 2026-01-01; a refund of a 2025
charge still says ``bgn``). Some ISO codes are *not* known here on purpose, because Stripe gives them no exponent
and 2 would be a guess: codes whose ISO exponent is not 2 (IQD, LYD: 3; CLF, UYW: 4; UYI: 0) and codes that have
no minor unit at all (XAU, XAG, XPD, XPT, XBA–XBD, XDR, XSU, XUA, XTS, XXX). An unknown code raises
:class:`UnknownCurrencyError`, a :class:`~bus.errors.PermanentError` with reason
``unknown_currency_exponent: XYZ``, so the entry is dead-lettered instead of being booked 100× wrong (case 018).

Currency codes are accepted in any case (Stripe sends ``"jpy"``) and returned upper-case.
"""

from __future__ import annotations

from decimal import Decimal

from .errors import PermanentError

__all__ = [
    "ISO_4217_ACTIVE",
    "ISO_4217_NO_STRIPE_EXPONENT",
    "ISO_4217_RECENTLY_WITHDRAWN",
    "KNOWN_CURRENCIES",
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "UnknownCurrencyError",
    "exponent",
    "format_money",
    "json_number",
    "normalize_currency",
    "to_decimal",
    "to_minor",
]

#: Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)

#: Stripe's three-decimal currencies (https://docs.stripe.com/currencies#three-decimal).
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

#: Active ISO 4217 alphabetic codes (list one: currencies and funds), as of 2026.
ISO_4217_ACTIVE = frozenset(
    {
        # A–B
        "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN",
        "BAM", "BBD", "BDT", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
        # C–F
        "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK",
        "DJF", "DKK", "DOP", "DZD",
        "EGP", "ERN", "ETB", "EUR",
        "FJD", "FKP",
        # G–L
        "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
        "HKD", "HNL", "HTG", "HUF",
        "IDR", "ILS", "INR", "IQD", "IRR", "ISK",
        "JMD", "JOD", "JPY",
        "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
        "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
        # M–R
        "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN",
        "NAD", "NGN", "NIO", "NOK", "NPR", "NZD",
        "OMR",
        "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
        "QAR",
        "RON", "RSD", "RUB", "RWF",
        # S–Z
        "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
        "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
        "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS",
        "VED", "VES", "VND", "VUV",
        "WST",
        "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF", "XPT", "XSU",
        "XTS", "XUA", "XXX",
        "YER",
        "ZAR", "ZMW", "ZWG",
    }
)  # fmt: skip

#: Withdrawn ISO 4217 codes (all two-decimal) that providers still put on objects created before the change:
#: BGN→EUR (2026), ANG→XCG (2025), ZWL→ZWG (2024), HRK→EUR (2023), SLL→SLE, CUC, VEF→VES, MRO→MRU, and STD→STN
#: (Stripe still names the dobra ``std``).
ISO_4217_RECENTLY_WITHDRAWN = frozenset({"ANG", "BGN", "CUC", "HRK", "MRO", "SLL", "STD", "VEF", "ZWL"})

#: ISO codes for which Stripe's table gives no exponent and 2 would be a guess (see the module docstring).
ISO_4217_NO_STRIPE_EXPONENT = frozenset(
    {"CLF", "IQD", "LYD", "UYI", "UYW"}
    | {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)

#: Every code :func:`exponent` answers for.
KNOWN_CURRENCIES = (ISO_4217_ACTIVE | ISO_4217_RECENTLY_WITHDRAWN) - ISO_4217_NO_STRIPE_EXPONENT


class UnknownCurrencyError(PermanentError):
    """The currency's exponent is not known: dead-letter with reason ``unknown_currency_exponent: XYZ``."""

    def __init__(self, currency: object) -> None:
        code = currency.upper() if isinstance(currency, str) else repr(currency)
        super().__init__(f"unknown_currency_exponent: {code}")
        self.currency = code


def normalize_currency(currency: str) -> str:
    """The upper-case code (``"jpy"`` → ``"JPY"``) if it is known; otherwise raise :class:`UnknownCurrencyError`."""
    if not isinstance(currency, str):
        raise UnknownCurrencyError(currency)
    code = currency.upper()
    if code not in KNOWN_CURRENCIES:
        raise UnknownCurrencyError(currency)
    return code


def exponent(currency: str) -> int:
    """Number of decimal places of one minor unit in Stripe's convention: 0, 2 or 3.

    ``exponent("usd") == 2``, ``exponent("JPY") == 0``, ``exponent("KWD") == 3``; unknown code →
    :class:`UnknownCurrencyError`.
    """
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_decimal(minor: int, currency: str) -> Decimal:
    """Exact major-unit amount of ``minor`` minor units: USD 1999 → ``Decimal("19.99")``, JPY 1500 →
    ``Decimal("1500")``, KWD 1234 → ``Decimal("1.234")``, USD 4200 → ``Decimal("42.00")``.

    The result carries exactly ``exponent(currency)`` decimal places; no arithmetic context, no rounding, any size.
    ``minor`` must be an ``int`` (``bool`` and ``float`` raise ``TypeError``); negative values are allowed.
    """
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor units must be an int, not {type(minor).__name__}")
    places = exponent(currency)
    sign, digits, _ = Decimal(minor).as_tuple()
    return Decimal((sign, digits, -places))


def to_minor(amount: Decimal | int, currency: str) -> int:
    """Integer minor units of an exact amount: ``Decimal("19.99")`` USD → 1999, ``Decimal("8000")`` JPY → 8000.

    ``ValueError`` if the amount has more (non-zero) decimals than the currency's exponent (``Decimal("19.999")``
    USD, ``Decimal("1.5")`` JPY) or is not finite; trailing zeros are fine (``Decimal("19.990")`` USD → 1999).
    ``amount`` must be a ``Decimal`` or an ``int``; ``float`` and ``bool`` raise ``TypeError``.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    places = exponent(currency)
    if isinstance(amount, int):
        return amount * 10**places
    sign, digits, exp = amount.as_tuple()
    if not isinstance(exp, int):  # "n", "N" or "F": NaN, sNaN, Infinity
        raise ValueError(f"amount is not finite: {amount}")
    shift = exp + places
    coefficient = int("".join(map(str, digits)))
    if shift >= 0:
        units = coefficient * 10**shift
    else:
        units, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            raise ValueError(f"{amount} {normalize_currency(currency)} has more than {places} decimal places")
    return -units if sign else units


def format_money(minor: int, currency: str) -> str:
    """Human-readable amount: ``format_money(1999, "usd") == "19.99 USD"``, ``format_money(1500, "JPY") ==
    "1500 JPY"``."""
    return f"{to_decimal(minor, currency):f} {normalize_currency(currency)}"


def json_number(amount: Decimal) -> int | float:
    """A Python number that ``json.dumps`` writes as exactly ``amount`` (for downstream APIs taking JSON numbers).

    An ``int`` when the amount is whole (``Decimal("1500")`` → ``1500``, ``Decimal("42.00")`` → ``42``, never
    ``1500.0``); otherwise ``float(amount)``, whose shortest ``repr`` (what ``json.dumps`` writes) reads back as
    the same decimal whenever the amount has at most 15 significant digits (IEEE 754 doubles round-trip 15 decimal
    digits), e.g. ``Decimal("19.99")`` → ``19.99``. That holds for any realistic amount, and it is checked:
    ``ValueError`` if ``repr(float(amount))`` would not read back as ``amount`` (or the amount is not finite).
    """
    if not amount.is_finite():
        raise ValueError(f"amount is not finite: {amount}")
    if amount == amount.to_integral_value():
        return int(amount)
    number = float(amount)
    if Decimal(repr(number)) != amount:
        raise ValueError(f"{amount} cannot be written exactly as a JSON number (more than 15 significant digits)")
    return number
