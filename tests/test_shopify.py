"""Shopify source (shared case 005) and the generic Standard-Webhooks inventory source, over HTTP on a real Valkey."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from ingest.sources.inventory import InventorySource
from ingest.sources.shopify import ShopifyRules, ShopifySource, hmac_header
from ingest.sources.standard_webhooks import signature_headers

from .leads_support import ingest_with
from .support import ingest_client

pytestmark = pytest.mark.anyio

# Case 005, byte for byte (the backslashes are literal bytes of the body).
SECRET = "hookbus-shopify-app-secret"
BODY = b'{"id":820982911946154508,"note":"Gift \\u0026 card","landing_site":"\\/products\\/mug","total_price":"19.99"}'
HMAC = "RNKlbtbj/fjyXkawB40XU6b8Bfx+m0isDachwBEo70E="
BODY_REserialized = (
    b'{"id":820982911946154508,"note":"Gift & card","landing_site":"/products/mug","total_price":"19.99"}'
)
HMAC_REserialized = "/D4TCWaaz3w5W5myN2sBo6I4W19CYafbx+TCXie491I="
HEX = "44d2a56ed6e3fdf8f25e46b0078d1753a6fc05fc7e9b48ac0da721c01128ef41"
WEBHOOK_ID = "00000000-0000-4000-8000-000000000005"
HEADERS = {
    "X-Shopify-Topic": "orders/create",
    "X-Shopify-Shop-Domain": "test-shop.myshopify.com",
    "X-Shopify-Webhook-Id": WEBHOOK_ID,
    "Content-Type": "application/json",
}
ORDERS = "hookbus:stream:order.created"
LEVELS = "hookbus:stream:inventory.level_changed"


def shopify(*secrets: str, topics: tuple[str, ...] = ("inventory_levels/update", "orders/create")) -> ShopifySource:
    return ShopifySource(secrets or (SECRET,), topics=topics)


def test_case_005_digest_is_shopifys_documented_base64() -> None:
    """Shopify's documented scheme: base64 of the HMAC-SHA256 digest of the raw body, keyed with the app secret."""
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    assert base64.b64encode(digest).decode() == HMAC == hmac_header(BODY, SECRET)
    assert digest.hex() == HEX
    assert hmac_header(BODY_REserialized, SECRET) == HMAC_REserialized


async def test_case_005_raw_body_accepted_and_normalized(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [shopify()])
    async with ingest_client(app) as client:
        # Header names are case-insensitive.
        response = await client.post(
            "/webhooks/shopify", content=BODY, headers=HEADERS | {"x-shopify-hmac-sha256": HMAC}
        )
        again = await client.post("/webhooks/shopify", content=BODY, headers=HEADERS | {"X-Shopify-Hmac-Sha256": HMAC})
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")  # X-Shopify-Webhook-Id dedupes
    assert await redis.exists(f"hookbus:dedupe:shopify:{WEBHOOK_ID}") == 1
    ((_, fields),) = await redis.xrange(ORDERS)
    assert b'"order_id":"820982911946154508"' in fields[b"event"]  # never through a float
    event = orjson.loads(fields[b"event"])
    assert event["id"] == WEBHOOK_ID and event["subject"] == "820982911946154508"
    data = event["data"]
    assert data["order_id"] == "820982911946154508"
    assert data["note"] == "Gift & card"
    assert data["landing_site"] == "/products/mug"
    assert data["shop"] == "test-shop.myshopify.com"
    assert data["currency"] is None and data["total_minor"] is None  # no currency: the amount is not guessed


@pytest.mark.parametrize(
    ("body", "header"),
    [(BODY_REserialized, HMAC), (BODY, HEX), (BODY, ""), (BODY, HMAC_REserialized), (BODY, HMAC.lower())],
    ids=["reserialized-body", "hex-digest", "empty", "other-body-digest", "wrong-case"],
)
async def test_case_005_wrong_signatures_are_401(redis, body: bytes, header: str) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [shopify()])
    async with ingest_client(app) as client:
        response = await client.post(
            "/webhooks/shopify", content=body, headers=HEADERS | {"X-Shopify-Hmac-Sha256": header}
        )
        missing = await client.post("/webhooks/shopify", content=BODY, headers=HEADERS)
    assert response.status_code == 401 and missing.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert await redis.xlen(ORDERS) == 0
    assert await redis.keys("hookbus:dedupe:*") == []


LEVEL = (
    b'{"inventory_item_id":271878346596884015,"location_id":24826418,"available":6,'
    b'"updated_at":"2026-03-02T09:15:00-05:00",'
    b'"admin_graphql_api_id":"gid:\\/\\/shopify\\/InventoryLevel\\/24826418?inventory_item_id=271878346596884015"}'
)


def level_headers(body: bytes, webhook_id: str, secret: str = SECRET, topic: str = "inventory_levels/update") -> dict:  # type: ignore[type-arg]
    return {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_header(body, secret),
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Shop-Domain": "test-shop.myshopify.com",
        "Content-Type": "application/json",
    }


async def test_inventory_level_update(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [shopify("rotated-secret", SECRET, topics=("inventory_levels/update",))])
    untracked = LEVEL.replace(b'"available":6', b'"available":null')
    async with ingest_client(app) as client:
        ok = await client.post("/webhooks/shopify", content=LEVEL, headers=level_headers(LEVEL, "wh-1"))
        rotated = await client.post(
            "/webhooks/shopify", content=LEVEL, headers=level_headers(LEVEL, "wh-2", secret="rotated-secret")
        )
        order = await client.post("/webhooks/shopify", content=BODY, headers=HEADERS | {"X-Shopify-Hmac-Sha256": HMAC})
        other = await client.post(
            "/webhooks/shopify", content=b"{}", headers=level_headers(b"{}", "wh-3", topic="products/update")
        )
        none = await client.post("/webhooks/shopify", content=untracked, headers=level_headers(untracked, "wh-4"))
        no_id = await client.post(
            "/webhooks/shopify", content=LEVEL, headers=level_headers(LEVEL, "wh-5") | {"X-Shopify-Webhook-Id": ""}
        )
        bad = b'{"inventory_item_id":1,"location_id":2,"available":"6"}'
        malformed = await client.post("/webhooks/shopify", content=bad, headers=level_headers(bad, "wh-6"))
    assert [r.json()["status"] for r in (ok, rotated)] == ["accepted", "accepted"]
    assert [r.json()["status"] for r in (order, other, none)] == ["ignored"] * 3  # orders/create not enabled here
    assert no_id.status_code == 400 and malformed.status_code == 400
    assert await redis.xlen(ORDERS) == 0
    first = orjson.loads((await redis.xrange(LEVELS))[0][1][b"event"])
    assert first["time"] == "2026-03-02T09:15:00.000-05:00"
    assert first["subject"] == "271878346596884015"
    assert first["data"] == {
        "sku": None,
        "item_id": "271878346596884015",
        "location_id": "24826418",
        "available": 6,
        "updated_at": "2026-03-02T09:15:00.000-05:00",
        "system": "shopify",
        "shop": "test-shop.myshopify.com",
    }


def test_shopify_rules_reject_unknown_topics() -> None:
    assert ShopifyRules().topics == ("inventory_levels/update",)
    with pytest.raises(ValueError, match="unsupported topic"):
        ShopifyRules(topics=("orders/paid",))


# --- the generic Standard-Webhooks inventory source --------------------------------------------------------------

INV_SECRET = "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXktMiE="
T0 = 1767225600


def inventory_body(**data: object) -> bytes:
    return orjson.dumps({"type": "inventory.level_changed", "timestamp": "2026-01-01T00:00:00Z", "data": data})


async def test_generic_inventory_source(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_with(redis, [InventorySource((INV_SECRET,))], clock=lambda: T0 + 2)
    good = inventory_body(sku="BEANS-1KG", location_id="main", available=3, updated_at="2026-01-01T00:00:00+01:00")
    by_item = inventory_body(item_id=4471, available=-2)
    async with ingest_client(app) as client:
        ok = await client.post(
            "/webhooks/inventory", content=good, headers=signature_headers(INV_SECRET, "m1", T0, good)
        )
        item = await client.post(
            "/webhooks/inventory", content=by_item, headers=signature_headers(INV_SECRET, "m2", T0, by_item)
        )
        forged = await client.post(
            "/webhooks/inventory",
            content=good,
            headers=signature_headers("whsec_" + base64.b64encode(b"x" * 32).decode(), "m3", T0, good),
        )
        other = orjson.dumps({"type": "inventory.item_created", "data": {}})
        ignored = await client.post(
            "/webhooks/inventory", content=other, headers=signature_headers(INV_SECRET, "m4", T0, other)
        )
        bad = inventory_body(sku="X", available=2.5)
        invalid = await client.post(
            "/webhooks/inventory", content=bad, headers=signature_headers(INV_SECRET, "m5", T0, bad)
        )
    assert [r.status_code for r in (ok, item, forged, ignored, invalid)] == [200, 200, 401, 200, 400]
    assert ignored.json()["status"] == "ignored"
    events = [orjson.loads(f[b"event"]) for _, f in await redis.xrange(LEVELS)]
    assert [e["id"] for e in events] == ["m1", "m2"]
    assert events[0]["data"] == {
        "sku": "BEANS-1KG",
        "item_id": None,
        "location_id": "main",
        "available": 3,
        "updated_at": "2026-01-01T00:00:00.000+01:00",
        "system": "inventory",
    }
    assert events[0]["time"] == "2026-01-01T00:00:00.000+01:00"
    assert events[1]["data"]["item_id"] == "4471" and events[1]["data"]["location_id"] == "default"
    assert events[1]["time"] == "2026-01-01T00:00:00.000Z" and events[1]["subject"] == "4471"
