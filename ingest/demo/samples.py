"""Signed sample deliveries for the form, Shopify, generic inventory and Standard Webhooks sources, built the way each
sender builds them (used by ``hookbus demo`` and ``hookbus send``)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import orjson

from ..sources.forms import FormConfig, hmac_signature
from ..sources.shopify import hmac_header
from ..sources.standard_webhooks import signature_headers
from .base import Webhook

FORM = "application/x-www-form-urlencoded"


def msg_id() -> str:
    """A Standard Webhooks message id in the usual ``msg_…`` form."""
    return "msg_" + secrets.token_urlsafe(18)


def form_webhook(
    label: str,
    form_id: str,
    config: FormConfig,
    secret: str,
    fields: Mapping[str, str | list[str]],
    *,
    as_json: bool = False,
    now: int | None = None,
) -> Webhook:
    """A form post as a form backend relays it: form-encoded (repeated keys for lists) or JSON, signed per the form's
    configured scheme."""
    if as_json:
        body, content_type = orjson.dumps(dict(fields)), "application/json"
    else:
        body, content_type = urlencode(list(fields.items()), doseq=True).encode(), FORM
    headers = {"Content-Type": content_type}
    if config.signature == "standard-webhooks":
        headers |= signature_headers(
            secret, msg_id(), int(time.time()) if now is None else now, body, encoding=config.secret_encoding
        )
    else:
        headers[config.signature_header] = hmac_signature(secret, body)
    return Webhook(label, f"/webhooks/forms/{form_id}", body, headers)


def shopify_webhook(label: str, topic: str, payload: Mapping[str, Any], secret: str, *, shop: str) -> Webhook:
    """A Shopify delivery; Shopify escapes ``/`` in its JSON (``\\/``), reproduced here (case 005)."""
    body = orjson.dumps(dict(payload)).replace(b"/", b"\\/")
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_header(body, secret),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-API-Version": "2026-01",
        "X-Shopify-Triggered-At": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return Webhook(label, "/webhooks/shopify", body, headers)


def inventory_level(
    item_id: int, location_id: int, available: int | None, *, at: float | None = None
) -> dict[str, Any]:
    """A Shopify ``inventory_levels/update`` payload."""
    moment = time.gmtime(time.time() if at is None else at)
    return {
        "inventory_item_id": item_id,
        "location_id": location_id,
        "available": available,
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", moment),
        "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={item_id}",
    }


def standard_webhook(
    label: str, path: str, event_type: str, data: Mapping[str, Any], secret: str, *, at: float | None = None
) -> Webhook:
    """A Standard Webhooks delivery with the spec's recommended payload ``{"type", "timestamp", "data"}``."""
    now = time.time() if at is None else at
    body = orjson.dumps(
        {"type": event_type, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "data": dict(data)}
    )
    headers = {"Content-Type": "application/json"} | signature_headers(secret, msg_id(), int(time.time()), body)
    return Webhook(label, path, body, headers)
