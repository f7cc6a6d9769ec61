"""Stripe webhooks: signature verification and normalization into canonical events.

Signature scheme (https://docs.stripe.com/webhooks#verify-manually)::

    Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=<hex>]

``v1`` is the lower-case hex HMAC-SHA256 of ``b"<t>." + raw body`` keyed with the UTF-8 bytes of the whole endpoint
secret (``whsec_…``), exactly as stripe-python computes it. During a secret roll Stripe sends one ``v1`` per active
secret, so every ``v1`` is kept and checked against every configured secret (case 002); ``v0`` and unknown schemes are
ignored (never accepted in place of ``v1``).

Replay window: a delivery whose ``t`` is more than ``tolerance_s`` seconds older than the receiver clock is rejected
(exactly ``tolerance_s`` old is accepted). A ``t`` in the *future* is accepted, as stripe-python does (case 003,
item 3); the app counts the skew from what :meth:`StripeSource.verify` returns.

Normalization (https://docs.stripe.com/api/events/types):

- ``payment_intent.succeeded``, ``charge.succeeded``, ``invoice.paid`` → ``payment.succeeded``. One payment can reach
  the endpoint as any subset of these three, in any order, so all three carry the same ``subject``: the PaymentIntent
  id (``pi_…``), falling back to the charge / invoice id when there is no PaymentIntent.
- ``charge.refunded`` → ``payment.refunded`` with subject the charge id and the *cumulative* ``amount_refunded``
  (case 020: the consumer books the delta).
- anything else → a :class:`~ingest.sources.base.Delivery` without events.

Amounts are integers in the currency's minor units exactly as Stripe sends them (zero-decimal currencies such as JPY
are already whole units, case 018); currencies are upper-cased ISO 4217 codes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bus.envelope import Event, from_unix

from .base import (
    Delivery,
    PayloadError,
    SignatureError,
    check_timestamped_hmac,
    header_value,
    hmac_sha256,
    hmac_sha256_hex,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_S",
    "PAYMENT_SUCCEEDED_TYPES",
    "SIGNATURE_HEADER",
    "StripeSource",
    "signature_header",
    "timestamp_of",
]

SIGNATURE_HEADER = "Stripe-Signature"
DEFAULT_TOLERANCE_S = 300
DEFAULT_MAX_BODY_BYTES = 1_048_576
EXPECTED_SCHEME = "v1"

#: Stripe event types that all mean "this payment succeeded".
PAYMENT_SUCCEEDED_TYPES = frozenset({"payment_intent.succeeded", "charge.succeeded", "invoice.paid"})

_DIGITS = re.compile(r"[0-9]{1,12}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _parse_header(value: str) -> tuple[int, list[str]]:
    """Split a ``Stripe-Signature`` value into ``(t, [every v1 signature])``. Raises :class:`SignatureError`.

    Items are ``key=value`` separated by commas; ``t`` must appear exactly once as an ASCII integer (Unix seconds).
    Items with another scheme (``v0``) or without ``=`` are ignored.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, item_value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(item_value)
        elif key == EXPECTED_SCHEME:
            signatures.append(item_value)
    if len(timestamps) != 1:
        raise SignatureError("Stripe-Signature header needs exactly one t= timestamp")
    if not _DIGITS.fullmatch(timestamps[0]):
        raise SignatureError("Stripe-Signature timestamp is not an integer")
    return int(timestamps[0]), signatures


def timestamp_of(header_value: str) -> int:
    """The ``t`` (Unix seconds) of a ``Stripe-Signature`` value. Raises :class:`SignatureError` if unparsable.

    ``t - now`` > 0 means the sender's clock is ahead; :meth:`StripeSource.verify` returns the same value.
    """
    return _parse_header(header_value)[0]


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` value (``t=<timestamp>,v1=<hex>``) for ``body`` signed with ``secret``.

    Same output as stripe-python's ``WebhookSignature.generate_signature_header``; used by ``hookbus send`` and tests.
    """
    signed = f"{int(timestamp)}.".encode() + body
    return f"t={int(timestamp)},{EXPECTED_SCHEME}={hmac_sha256_hex(secret.encode('utf-8'), signed)}"


class StripeSource:
    """Stripe webhook source.

    - ``secrets``: the endpoint signing secrets (``whsec_…``) currently active; several during a rotation.
    - ``tolerance_s``: replay window in seconds (default 300, Stripe's); must be positive.
    - ``max_body_bytes``: request body limit in bytes (default 1 MiB), enforced by the app before verification.
    """

    name = "stripe"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if isinstance(secrets, str):
            raise ValueError("secrets must be a sequence of strings, not a single string")
        keys = tuple(secret.encode("utf-8") for secret in secrets if isinstance(secret, str) and secret.strip())
        if not keys:
            raise ValueError("StripeSource needs at least one signing secret")
        if len(keys) != len(secrets):
            raise ValueError("every Stripe signing secret must be a non-empty string")
        if tolerance_s <= 0:
            raise ValueError("tolerance_s must be a positive number of seconds")
        if max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self._keys = keys
        self._macs = tuple(hmac_sha256(key) for key in keys)
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"StripeSource(secrets=<{len(self._keys)} hidden>, tolerance_s={self.tolerance_s})"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> float:
        """Check ``Stripe-Signature`` over the raw ``body`` at Unix time ``now`` (seconds). Raises SignatureError.

        Every configured secret × every ``v1`` in the header is compared in constant time; the signature is checked
        before the age, so a stale-timestamp message is only given for an authentic delivery. Returns the header's
        ``t`` (Unix seconds), which may lie in the future (see the module doc).
        """
        value = header_value(headers, SIGNATURE_HEADER)
        if not value:
            raise SignatureError("missing Stripe-Signature header")
        timestamp, candidates = _parse_header(value)
        if not candidates:
            raise SignatureError("no v1 signature in Stripe-Signature header")
        check_timestamped_hmac(self._macs, timestamp, candidates, body, now, self.tolerance_s, what="Stripe")
        return float(timestamp)

    def signed_at(self, headers: Mapping[str, str]) -> float:
        """The ``t=`` of a verified delivery's ``Stripe-Signature`` (Unix seconds)."""
        return float(timestamp_of(header_value(headers, SIGNATURE_HEADER) or ""))

    def parse(self, body: bytes, *, received_at: float | None = None) -> Delivery:
        """Normalize a verified Stripe event body. Raises PayloadError.

        ``id`` and ``type`` are always required; the object (``data.object``) only for handled types. The event time
        is the event's ``created`` (Unix seconds), else the object's ``created``, else ``received_at`` (Unix seconds,
        default: now), since minimal test events (case 001) carry no ``created`` at all.
        """
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"Stripe body is not valid JSON: {exc}") from None
        if not isinstance(event, dict):
            raise PayloadError("Stripe body is not a JSON object")
        event_id = _required_str(event, "id", "event")
        event_type = _required_str(event, "type", "event")
        if event_type in PAYMENT_SUCCEEDED_TYPES:
            kind = "payment.succeeded"
        elif event_type == "charge.refunded":
            kind = "payment.refunded"
        else:
            return Delivery(event_id=event_id, provider_type=event_type, events=())

        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise PayloadError(f"Stripe event {event_type} lacks the object data.object")
        livemode = _livemode(event, obj)
        if kind == "payment.succeeded":
            subject, payload = _payment_succeeded(event_type, obj, livemode)
        else:
            subject, payload = _payment_refunded(obj, livemode)
        canonical = Event(
            id=event_id,
            source=self.name,
            type=kind,
            time=_rfc3339(_created(event, obj, received_at)),
            data=payload,
            subject=subject,
        )
        return Delivery(event_id=event_id, provider_type=event_type, events=(canonical,))


# --- normalization helpers -------------------------------------------------------------------------------------------


def _required_str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"Stripe {what} lacks a string {key!r}")
    return value


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"Stripe field {key!r} must be a string or null")
    return value or None


def _id_of(value: Any, key: str) -> str | None:
    """An expandable reference: a string id, an expanded object ``{"id": …}``, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"] or None
    raise PayloadError(f"Stripe field {key!r} must be an id, an expanded object or null")


def _amount(obj: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    """An integer amount in minor units (bool, float and str are rejected); ``None`` only when optional and absent."""
    value = obj.get(key)
    if value is None and not required:
        return None
    if type(value) is not int:
        raise PayloadError(f"Stripe amount {key!r} must be an integer number of minor units, got {value!r}")
    if value < 0:
        raise PayloadError(f"Stripe amount {key!r} is negative")
    return value


def _currency(obj: Mapping[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise PayloadError(f"Stripe currency must be a 3-letter ISO 4217 code, got {value!r}")
    return value.upper()


def _livemode(event: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    for holder in (event, obj):
        value = holder.get("livemode")
        if value is None:
            continue
        if not isinstance(value, bool):
            raise PayloadError("Stripe livemode must be a boolean")
        return value
    return False


#: 9999-12-31T23:59:59Z: the last whole second :func:`bus.envelope.from_unix` can format.
_LAST_RFC3339_S = 253_402_300_799


def _rfc3339(seconds: int | float) -> str:
    """:func:`bus.envelope.from_unix`, the same text; whole seconds (Stripe's ``created``) at half the cost."""
    if type(seconds) is int and 0 <= seconds <= _LAST_RFC3339_S:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))
    return from_unix(seconds)


def _created(event: Mapping[str, Any], obj: Mapping[str, Any], received_at: float | None) -> int | float:
    for holder in (event, obj):
        value = holder.get("created")
        if value is None:
            continue
        if type(value) is not int or value < 0:
            raise PayloadError(f"Stripe created must be a Unix time in whole seconds, got {value!r}")
        return value
    return time.time() if received_at is None else received_at


def _customer(customer: Any, name: Any, email: Any) -> dict[str, str]:
    """``{"id", "name", "email"}`` with whatever is present (a customer may be an id or an expanded object)."""
    result: dict[str, str] = {}
    if isinstance(customer, dict):
        name = name if name is not None else customer.get("name")
        email = email if email is not None else customer.get("email")
    customer_id = _id_of(customer, "customer")
    if customer_id:
        result["id"] = customer_id
    for key, value in (("name", name), ("email", email)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise PayloadError(f"Stripe customer {key} must be a string")
        if value:
            result[key] = value
    return result


def _invoice_payment_intent(invoice: Mapping[str, Any]) -> str | None:
    """``invoice.payment_intent`` (API < 2025-03-31) or ``invoice.payments.data[0].payment.payment_intent``."""
    direct = _id_of(invoice.get("payment_intent"), "payment_intent")
    if direct:
        return direct
    payments = invoice.get("payments")
    rows = payments.get("data") if isinstance(payments, dict) else None
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        payment = rows[0].get("payment")
        if isinstance(payment, dict):
            return _id_of(payment.get("payment_intent"), "payments.data[0].payment.payment_intent")
    return None


def _payment_succeeded(event_type: str, obj: Mapping[str, Any], livemode: bool) -> tuple[str, dict[str, Any]]:
    object_id = _required_str(obj, "id", "object")
    if event_type == "payment_intent.succeeded":
        stripe_object = "payment_intent"
        payment_intent = object_id
        received = _amount(obj, "amount_received", required=False)
        amount = received or _amount(obj, "amount")
        customer = _customer(obj.get("customer"), None, obj.get("receipt_email"))
        invoice_id = _id_of(obj.get("invoice"), "invoice")
        charge_id = _id_of(obj.get("latest_charge"), "latest_charge")
    elif event_type == "charge.succeeded":
        stripe_object = "charge"
        payment_intent = _id_of(obj.get("payment_intent"), "payment_intent")
        captured = _amount(obj, "amount_captured", required=False)
        amount = captured or _amount(obj, "amount")
        billing = obj.get("billing_details")
        billing = billing if isinstance(billing, dict) else {}
        customer = _customer(obj.get("customer"), billing.get("name"), billing.get("email"))
        invoice_id = _id_of(obj.get("invoice"), "invoice")
        charge_id = object_id
    else:  # invoice.paid
        stripe_object = "invoice"
        payment_intent = _invoice_payment_intent(obj)
        amount = _amount(obj, "amount_paid")
        customer = _customer(obj.get("customer"), obj.get("customer_name"), obj.get("customer_email"))
        invoice_id = object_id
        charge_id = _id_of(obj.get("charge"), "charge")
    subject = payment_intent or object_id
    data: dict[str, Any] = {
        "payment_id": subject,
        "amount": amount,
        "currency": _currency(obj),
        "customer": customer,
        "description": _optional_str(obj, "description"),
        "invoice_id": invoice_id,
        "charge_id": charge_id,
        "stripe_object": stripe_object,
        "stripe_object_id": object_id,
        "livemode": livemode,
    }
    return subject, data


def _payment_refunded(charge: Mapping[str, Any], livemode: bool) -> tuple[str, dict[str, Any]]:
    charge_id = _required_str(charge, "id", "charge")
    amount = _amount(charge, "amount")
    amount_refunded = _amount(charge, "amount_refunded")
    refunded = charge.get("refunded")
    if refunded is None:
        refunded = amount_refunded is not None and amount is not None and amount_refunded >= amount
    elif not isinstance(refunded, bool):
        raise PayloadError("Stripe charge.refunded must be a boolean")
    billing = charge.get("billing_details")
    billing = billing if isinstance(billing, dict) else {}
    data: dict[str, Any] = {
        "payment_id": _id_of(charge.get("payment_intent"), "payment_intent") or charge_id,
        "charge_id": charge_id,
        "amount": amount,
        "amount_refunded": amount_refunded,
        "refunded": refunded,
        "currency": _currency(charge),
        "customer": _customer(charge.get("customer"), billing.get("name"), billing.get("email")),
        "livemode": livemode,
    }
    return charge_id, data


def from_env() -> list[StripeSource]:
    """The Stripe source if ``STRIPE_WEBHOOK_SECRET`` is set (see :class:`ingest.config.StripeSettings`)."""
    from ingest.config import StripeSettings

    settings = StripeSettings()
    if not settings.stripe_webhook_secret:
        return []
    return [
        StripeSource(
            settings.stripe_webhook_secret,
            tolerance_s=settings.stripe_tolerance_s,
            max_body_bytes=settings.stripe_max_body_bytes,
        )
    ]
