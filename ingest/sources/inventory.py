"""Stock levels from any inventory system that signs the Standard Webhooks way: ``POST /webhooks/inventory``.

For ERPs, warehouse systems and POS tools other than Shopify. Signed as in :mod:`ingest.sources.standard_webhooks`
with ``INVENTORY_WEBHOOK_SECRET`` (``whsec_…``, comma-separated during a rotation, or ``…_FILE``); ``webhook-id``
is the dedupe id. The payload follows the spec's recommended shape
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#payload-structure)::

    {
      "type": "inventory.level_changed",
      "timestamp": "2026-03-02T09:15:00Z",
      "data": {
        "sku": "MUG-11OZ",            # the SKU, and/or
        "item_id": "4471",            # the system's own item id (at least one of the two)
        "location_id": "main",        # optional: "default"
        "available": 7,               # integer units available (may be negative when oversold)
        "updated_at": "2026-03-02T09:14:58Z"   # optional: when the level was true (else "timestamp")
      }
    }

→ ``inventory.level_changed`` with ``{"sku", "item_id", "location_id", "available", "updated_at", "system"}``
(``system`` is ``data.system`` if sent, else ``"inventory"``), subject the SKU (or item id), time ``updated_at``.
Other ``type`` values are answered 200 ``ignored``.

Settings: ``INVENTORY_WEBHOOK_SECRET``, ``INVENTORY_TOLERANCE_S`` (300), ``INVENTORY_MAX_BODY_BYTES`` (256 KiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import field_validator

from bus.config import HookbusSettings
from bus.envelope import Event, from_unix
from ingest.config import Secrets, split_secrets

from .base import Delivery, PayloadError
from .generic import load_object, rfc3339_or_none
from .standard_webhooks import StandardWebhooksVerifier

__all__ = ["EVENT_TYPE", "InventorySettings", "InventorySource", "from_env", "normalize_level"]

EVENT_TYPE = "inventory.level_changed"
DEFAULT_MAX_BODY_BYTES = 256 * 1024


class InventorySettings(HookbusSettings):
    """- ``INVENTORY_WEBHOOK_SECRET``: ``whsec_…`` secret(s) of the generic inventory endpoint.
    - ``INVENTORY_TOLERANCE_S``: the replay window; ``INVENTORY_MAX_BODY_BYTES``: the body limit."""

    inventory_webhook_secret: Secrets = ()
    inventory_tolerance_s: int = 300
    inventory_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    _split = field_validator("inventory_webhook_secret", mode="before")(split_secrets)


def _ref(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"inventory {key!r} must be a string or an integer")
    return str(value).strip() or None


def normalize_level(data: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical ``inventory.level_changed`` data of a sender's ``data`` object. Raises :class:`PayloadError`."""
    sku, item_id = _ref(data, "sku"), _ref(data, "item_id")
    if sku is None and item_id is None:
        raise PayloadError("inventory level needs a 'sku' or an 'item_id'")
    available = data.get("available")
    if isinstance(available, bool) or not isinstance(available, int):
        raise PayloadError("inventory 'available' must be an integer")
    system = data.get("system")
    return {
        "sku": sku,
        "item_id": item_id,
        "location_id": _ref(data, "location_id") or "default",
        "available": available,
        "updated_at": rfc3339_or_none(data.get("updated_at")),
        "system": system if isinstance(system, str) and system else "inventory",
    }


class InventorySource:
    """The generic, Standard-Webhooks-signed inventory endpoint."""

    name = "inventory"

    def __init__(
        self, secrets: tuple[str, ...], *, tolerance_s: int = 300, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ) -> None:
        self.verifier = StandardWebhooksVerifier(secrets, tolerance_s=tolerance_s)
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"InventorySource({self.verifier!r})"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        self.verifier.verify(headers, body, now)

    def signed_at(self, headers: Mapping[str, str]) -> float:
        return float(self.verifier.message(headers).timestamp)

    def parse(self, body: bytes) -> Delivery:
        raise PayloadError("inventory deliveries need their headers (webhook-id)")

    def parse_request(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        message = self.verifier.message(headers)
        payload = load_object(body)
        sender_type = payload.get("type")
        if not isinstance(sender_type, str) or not sender_type:
            raise PayloadError("payload lacks a string 'type'")
        if sender_type != EVENT_TYPE:
            return Delivery(event_id=message.msg_id, provider_type=sender_type)
        raw = payload.get("data")
        if not isinstance(raw, dict):
            raise PayloadError("payload 'data' must be an object")
        data = normalize_level(raw)
        when = data["updated_at"] or rfc3339_or_none(payload.get("timestamp")) or from_unix(message.timestamp)
        event = Event(
            id=message.msg_id,
            source=self.name,
            type=EVENT_TYPE,
            time=when,
            data=data,
            subject=data["sku"] or data["item_id"],
        )
        return Delivery(event_id=message.msg_id, provider_type=sender_type, events=(event,))


def from_env() -> list[InventorySource]:
    """The generic inventory source if ``INVENTORY_WEBHOOK_SECRET`` is set."""
    settings = InventorySettings()
    if not settings.inventory_webhook_secret:
        return []
    return [
        InventorySource(
            settings.inventory_webhook_secret,
            tolerance_s=settings.inventory_tolerance_s,
            max_body_bytes=settings.inventory_max_body_bytes,
        )
    ]
