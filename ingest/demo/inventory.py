"""The inventory scenario: Shopify and an ERP report stock levels → one reorder (or alert) per low-stock episode."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx

from .base import Webhook
from .leads import whsec
from .samples import inventory_level, shopify_webhook, standard_webhook

SHOP = "hookbus-demo.myshopify.com"
MUG_ITEM = 271878346596884015
MAIN_WAREHOUSE = 24826418

RULES = f"""\
# Inventory: Shopify and an ERP → supplier purchase orders or an e-mail to purchasing (inventory worker).
[inventory]
purchasing_contact = "buyer@shop.example"
alert_from = "hookbus@shop.example"

[inventory.suppliers.acme]
api = true
name = "ACME Ceramics"
account = "ACME-4471"

[inventory.suppliers.roastery]
name = "Hill Roastery"
contact = "orders by phone: +44 20 7946 0958"

[inventory.items."MUG-11OZ"]
reorder_point = 10
reorder_quantity = 48
supplier = "acme"
supplier_sku = "AC-MUG-11"
item_ids = ["{MUG_ITEM}"]

[inventory.items."BEANS-1KG"]
reorder_point = 5
reorder_quantity = 20
supplier = "roastery"
"""


class Inventory:
    title = "Inventory: Shopify and an ERP → supplier orders and purchasing alerts"
    workers = ("inventory",)

    def env(self, sandbox_url: str) -> dict[str, str]:
        return {
            "SHOPIFY_WEBHOOK_SECRET": "shpss_" + secrets.token_hex(16),
            "INVENTORY_WEBHOOK_SECRET": whsec(),
            "SUPPLIER_BASE_URL": f"{sandbox_url}/supplier",
            "SUPPLIER_API_KEY": "sandbox-token",
            "SENDGRID_BASE_URL": f"{sandbox_url}/email",
            "SENDGRID_API_KEY": "sandbox-token",
        }

    def rules(self) -> str:
        return RULES

    def webhooks(self, env: Mapping[str, str]) -> list[Webhook]:
        """Mugs sold in Shopify (12 → 9 → 7: one purchase order however many sales follow), coffee beans counted
        down in the ERP (8 → 4 → 3: the roastery has no API, so one e-mail to purchasing), a duplicate delivery, a
        Shopify digest computed as hex (a classic mistake) and an untracked item."""
        shopify_secret = env["SHOPIFY_WEBHOOK_SECRET"].split(",")[0]
        erp_secret = env["INVENTORY_WEBHOOK_SECRET"].split(",")[0]
        start = time.time() - 60
        mugs = [
            shopify_webhook(
                f"shopify inventory_levels/update MUG-11OZ available {n}",
                "inventory_levels/update",
                inventory_level(MUG_ITEM, MAIN_WAREHOUSE, n, at=start + i),
                shopify_secret,
                shop=SHOP,
            )
            for i, n in enumerate((12, 9, 7))
        ]
        beans = [
            standard_webhook(
                f"ERP inventory.level_changed BEANS-1KG available {n}",
                "/webhooks/inventory",
                "inventory.level_changed",
                {"sku": "BEANS-1KG", "location_id": "main", "available": n},
                erp_secret,
                at=start + i,
            )
            for i, n in enumerate((8, 4, 3))
        ]
        hex_digest = shopify_webhook(
            "shopify update signed with a hex digest (rejected)",
            "inventory_levels/update",
            inventory_level(MUG_ITEM, MAIN_WAREHOUSE, 0),
            shopify_secret,
            shop=SHOP,
        )
        forged = Webhook(
            hex_digest.label,
            hex_digest.path,
            hex_digest.body,
            {**hex_digest.headers, "X-Shopify-Hmac-Sha256": _hex(hex_digest.body, shopify_secret)},
        )
        return [
            *mugs,
            Webhook(
                "the last Shopify update delivered again (duplicate)", mugs[-1].path, mugs[-1].body, mugs[-1].headers
            ),
            *beans,
            shopify_webhook(
                "shopify update for an untracked item (available null)",
                "inventory_levels/update",
                inventory_level(MUG_ITEM + 1, MAIN_WAREHOUSE, None),
                shopify_secret,
                shop=SHOP,
            ),
            forged,
        ]

    def summarize(self, sandbox: httpx.Client) -> dict[str, Any]:
        orders = sandbox.get("/supplier/_sandbox/objects").json()["purchase_orders"]
        messages = sandbox.get("/email/_sandbox/objects").json()["messages"]

        def described(order: dict[str, Any]) -> str:
            lines = " + ".join(f"{line['quantity']} × {line['sku']}" for line in order["lines"])
            return f"{order['id']} {lines} ({order['reference']})"

        return {
            "purchase_orders": [described(o) for o in orders],
            "reorder_alerts": [f"to {', '.join(m['to'])}: {m['subject']}" for m in messages],
        }

    def lines(self, summary: Mapping[str, Any]) -> list[str]:
        orders, alerts = summary["purchase_orders"], summary["reorder_alerts"]
        return [
            f"Supplier purchase orders    {len(orders)}: {'; '.join(orders)}",
            f"Purchasing alert e-mails    {len(alerts)}: {'; '.join(alerts)}",
        ]


def _hex(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
