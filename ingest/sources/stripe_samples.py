"""Realistic sample Stripe webhook bodies, for ``hookbus send`` and tests.

Shapes follow Stripe's API reference for API version ``2024-06-20``: the event envelope
(https://docs.stripe.com/api/events/object) around a PaymentIntent (https://docs.stripe.com/api/payment_intents/object),
Charge (https://docs.stripe.com/api/charges/object), Invoice (https://docs.stripe.com/api/invoices/object) or Customer
(https://docs.stripe.com/api/customers/object), all in test mode (``livemode: false``).

Every function returns the compact JSON body as ``bytes`` (orjson, UTF-8, non-ASCII unescaped). Amounts are integers
in the currency's minor units (``amount=8000, currency="jpy"`` is ¥8000); currencies are sent lower-case as Stripe
does. Ids are random but shaped like Stripe's (``evt_`` + 24 alphanumerics, ``pi_…``, ``ch_…``, ``in_…``, ``cus_…``)
unless given; ``created`` defaults to now (Unix seconds).
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

__all__ = [
    "API_VERSION",
    "SUPPORTED_TYPES",
    "charge_refunded",
    "charge_succeeded",
    "customer_created",
    "invoice_paid",
    "new_id",
    "payment_intent_succeeded",
    "sample",
]

API_VERSION = "2024-06-20"
DEFAULT_NAME = "Zoë Testperson"
DEFAULT_EMAIL = "zoe.testperson@example.com"

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A random Stripe-like id: ``f"{prefix}_"`` + ``length`` ASCII letters/digits, e.g. ``evt_1PbQ…``."""
    return f"{prefix}_{_token(length)}"


def _token(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _now(created: int | None) -> int:
    return int(time.time()) if created is None else int(created)


def _envelope(event_type: str, obj: dict[str, Any], *, event_id: str | None, created: int) -> bytes:
    event = {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": new_id("req", 14), "idempotency_key": str(uuid.uuid4())},
        "type": event_type,
    }
    return orjson.dumps(event)


def _billing_details(name: str | None, email: str | None) -> dict[str, Any]:
    return {
        "address": {
            "city": None,
            "country": "DE",
            "line1": None,
            "line2": None,
            "postal_code": "10115",
            "state": None,
        },
        "email": email,
        "name": name,
        "phone": None,
    }


def _payment_intent(
    *,
    payment_intent_id: str,
    amount: int,
    currency: str,
    customer_id: str | None,
    email: str | None,
    charge_id: str,
    invoice_id: str | None,
    description: str | None,
    created: int,
) -> dict[str, Any]:
    return {
        "id": payment_intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{payment_intent_id}_secret_{_token(25)}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency.lower(),
        "customer": customer_id,
        "description": description,
        "invoice": invoice_id,
        "last_payment_error": None,
        "latest_charge": charge_id,
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": new_id("pm"),
        "payment_method_configuration_details": {"id": new_id("pmc"), "parent": None},
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": email,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def _charge(
    *,
    charge_id: str,
    payment_intent_id: str | None,
    amount: int,
    amount_refunded: int,
    currency: str,
    customer_id: str | None,
    customer_name: str | None,
    email: str | None,
    invoice_id: str | None,
    description: str | None,
    created: int,
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn"),
        "billing_details": _billing_details(customer_name, email),
        "calculated_statement_descriptor": "HOOKBUS TEST",
        "captured": True,
        "created": created,
        "currency": currency.lower(),
        "customer": customer_id,
        "description": description,
        "destination": None,
        "dispute": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "order": None,
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 32,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": payment_intent_id,
        "payment_method": new_id("pm"),
        "payment_method_details": {
            "card": {
                "amount_authorized": amount,
                "brand": "visa",
                "checks": {"address_line1_check": None, "address_postal_code_check": "pass", "cvc_check": "pass"},
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "extended_authorization": {"status": "disabled"},
                "fingerprint": _token(16),
                "funding": "credit",
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": "4242",
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": "visa",
                "network_token": {"used": False},
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "three_d_secure": None,
                "wallet": None,
            },
            "type": "card",
        },
        "radar_options": {},
        "receipt_email": email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{_token(40)}",
        "refunded": amount_refunded >= amount,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def payment_intent_succeeded(
    *,
    amount: int,
    currency: str,
    payment_intent_id: str | None = None,
    customer_name: str | None = DEFAULT_NAME,
    email: str | None = DEFAULT_EMAIL,
    customer_id: str | None = None,
    charge_id: str | None = None,
    invoice_id: str | None = None,
    description: str | None = "hookbus sample payment",
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """A ``payment_intent.succeeded`` event body.

    A PaymentIntent has no customer name (only ``customer`` and ``receipt_email``), so ``customer_name`` is accepted
    for a uniform signature across builders but does not appear in the body.
    """
    at = _now(created)
    obj = _payment_intent(
        payment_intent_id=payment_intent_id or new_id("pi"),
        amount=amount,
        currency=currency,
        customer_id=customer_id or new_id("cus", 14),
        email=email,
        charge_id=charge_id or new_id("ch"),
        invoice_id=invoice_id,
        description=description,
        created=at,
    )
    return _envelope("payment_intent.succeeded", obj, event_id=event_id, created=at)


def charge_succeeded(
    *,
    amount: int,
    currency: str,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    customer_name: str | None = DEFAULT_NAME,
    email: str | None = DEFAULT_EMAIL,
    customer_id: str | None = None,
    invoice_id: str | None = None,
    description: str | None = "hookbus sample payment",
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """A ``charge.succeeded`` event body; the charge's ``payment_intent`` is ``payment_intent_id`` (random if None)."""
    at = _now(created)
    obj = _charge(
        charge_id=charge_id or new_id("ch"),
        payment_intent_id=payment_intent_id or new_id("pi"),
        amount=amount,
        amount_refunded=0,
        currency=currency,
        customer_id=customer_id or new_id("cus", 14),
        customer_name=customer_name,
        email=email,
        invoice_id=invoice_id,
        description=description,
        created=at,
    )
    return _envelope("charge.succeeded", obj, event_id=event_id, created=at)


def invoice_paid(
    *,
    amount: int,
    currency: str,
    payment_intent_id: str | None = None,
    invoice_id: str | None = None,
    charge_id: str | None = None,
    customer_name: str | None = DEFAULT_NAME,
    email: str | None = DEFAULT_EMAIL,
    customer_id: str | None = None,
    description: str | None = None,
    line_description: str = "hookbus sample item",
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """An ``invoice.paid`` event body: a one-line, one-off invoice paid in full (``amount_paid == amount``)."""
    at = _now(created)
    invoice_id = invoice_id or new_id("in")
    customer_id = customer_id or new_id("cus", 14)
    currency = currency.lower()
    line = {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "amount_excluding_tax": amount,
        "currency": currency,
        "description": line_description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "invoice_item": new_id("ii"),
        "livemode": False,
        "metadata": {},
        "period": {"end": at, "start": at},
        "plan": None,
        "price": {
            "id": new_id("price"),
            "object": "price",
            "active": False,
            "billing_scheme": "per_unit",
            "created": at,
            "currency": currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": new_id("prod", 14),
            "recurring": None,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "one_time",
            "unit_amount": amount,
            "unit_amount_decimal": str(amount),
        },
        "proration": False,
        "proration_details": {"credited_items": None},
        "quantity": 1,
        "subscription": None,
        "tax_amounts": [],
        "tax_rates": [],
        "type": "invoiceitem",
        "unit_amount_excluding_tax": str(amount),
    }
    number = f"{_token(8).upper()}-0001"
    obj = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "DE",
        "account_name": "hookbus test shop",
        "account_tax_ids": None,
        "amount_due": amount,
        "amount_paid": amount,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "application_fee_amount": None,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_reason": "manual",
        "charge": charge_id or new_id("ch"),
        "collection_method": "charge_automatically",
        "created": at,
        "currency": currency,
        "custom_fields": None,
        "customer": customer_id,
        "customer_address": None,
        "customer_email": email,
        "customer_name": customer_name,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discount": None,
        "discounts": [],
        "due_date": None,
        "effective_at": at,
        "ending_balance": 0,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_{_token(16)}/test_{_token(40)}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_{_token(16)}/test_{_token(40)}/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [line],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": number,
        "on_behalf_of": None,
        "paid": True,
        "paid_out_of_band": False,
        "payment_intent": payment_intent_id or new_id("pi"),
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": at,
        "period_start": at,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "quote": None,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "paid",
        "status_transitions": {
            "finalized_at": at,
            "marked_uncollectible_at": None,
            "paid_at": at,
            "voided_at": None,
        },
        "subscription": None,
        "subscription_details": {"metadata": None},
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "tax": None,
        "test_clock": None,
        "total": amount,
        "total_discount_amounts": [],
        "total_excluding_tax": amount,
        "total_tax_amounts": [],
        "transfer_data": None,
        "webhooks_delivered_at": at,
    }
    return _envelope("invoice.paid", obj, event_id=event_id, created=at)


def charge_refunded(
    *,
    amount: int,
    amount_refunded: int,
    currency: str,
    charge_id: str | None = None,
    payment_intent_id: str | None = None,
    customer_name: str | None = DEFAULT_NAME,
    email: str | None = DEFAULT_EMAIL,
    customer_id: str | None = None,
    description: str | None = "hookbus sample payment",
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """A ``charge.refunded`` event body; ``amount_refunded`` is cumulative over all refunds of the charge.

    ``refunded`` is true once ``amount_refunded >= amount``. As of API 2022-11-15 the charge no longer embeds its
    ``refunds`` list, so none is included.
    """
    at = _now(created)
    obj = _charge(
        charge_id=charge_id or new_id("ch"),
        payment_intent_id=payment_intent_id or new_id("pi"),
        amount=amount,
        amount_refunded=amount_refunded,
        currency=currency,
        customer_id=customer_id or new_id("cus", 14),
        customer_name=customer_name,
        email=email,
        invoice_id=None,
        description=description,
        created=at - 3600,
    )
    return _envelope("charge.refunded", obj, event_id=event_id, created=at)


def customer_created(
    *,
    customer_id: str | None = None,
    name: str | None = DEFAULT_NAME,
    email: str | None = DEFAULT_EMAIL,
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """A ``customer.created`` event body (a type hookbus does not normalize)."""
    at = _now(created)
    obj = {
        "id": customer_id or new_id("cus", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": at,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": email,
        "invoice_prefix": new_id("", 8)[1:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    return _envelope("customer.created", obj, event_id=event_id, created=at)


_BUILDERS: dict[str, Callable[..., bytes]] = {
    "payment_intent.succeeded": payment_intent_succeeded,
    "charge.succeeded": charge_succeeded,
    "invoice.paid": invoice_paid,
    "charge.refunded": charge_refunded,
    "customer.created": customer_created,
}

#: Stripe event types :func:`sample` can build.
SUPPORTED_TYPES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def sample(event_type: str, **kwargs: Any) -> bytes:
    """The body of a sample Stripe event of ``event_type`` (Stripe's name, e.g. ``"invoice.paid"``).

    ``kwargs`` go to the matching builder above. Raises ValueError for a type without a builder.
    """
    try:
        builder = _BUILDERS[event_type]
    except KeyError:
        raise ValueError(
            f"no sample for Stripe event type {event_type!r}; supported: {', '.join(SUPPORTED_TYPES)}"
        ) from None
    return builder(**kwargs)
