"""Stock levels → ingest → inventory.level_changed → inventory worker → supplier / e-mail sandboxes, on a real Valkey.

One reorder per low-stock episode (12 → 9 → 7 → 15 → 4 with reorder point 10 → exactly two), idempotent orders,
stale levels, concurrent levels, alerts for suppliers without an API.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from consumers.clients.responses import DownstreamValidationError
from consumers.clients.supplier import OrderLine, PurchaseOrder, SupplierClient
from consumers.inventory import InventoryRules
from ingest.sources.inventory import InventorySource
from ingest.sources.shopify import ShopifySource, hmac_header
from ingest.sources.standard_webhooks import signature_headers

from .leads_support import TOKEN, Sandbox, email, ingest_with, inventory_consumer, supplier
from .support import idle, ingest_client, running_worker, wait_until

pytestmark = pytest.mark.anyio

SHOPIFY_SECRET = "hookbus-shopify-app-secret"
INV_SECRET = "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXktMiE="
MUG_ITEM = 271878346596884015
RULES: dict[str, Any] = {
    "purchasing_contact": "buyer@shop.example",
    "alert_from": "hookbus@shop.example",
    "suppliers": {
        "acme": {"api": True, "name": "ACME Ceramics", "account": "ACME-4471"},
        "roastery": {"name": "Hill Roastery", "contact": "+44 20 7946 0958"},
    },
    "items": {
        "MUG-11OZ": {
            "reorder_point": 10,
            "reorder_quantity": 48,
            "supplier": "acme",
            "supplier_sku": "AC-MUG-11",
            "item_ids": [str(MUG_ITEM)],
        },
        "BEANS-1KG": {"reorder_point": 5, "reorder_quantity": 20, "supplier": "roastery"},
    },
}


class Stock:
    """Posts Shopify inventory level updates with increasing times (or the times given)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.n = 0

    async def shopify(self, available: int, *, second: int | None = None, location: int = 24826418) -> None:
        self.n += 1
        second = self.n if second is None else second
        body = orjson.dumps(
            {
                "inventory_item_id": MUG_ITEM,
                "location_id": location,
                "available": available,
                "updated_at": f"2026-03-02T09:15:{second:02d}-05:00",
            }
        )
        headers = {
            "X-Shopify-Topic": "inventory_levels/update",
            "X-Shopify-Hmac-Sha256": hmac_header(body, SHOPIFY_SECRET),
            "X-Shopify-Webhook-Id": f"wh-{self.n}",
            "Content-Type": "application/json",
        }
        response = await self.client.post("/webhooks/shopify", content=body, headers=headers)
        assert response.json()["status"] == "accepted", response.text

    async def generic(self, sku: str, available: int) -> None:
        self.n += 1
        body = orjson.dumps(
            {
                "type": "inventory.level_changed",
                "data": {"sku": sku, "location_id": "main", "available": available},
                "timestamp": f"2026-03-02T10:00:{self.n:02d}Z",
            }
        )
        response = await self.client.post(
            "/webhooks/inventory", content=body, headers=signature_headers(INV_SECRET, f"msg-{self.n}", 0, body)
        )
        assert response.json()["status"] == "accepted", response.text


def sources() -> list[Any]:
    return [ShopifySource((SHOPIFY_SECRET,)), InventorySource((INV_SECRET,), tolerance_s=10**10)]


async def drained(redis, names) -> None:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await idle(redis, names, "inventory", ["inventory.level_changed"])

    await wait_until(check, what="the inventory group to drain")


async def run_levels(redis, names, levels: list[int], *, supplier_box: Sandbox, email_box: Sandbox | None = None):  # type: ignore[no-untyped-def]
    consumer = inventory_consumer(RULES, supplier_box=supplier_box, email_box=email_box or email())
    async with ingest_client(ingest_with(redis, sources(), consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names) as worker:
            stock = Stock(client)
            for available in levels:
                await stock.shopify(available)
                await drained(redis, names)  # each level handled before the next, as they happen over time
    return worker


async def test_stock_12_9_7_15_4_places_exactly_two_reorders(redis, names) -> None:  # type: ignore[no-untyped-def]
    box = supplier(catalog=["AC-MUG-11"])
    await run_levels(redis, names, [12, 9, 7, 15, 4], supplier_box=box)
    orders = (await box.objects())["purchase_orders"]
    assert len(orders) == 2
    assert [o["lines"] for o in orders] == [[{"sku": "AC-MUG-11", "quantity": 48}]] * 2
    assert [o["reference"] for o in orders] == ["hookbus-MUG-11OZ-24826418-1", "hookbus-MUG-11OZ-24826418-2"]
    assert orders[0]["account"] == "ACME-4471" and orders[0]["ship_to"] == {"location_id": "24826418"}
    assert orders[0]["note"] == "Reorder: MUG-11OZ at 24826418 fell to 9 (reorder point 10)"
    assert orders[1]["note"] == "Reorder: MUG-11OZ at 24826418 fell to 4 (reorder point 10)"
    assert len({o["idempotency_key"] for o in orders}) == 2
    episode = await redis.hgetall(names.state("inventory", "episode:MUG-11OZ:24826418"))
    assert episode[b"state"] == b"open" and episode[b"episode"] == b"2" and episode[b"available"] == b"4"
    assert episode[b"order"] == b"po_000002"
    assert await redis.xlen(names.dlq("inventory")) == 0


async def test_the_reorder_point_itself_is_not_low_and_does_not_rearm(redis, names) -> None:  # type: ignore[no-untyped-def]
    box = supplier()
    await run_levels(redis, names, [10, 9, 10, 8, 11, 10], supplier_box=box)
    # 10: not below; 9: reorder; 10: neither low nor a restock above the point; 8: still open; 11: re-arms.
    assert len((await box.objects())["purchase_orders"]) == 1


async def test_locations_are_separate_episodes_and_stale_levels_are_ignored(redis, names) -> None:  # type: ignore[no-untyped-def]
    box = supplier()
    consumer = inventory_consumer(RULES, supplier_box=box, email_box=email())
    async with ingest_client(ingest_with(redis, sources(), consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names):
            stock = Stock(client)
            await stock.shopify(9, second=20)  # reorder at location A
            await drained(redis, names)
            await stock.shopify(15, second=10)  # an older snapshot delivered late: must not re-arm
            await drained(redis, names)
            await stock.shopify(6, second=30)  # still the same episode
            await drained(redis, names)
            await stock.shopify(3, second=30, location=99)  # another location: its own episode
            await drained(redis, names)
    orders = (await box.objects())["purchase_orders"]
    assert [o["ship_to"]["location_id"] for o in orders] == ["24826418", "99"]


async def test_concurrent_low_levels_order_once(redis, names) -> None:  # type: ignore[no-untyped-def]
    box = supplier()
    consumer = inventory_consumer(RULES, supplier_box=box, email_box=email())
    async with ingest_client(ingest_with(redis, sources(), consumers=[consumer])) as client:
        stock = Stock(client)
        for available in (9, 8, 7, 6, 5, 4, 3, 2):  # published before the worker starts: one batch, concurrently
            await stock.shopify(available)
        async with running_worker(consumer, redis, names, concurrency=8):
            await drained(redis, names)
    assert len((await box.objects())["purchase_orders"]) == 1


async def test_supplier_429_is_retried_with_the_same_idempotency_key(redis, names) -> None:  # type: ignore[no-untyped-def]
    box = supplier()
    await box.fault(status=429, count=1, retry_after="1")
    worker = await run_levels(redis, names, [12, 9], supplier_box=box)
    (order,) = (await box.objects())["purchase_orders"]
    assert order["reference"] == "hookbus-MUG-11OZ-24826418-1"
    assert worker.counts["retry"] == 1


async def test_supplier_without_api_alerts_the_purchasing_contact_once_per_episode(redis, names) -> None:  # type: ignore[no-untyped-def]
    supplier_box, mail = supplier(), email()
    await mail.fault(status=503, count=1)  # the first alert attempt fails and is retried
    consumer = inventory_consumer(RULES, supplier_box=supplier_box, email_box=mail)
    async with ingest_client(ingest_with(redis, sources(), consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names):
            stock = Stock(client)
            for available in (8, 4, 3, 12, 2):
                await stock.generic("BEANS-1KG", available)
                await drained(redis, names)
    messages = (await mail.objects())["messages"]
    assert [m["subject"] for m in messages] == [
        "Reorder needed: BEANS-1KG at main (4 left)",
        "Reorder needed: BEANS-1KG at main (2 left)",
    ]
    assert messages[0]["to"] == ["buyer@shop.example"] and messages[0]["from"] == "hookbus@shop.example"
    assert "Please order 20 × BEANS-1KG from Hill Roastery (+44 20 7946 0958)." in messages[0]["text"]
    assert (await supplier_box.objects())["purchase_orders"] == []


async def test_items_without_rules_are_ignored(redis, names) -> None:  # type: ignore[no-untyped-def]
    box = supplier()
    consumer = inventory_consumer(RULES, supplier_box=box, email_box=email())
    async with ingest_client(ingest_with(redis, sources(), consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names) as worker:
            await Stock(client).generic("UNKNOWN-SKU", 0)
            await drained(redis, names)
    assert worker.counts["acked"] == 1 and (await box.objects())["purchase_orders"] == []


def test_rules_validation() -> None:
    with pytest.raises(ValueError, match="not in \\[inventory.suppliers\\]"):
        InventoryRules.model_validate({"items": {"X": {"reorder_point": 1, "reorder_quantity": 1, "supplier": "nope"}}})
    with pytest.raises(ValueError, match="purchasing_contact must be an e-mail"):
        InventoryRules.model_validate(
            {"suppliers": {"s": {}}, "items": {"X": {"reorder_point": 1, "reorder_quantity": 1, "supplier": "s"}}}
        )
    with pytest.raises(ValueError, match="listed for both"):
        InventoryRules.model_validate(
            {
                "suppliers": {"s": {"api": True}},
                "items": {
                    "X": {"reorder_point": 1, "reorder_quantity": 1, "supplier": "s", "item_ids": ["1"]},
                    "Y": {"reorder_point": 1, "reorder_quantity": 1, "supplier": "s", "item_ids": ["1"]},
                },
            }
        )
    rules = InventoryRules.model_validate(RULES)
    assert rules.rule_for(None, str(MUG_ITEM))[0] == "MUG-11OZ"  # type: ignore[index]
    assert rules.rule_for("BEANS-1KG", None)[0] == "BEANS-1KG"  # type: ignore[index]
    assert rules.rule_for("NOPE", "0") is None


# --- the supplier client and sandbox ---------------------------------------------------------------------------------


async def test_supplier_idempotency_key_replays_the_first_order() -> None:
    box = supplier()
    order = PurchaseOrder(reference="r-1", lines=[OrderLine("AC-MUG-11", 48)], location_id="main")
    async with SupplierClient(base_url="http://supplier", api_key=TOKEN, transport=box.transport) as client:
        first = await client.create_purchase_order(order, idempotency_key="key-1")
        again = await client.create_purchase_order(order, idempotency_key="key-1")
        assert (first.id, first.replayed) == ("po_000001", False)
        assert (again.id, again.replayed) == ("po_000001", True)
        changed = PurchaseOrder(reference="r-1", lines=[OrderLine("AC-MUG-11", 96)], location_id="main")
        with pytest.raises(DownstreamValidationError, match="supplier_validation: 422 this Idempotency-Key was used"):
            await client.create_purchase_order(changed, idempotency_key="key-1")
    assert len((await box.objects())["purchase_orders"]) == 1
    missing_key = await box.request("POST", "/purchase-orders", json=order.to_json())
    assert missing_key.status_code == 400 and missing_key.headers["content-type"] == "application/problem+json"
    bad = await box.request(
        "POST", "/purchase-orders", json={"reference": "", "lines": []}, headers={"Idempotency-Key": "k2"}
    )
    assert bad.status_code == 400
    assert [e["pointer"] for e in bad.json()["errors"]] == ["/reference", "/ship_to/location_id", "/lines"]
    unauthorized = await box.request("POST", "/purchase-orders", json={}, headers={"Authorization": "Bearer nope"})
    assert unauthorized.status_code == 401
