"""``hookbus send`` senders for the form, Shopify, generic inventory and Standard Webhooks sources.

Each signs with the secret ingest verifies with (the same environment variables and rules file)::

    hookbus send forms lead -o form=contact -o email=pat@example.com -o services=cleaning,windows
    hookbus send forms spam                                   # fills the form's honeypot
    hookbus send shopify inventory_levels/update -o available=7
    hookbus send inventory inventory.level_changed -o sku=BEANS-1KG -o available=3
    hookbus send standard registrant.created -o source=webinar -o email=alex@example.com
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bus import rules
from bus.errors import ConfigError

from .demo.base import Webhook
from .demo.samples import form_webhook, inventory_level, shopify_webhook, standard_webhook
from .sources.env import secrets_from_env
from .sources.forms import forms_config
from .sources.generic import StandardSourcesSection
from .sources.inventory import InventorySettings
from .sources.shopify import ShopifySettings

__all__ = ["FormSender", "InventorySender", "ShopifySender", "StandardSender"]

_LEAD_FIELDS = (
    "name",
    "email",
    "phone",
    "company",
    "message",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "referrer",
    "page_url",
)


class FormSender:
    """A form post to ``forms/<form>`` (option ``form``, default: the first configured form). Options: the lead's
    fields (``email``, ``name``, ``phone``, ``company``, ``message``, ``utm_*``, ``referrer``), ``services``
    (comma-separated, a repeated field), ``format`` (``form`` or ``json``)."""

    event_types = ("lead", "spam")

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        configured = forms_config()
        if not configured:
            raise ValueError("no form is configured ([sources.forms.<form_id>] in the rules file)")
        form_id = options.get("form") or next(iter(configured))
        if form_id not in configured:
            raise ValueError(f"no form {form_id!r}; configured: {', '.join(configured)}")
        config = configured[form_id]
        secrets = secrets_from_env(config.secret_env)
        if not secrets:
            raise ValueError(f"{config.secret_env} is not set (hookbus dev prints the value it uses)")
        fields: dict[str, str | list[str]] = {"name": "Pat Example", "email": "pat@example.com"}
        fields |= {key: options[key] for key in _LEAD_FIELDS if key in options}
        if "services" in options:
            fields["services"] = [s.strip() for s in options["services"].split(",") if s.strip()]
        honeypot = config.honeypot or "website"
        fields[honeypot] = "http://spam.example" if event_type == "spam" else ""
        return form_webhook(
            f"forms/{form_id} {event_type}",
            form_id,
            config,
            secrets[0],
            fields,
            as_json=options.get("format") == "json",
        )


class ShopifySender:
    """Shopify deliveries. ``inventory_levels/update``: options ``item_id``, ``location_id``, ``available``;
    ``orders/create``: ``order_id``, ``email``, ``total_price``, ``currency``, ``note``."""

    event_types = ("inventory_levels/update", "orders/create")

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        settings = ShopifySettings()
        if not settings.shopify_webhook_secret:
            raise ValueError("SHOPIFY_WEBHOOK_SECRET is not set (hookbus dev prints the value it uses)")
        shop = options.get("shop", "hookbus-dev.myshopify.com")
        if event_type == "inventory_levels/update":
            payload: dict[str, Any] = inventory_level(
                int(options.get("item_id", "271878346596884015")),
                int(options.get("location_id", "24826418")),
                int(options.get("available", "7")),
            )
        else:
            payload = {
                "id": int(options.get("order_id", "820982911946154508")),
                "name": "#1001",
                "email": options.get("email", "pat@example.com"),
                "note": options.get("note", "Gift & card"),
                "landing_site": "/products/mug",
                "currency": options.get("currency", "USD"),
                "total_price": options.get("total_price", "19.99"),
                "line_items": [{"sku": "MUG-11OZ", "quantity": 1, "variant_id": 40000000001, "title": "Mug 11oz"}],
            }
        return shopify_webhook(
            f"shopify {event_type}", event_type, payload, settings.shopify_webhook_secret[0], shop=shop
        )


class InventorySender:
    """A stock level from another system: options ``sku``, ``item_id``, ``location_id``, ``available``."""

    event_types = ("inventory.level_changed",)

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        settings = InventorySettings()
        if not settings.inventory_webhook_secret:
            raise ValueError("INVENTORY_WEBHOOK_SECRET is not set (hookbus dev prints the value it uses)")
        data: dict[str, Any] = {
            "sku": options.get("sku", "BEANS-1KG"),
            "location_id": options.get("location_id", "main"),
            "available": int(options.get("available", "4")),
        }
        if "item_id" in options:
            data["item_id"] = options["item_id"]
        return standard_webhook(
            f"inventory {event_type}", "/webhooks/inventory", event_type, data, settings.inventory_webhook_secret[0]
        )


class StandardSender:
    """A delivery from a configured Standard Webhooks sender (option ``source``, default: the first that maps the
    type). Options ``data`` (a JSON object) and any other ``key=value`` become the payload's ``data``."""

    @property
    def event_types(self) -> tuple[str, ...]:
        try:
            section = _standard_sources()
        except ConfigError:
            return ()
        return tuple(sorted({t for config in section.values() for t in config.types}))

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        section = _standard_sources()
        candidates = [name for name, config in section.items() if event_type in config.types]
        name = options.get("source") or (candidates[0] if candidates else "")
        if name not in section:
            raise ValueError(f"no Standard Webhooks source {name!r}; configured: {', '.join(section) or 'none'}")
        secrets = secrets_from_env(section[name].secret_env)
        if not secrets:
            raise ValueError(f"{section[name].secret_env} is not set")
        data: dict[str, Any] = orjson.loads(options["data"]) if "data" in options else {}
        data |= {k: v for k, v in options.items() if k not in ("source", "data")}
        return standard_webhook(f"{name} {event_type}", f"/webhooks/{name}", event_type, data, secrets[0])


def _standard_sources() -> dict[str, Any]:
    return dict(rules.section("sources.standard", StandardSourcesSection).root)
