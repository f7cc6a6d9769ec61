"""Shopify webhooks: ``POST /webhooks/shopify``.

Signature (https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook-to-
ensure-its-coming-from-shopify)::

    X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(app client secret, raw body))

The digest is **base64**, not hex (Shopify's OAuth HMAC is hex: the two are easy to mix up), and it covers the raw
bytes: Shopify's JSON escapes ``/`` and ``&`` (``\\/``, ``\\u0026``), so a parsed and re-serialized body never
verifies (shared case 005). Every configured secret is tried, compared in constant time (the client secret can be
rotated). The scheme has no timestamp, hence no replay window: duplicates are dropped by ``X-Shopify-Webhook-Id``,
the same on every retry of one delivery (https://shopify.dev/docs/apps/build/webhooks/ignore-duplicates).

The topic comes from ``X-Shopify-Topic``:

- ``inventory_levels/update`` (https://shopify.dev/docs/api/webhooks?reference=toml#list-topics-inventory_levels/update)
  → ``inventory.level_changed``: ``{"sku": null, "item_id": "<inventory_item_id>", "location_id": "<id>",
  "available": 6, "updated_at": …, "system": "shopify", "shop": "<shop>.myshopify.com"}``, subject the item id, time
  the level's ``updated_at``. Shopify's payload names the inventory item, not its SKU: the inventory rules map item
  ids to SKUs (``item_ids`` in ``[inventory.items.<SKU>]``). A level with ``available: null`` (untracked) is ignored.
- ``orders/create`` → ``order.created`` (only when listed in ``[sources.shopify] topics``, so nothing accumulates
  on a stream no consumer reads): order id as a string (Shopify ids exceed 2^53 and are never passed through a
  float), ``name``, ``email``, ``note``, ``landing_site`` (escapes decoded, after verification), ``currency``,
  ``total_minor`` (minor units; ``null`` without a currency), ``line_items`` (``sku``, ``quantity``).
- any other topic → 200 ``ignored``.

Settings: ``SHOPIFY_WEBHOOK_SECRET`` (comma-separated for rotation, or ``SHOPIFY_WEBHOOK_SECRET_FILE``),
``SHOPIFY_MAX_BODY_BYTES`` (default 2 MiB); rules: ``[sources.shopify] topics = [...]`` (default
``["inventory_levels/update"]``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, field_validator

from bus import rules
from bus.config import HookbusSettings
from bus.envelope import Event, from_unix, rfc3339
from bus.errors import PermanentError
from bus.money import normalize_currency, to_minor
from ingest.config import Secrets, split_secrets

from .base import Delivery, PayloadError, SignatureError, header_value

__all__ = [
    "HMAC_HEADER",
    "SUPPORTED_TOPICS",
    "ShopifyRules",
    "ShopifySettings",
    "ShopifySource",
    "from_env",
    "hmac_header",
]

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
SHOP_HEADER = "X-Shopify-Shop-Domain"
TRIGGERED_AT_HEADER = "X-Shopify-Triggered-At"

#: Topic → canonical event type, for the topics hookbus normalizes.
SUPPORTED_TOPICS = {"inventory_levels/update": "inventory.level_changed", "orders/create": "order.created"}
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024


class ShopifySettings(HookbusSettings):
    """- ``SHOPIFY_WEBHOOK_SECRET``: the app's client secret(s), comma-separated during a rotation.
    - ``SHOPIFY_MAX_BODY_BYTES``: larger bodies get 413 before any of them is verified."""

    shopify_webhook_secret: Secrets = ()
    shopify_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    _split = field_validator("shopify_webhook_secret", mode="before")(split_secrets)


class ShopifyRules(BaseModel):
    """``[sources.shopify]``: which topics are published (default: inventory levels only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: tuple[str, ...] = ("inventory_levels/update",)

    @field_validator("topics")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SUPPORTED_TOPICS))
        if unknown:
            raise ValueError(f"unsupported topic(s) {unknown}; supported: {sorted(SUPPORTED_TOPICS)}")
        return value


def hmac_header(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value Shopify sends for ``body`` (base64 of the HMAC-SHA256 digest)."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


class ShopifySource:
    """Shopify webhook source. ``secrets``: the app client secret(s); ``topics``: the topics published."""

    name = "shopify"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        topics: Sequence[str] = ("inventory_levels/update",),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secrets, str):
            raise ValueError("secrets must be a sequence of strings, not a single string")
        keys = tuple(s.encode("utf-8") for s in secrets if isinstance(s, str) and s.strip())
        if not keys or len(keys) != len(secrets):
            raise ValueError("ShopifySource needs at least one non-empty secret")
        if max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self._keys = keys
        self.topics = frozenset(topics)
        self.max_body_bytes = max_body_bytes
        self._clock = clock

    def __repr__(self) -> str:
        return f"ShopifySource(secrets=<{len(self._keys)} hidden>, topics={sorted(self.topics)})"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check ``X-Shopify-Hmac-Sha256`` over the raw body against every secret. Raises SignatureError."""
        value = header_value(headers, HMAC_HEADER)
        if not value:
            raise SignatureError(f"missing {HMAC_HEADER} header")
        received = value.strip().encode("utf-8", "replace")
        found = False
        for key in self._keys:
            expected = base64.b64encode(hmac.new(key, bytes(body), hashlib.sha256).digest())
            found |= hmac.compare_digest(expected, received)
        if not found:
            raise SignatureError(f"{HMAC_HEADER} does not match the payload (base64 HMAC-SHA256 of the raw body)")

    def parse(self, body: bytes) -> Delivery:
        raise PayloadError("Shopify deliveries need their headers (topic, webhook id)")

    def parse_request(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        webhook_id = (header_value(headers, WEBHOOK_ID_HEADER) or "").strip()
        topic = (header_value(headers, TOPIC_HEADER) or "").strip()
        if not webhook_id or len(webhook_id) > 256 or not webhook_id.isprintable():
            raise PayloadError(f"missing or invalid {WEBHOOK_ID_HEADER} header")
        if not topic:
            raise PayloadError(f"missing {TOPIC_HEADER} header")
        kind = SUPPORTED_TOPICS.get(topic)
        if kind is None or topic not in self.topics:
            return Delivery(event_id=webhook_id, provider_type=topic)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"Shopify body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise PayloadError("Shopify body is not a JSON object")
        shop = (header_value(headers, SHOP_HEADER) or "").strip() or None
        fallback = _time(header_value(headers, TRIGGERED_AT_HEADER)) or from_unix(self._clock())
        if kind == "inventory.level_changed":
            data = _inventory_level(payload, shop)
            if data is None:
                return Delivery(event_id=webhook_id, provider_type=topic)
            subject, when = data["item_id"], _time(payload.get("updated_at")) or fallback
        else:
            data = _order(payload, shop)
            subject, when = data["order_id"], _time(payload.get("created_at")) or fallback
        event = Event(id=webhook_id, source=self.name, type=kind, time=when, data=data, subject=subject)
        return Delivery(event_id=webhook_id, provider_type=topic, events=(event,))


def _time(value: Any) -> str | None:
    """RFC 3339 (offset kept) of an ISO 8601 time with offset, or None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return rfc3339(moment)


def _id(payload: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if isinstance(value, bool) or value is None or value == "":
        if required:
            raise PayloadError(f"Shopify payload lacks {key!r}")
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise PayloadError(f"Shopify {key!r} must be an integer or a string id")


def _inventory_level(payload: Mapping[str, Any], shop: str | None) -> dict[str, Any] | None:
    item_id = _id(payload, "inventory_item_id")
    location_id = _id(payload, "location_id")
    available = payload.get("available")
    if available is None:
        return None  # the item's inventory is not tracked at this location
    if isinstance(available, bool) or not isinstance(available, int):
        raise PayloadError("Shopify 'available' must be an integer or null")
    return {
        "sku": None,
        "item_id": item_id,
        "location_id": location_id,
        "available": available,
        "updated_at": _time(payload.get("updated_at")),
        "system": "shopify",
        "shop": shop,
    }


def _order(payload: Mapping[str, Any], shop: str | None) -> dict[str, Any]:
    order_id = _id(payload, "id")
    raw_currency = payload.get("currency")
    currency = raw_currency.upper() if isinstance(raw_currency, str) and raw_currency else None
    total = payload.get("total_price")
    total_minor = None
    if currency and isinstance(total, str | int) and not isinstance(total, bool):
        try:
            total_minor = to_minor(Decimal(str(total)), normalize_currency(currency))
        except PermanentError:
            total_minor = None  # a currency without a known exponent: the amount is not guessed (case 018)
        except (InvalidOperation, ValueError) as exc:
            raise PayloadError(f"Shopify total_price {total!r} {currency} is not an amount: {exc}") from None
    lines = payload.get("line_items")
    line_items = [
        {
            "sku": line.get("sku") or None,
            "quantity": line.get("quantity"),
            "variant_id": _id(line, "variant_id", required=False),
            "title": line.get("title"),
        }
        for line in (lines if isinstance(lines, list) else [])
        if isinstance(line, dict)
    ]

    def text(key: str) -> str | None:
        value = payload.get(key)
        return value if isinstance(value, str) and value else None

    return {
        "order_id": order_id,
        "name": text("name"),
        "email": text("email"),
        "note": text("note"),
        "landing_site": text("landing_site"),
        "currency": currency,
        "total_minor": total_minor,
        "line_items": line_items,
        "system": "shopify",
        "shop": shop,
    }


def from_env() -> list[ShopifySource]:
    """The Shopify source if ``SHOPIFY_WEBHOOK_SECRET`` is set."""
    settings = ShopifySettings()
    if not settings.shopify_webhook_secret:
        return []
    topics = rules.section("sources.shopify", ShopifyRules).topics
    return [
        ShopifySource(settings.shopify_webhook_secret, topics=topics, max_body_bytes=settings.shopify_max_body_bytes)
    ]
