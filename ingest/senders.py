"""Sample deliveries for ``hookbus send SOURCE EVENT``: realistic provider payloads, signed like the provider does.

Each source registers a :class:`Sender` in ``SENDERS``; it reads the secret it signs with from the same environment
variable ingest verifies with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from .booking_senders import CalcomSender, CalendlySender, GoogleCalendarSender
from .config import StripeSettings
from .demo.base import Webhook
from .lead_senders import FormSender, InventorySender, ShopifySender, StandardSender
from .sources import stripe_samples
from .sources.stripe import signature_header


class Sender(Protocol):
    """Builds one signed sample delivery of ``event_type`` (one of ``event_types``) with string ``options``."""

    event_types: tuple[str, ...]

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook: ...


class StripeSender:
    """Stripe events like ``stripe trigger`` sends; options ``amount`` (minor units) and ``currency``."""

    event_types = stripe_samples.SUPPORTED_TYPES

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        settings = StripeSettings()
        if not settings.stripe_webhook_secret:
            raise ValueError("STRIPE_WEBHOOK_SECRET is not set (hookbus dev prints the value it uses)")
        amount, currency = int(options.get("amount", "1999")), options.get("currency", "usd")
        if event_type == "customer.created":
            body = stripe_samples.sample(event_type)
        elif event_type == "charge.refunded":
            body = stripe_samples.sample(event_type, amount=amount, amount_refunded=amount, currency=currency)
        else:
            body = stripe_samples.sample(event_type, amount=amount, currency=currency)
        header = signature_header(body, settings.stripe_webhook_secret[0], int(time.time()))
        return Webhook(
            f"stripe {event_type}",
            "/webhooks/stripe",
            body,
            {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"},
        )


#: source name → its sender. Add a source's sender with one line here.
SENDERS: dict[str, Sender] = {
    "stripe": StripeSender(),
    "forms": FormSender(),
    "shopify": ShopifySender(),
    "inventory": InventorySender(),
    "standard": StandardSender(),
    "calendly": CalendlySender(),
    "calcom": CalcomSender(),
    "google-calendar": GoogleCalendarSender(),
}
