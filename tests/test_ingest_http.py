"""Ingest over HTTP against a real Valkey: signature cases 001–003, bad input, duplicates, Redis outages (030)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from bus.envelope import Event
from ingest.sources import stripe_samples as samples

from .conftest import Valkey
from .support import SECRET, ingest_app, ingest_client, stripe_headers

pytestmark = pytest.mark.anyio

STREAM = "hookbus:stream:payment.succeeded"

# Case 001: exact bytes, header and clock.
CASE_001_BODY = (
    b'{\n  "id": "evt_test_hb_0001",\n  "object": "event",\n  "type": "invoice.paid",\n  "data": {\n'
    b'    "object": {\n      "id": "in_test_hb_0001",\n      "customer_name": "Zo\xc3\xab Testperson",\n'
    b'      "amount_paid": 4200,\n      "currency": "usd"\n    }\n  }\n}\n'
)
CASE_001_HEADER = "t=1767225600,v1=d6b2527ab36bbc4255945e369b64f2a3dfb03cda0a48e6cca27fbb762d0f042b"
T0 = 1767225600


def test_case_001_body_is_the_documented_bytes() -> None:
    import hashlib

    assert len(CASE_001_BODY) == 241
    assert hashlib.sha256(CASE_001_BODY).hexdigest() == (
        "5412b340633c1a5ca55b52403d3240458b6186381ef39d415fde6afbe4bf35d6"
    )


async def post(client, body: bytes, header: str):  # type: ignore[no-untyped-def]
    return await client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})


async def test_case_001_raw_bytes_accepted_reserialized_rejected(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis, clock=lambda: T0 + 60)
    async with ingest_client(app) as client:
        reserialized = orjson.loads(CASE_001_BODY)
        import json

        variant_a = json.dumps(reserialized).encode()
        variant_b = CASE_001_BODY.replace(b"\n", b"\r\n")
        for variant in (variant_a, variant_b):
            response = await post(client, variant, CASE_001_HEADER)
            assert response.status_code == 401
            assert response.json()["error"] == "bad_signature"
        assert await redis.xlen(STREAM) == 0
        assert await redis.exists("hookbus:dedupe:stripe:evt_test_hb_0001") == 0

        response = await post(client, CASE_001_BODY, CASE_001_HEADER)
        assert response.status_code == 200
        assert response.json()["status"] == "accepted"
    entries = await redis.xrange(STREAM)
    assert len(entries) == 1
    event = Event.from_fields(entries[0][1])
    assert (event.id, event.type, event.source) == ("evt_test_hb_0001", "payment.succeeded", "stripe")
    assert event.data["customer"]["name"] == "Zoë Testperson"
    assert event.data["amount"] == 4200 and event.data["currency"] == "USD"


CASE_002_BODY = b'{"id":"evt_test_hb_0002","object":"event","type":"customer.created"}'
OLD = "whsec_hookbusOldSecret0000000000000001"
NEW = "whsec_hookbusNewSecret0000000000000002"
V1_NEW = "cf9d3eb79f14fb397706aaa3c1fee132c1e01f8294e54e5294e4c70b07245828"
V1_OLD = "800c345aadb61d3d7ca8d892bd631402c0ce651ebbadda07f1beba0f3cfe7c07"
V0 = "979393788938af0f1cb664b41467a09f170dd27a8193b812bc8fa156987d7934"


@pytest.mark.parametrize("configured", [[OLD], [NEW], [NEW, OLD]])
@pytest.mark.parametrize("order", ["new-first", "old-first"])
async def test_case_002_rotation(redis, configured: list[str], order: str) -> None:  # type: ignore[no-untyped-def]
    v1s = [V1_NEW, V1_OLD] if order == "new-first" else [V1_OLD, V1_NEW]
    header = f"t={T0},v1={v1s[0]},v1={v1s[1]},v0={V0}"
    app = ingest_app(redis, secrets=configured, clock=lambda: T0 + 10)
    async with ingest_client(app) as client:
        response = await post(client, CASE_002_BODY, header)
    # customer.created is authentic but not a type hookbus handles: 200, counted, nothing published (issue 2).
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "event_id": "evt_test_hb_0002"}


async def test_case_002_v0_only_is_rejected(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis, secrets=[OLD, NEW], clock=lambda: T0 + 10)
    async with ingest_client(app) as client:
        response = await post(client, CASE_002_BODY, f"t={T0},v0={V1_OLD}")
    assert response.status_code == 401
    assert "v1" in response.json()["detail"]


@pytest.mark.parametrize(
    ("now", "status", "added"),
    [(T0 + 300, 200, 1), (T0 + 301, 401, 0), (T0 - 400, 200, 1)],
    ids=["exactly-300s", "301s-stale", "400s-in-future"],
)
async def test_case_003_tolerance(redis, now: int, status: int, added: int) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis, clock=lambda: now)
    async with ingest_client(app) as client:
        response = await post(client, CASE_001_BODY, CASE_001_HEADER)
    assert response.status_code == status
    assert await redis.xlen(STREAM) == added


async def test_case_003_replay_within_window_is_deduplicated(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis, clock=lambda: T0 + 60)
    async with ingest_client(app) as client:
        first = await post(client, CASE_001_BODY, CASE_001_HEADER)
        second = await post(client, CASE_001_BODY, CASE_001_HEADER)
    assert (first.status_code, first.json()["status"]) == (200, "accepted")
    assert (second.status_code, second.json()["status"]) == (200, "duplicate")
    assert await redis.xlen(STREAM) == 1


async def test_case_015_concurrent_duplicates_on_two_ingests_publish_once(redis, valkey: Valkey) -> None:  # type: ignore[no-untyped-def]
    from bus.connection import connect

    other_redis = connect(valkey.url, socket_timeout_s=5)  # a second ingest process has its own connection
    first, second = ingest_app(redis, clock=lambda: T0 + 60), ingest_app(other_redis, clock=lambda: T0 + 60)
    try:
        async with ingest_client(first) as a, ingest_client(second) as b:
            responses = await asyncio.gather(
                post(a, CASE_001_BODY, CASE_001_HEADER), post(b, CASE_001_BODY, CASE_001_HEADER)
            )
            assert [r.status_code for r in responses] == [200, 200]
            assert sorted(r.json()["status"] for r in responses) == ["accepted", "duplicate"]
            # Ten minutes later Stripe retries with a fresh signature: acknowledged, not published again.
            late = ingest_app(redis, clock=lambda: T0 + 660)
            async with ingest_client(late) as c:
                header = stripe_headers(CASE_001_BODY, timestamp=T0 + 600)["Stripe-Signature"]
                response = await post(c, CASE_001_BODY, header)
            assert (response.status_code, response.json()["status"]) == (200, "duplicate")
    finally:
        await other_redis.aclose()
    assert await redis.xlen(STREAM) == 1


async def test_bad_requests_get_precise_json_errors(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis, max_body_bytes=4096)
    async with ingest_client(app) as client:
        not_json = b"{not json"
        r = await client.post("/webhooks/stripe", content=not_json, headers=stripe_headers(not_json))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")

        float_amount = samples.payment_intent_succeeded(amount=1999, currency="usd").replace(b":1999,", b":19.99,")
        r = await client.post("/webhooks/stripe", content=float_amount, headers=stripe_headers(float_amount))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")

        r = await client.post("/webhooks/stripe", content=b"{}")
        assert (r.status_code, r.json()["error"]) == (401, "bad_signature")

        big = b"x" * 4097
        r = await client.post("/webhooks/stripe", content=big, headers=stripe_headers(big))
        assert (r.status_code, r.json()["error"]) == (413, "body_too_large")

        r = await client.post("/webhooks/paypal", content=b"{}")
        assert (r.status_code, r.json()["error"]) == (404, "unknown_source")

        r = await client.get("/webhooks/stripe")
        assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")
    assert await redis.xlen(STREAM) == 0


async def test_body_at_the_limit_is_read_and_one_byte_more_is_refused(redis) -> None:  # type: ignore[no-untyped-def]
    body = samples.payment_intent_succeeded(amount=1999, currency="usd")
    app = ingest_app(redis, max_body_bytes=len(body))
    async with ingest_client(app) as client:

        async def chunks(data: bytes):  # type: ignore[no-untyped-def]
            for i in range(0, len(data), 100):
                yield data[i : i + 100]

        # Streamed without Content-Length (chunked): the limit is enforced while reading.
        over = body + b" "
        r = await client.post("/webhooks/stripe", content=chunks(over), headers=stripe_headers(over))
        assert r.status_code == 413
        r = await client.post("/webhooks/stripe", content=chunks(body), headers=stripe_headers(body))
        assert (r.status_code, r.json()["status"]) == (200, "accepted")


async def test_redis_down_gives_503_and_loses_nothing(redis, valkey: Valkey) -> None:  # type: ignore[no-untyped-def]
    """Case 030, ingest side: never 2xx without the XADD, the dedupe key is not consumed, recovery is automatic."""
    from bus.connection import connect

    ingest_redis = connect(valkey.url, socket_timeout_s=1)
    body = samples.payment_intent_succeeded(amount=4200, currency="usd", event_id="evt_test_hb_0001")
    app = ingest_app(ingest_redis)
    try:
        async with ingest_client(app) as client:
            valkey.stop()
            r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
            assert r.status_code == 503
            assert r.headers["Retry-After"] == "5"
            assert r.json()["error"] == "unavailable"
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()["redis"]) == (503, "down")
            assert (await client.get("/healthz")).status_code == 200

            valkey.start()
            r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
            assert (r.status_code, r.json()["status"]) == (200, "accepted")
            second = samples.payment_intent_succeeded(amount=100, currency="usd", event_id="evt_test_hb_0003")
            r = await client.post("/webhooks/stripe", content=second, headers=stripe_headers(second))
            assert (r.status_code, r.json()["status"]) == (200, "accepted")
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await ingest_redis.aclose()
    check = connect(valkey.url, socket_timeout_s=5)
    assert await check.xlen(STREAM) == 2
    await check.aclose()


async def test_metrics_count_outcomes(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis)
    async with ingest_client(app) as client:
        before = (await client.get("/metrics")).text
        body = samples.payment_intent_succeeded(amount=1, currency="usd")
        await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        after = (await client.get("/metrics")).text

    def value(text: str, outcome: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'hookbus_webhooks_received_total{{outcome="{outcome}",source="stripe"}}'):
                return float(line.split()[-1])
        return 0.0

    assert value(after, "accepted") - value(before, "accepted") == 1
    assert value(after, "duplicate") - value(before, "duplicate") == 1
    assert SECRET not in after


async def test_odd_values_are_a_bad_request_not_a_server_error(redis) -> None:  # type: ignore[no-untyped-def]
    app = ingest_app(redis)
    async with ingest_client(app) as client:
        far = samples.payment_intent_succeeded(amount=100, currency="usd").replace(b'"created":', b'"created":9', 1)
        r = await client.post("/webhooks/stripe", content=far, headers=stripe_headers(far))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        huge = orjson.loads(samples.payment_intent_succeeded(amount=100, currency="usd"))
        huge["created"] = 99999999999999
        body = orjson.dumps(huge)
        r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        huge["created"] = 10**17  # beyond the C library's range: EOVERFLOW, not OverflowError
        body = orjson.dumps(huge)
        r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        long_id = orjson.loads(samples.payment_intent_succeeded(amount=100, currency="usd"))
        long_id["id"] = "evt_" + "x" * 253  # 257 characters
        body = orjson.dumps(long_id)
        r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        assert "longer than 256 characters" in r.json()["detail"] and len(r.content) < 300
        r = await client.post("/webhooks/stripe/", content=body, headers=stripe_headers(body))
        assert (r.status_code, r.json()["error"]) == (404, "unknown_source")
    assert await redis.xlen(STREAM) == 0


async def test_redis_refusing_writes_is_a_503(redis) -> None:  # type: ignore[no-untyped-def]
    """Out of memory (or BUSY, READONLY …) is an outage for the provider: retry later, never a 500."""
    body = samples.payment_intent_succeeded(amount=100, currency="usd")
    app = ingest_app(redis)
    async with ingest_client(app) as client:
        await redis.config_set("maxmemory", "1")
        try:
            r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        finally:
            await redis.config_set("maxmemory", "0")
        assert (r.status_code, r.json()["error"], r.headers["Retry-After"]) == (503, "unavailable", "5")
        r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert (r.status_code, r.json()["status"]) == (200, "accepted")
        # A repeat while the server is full is still recognised (its trace record is skipped), and a new delivery
        # sent with it in one script call still gets its 503.
        other = samples.payment_intent_succeeded(amount=200, currency="usd")
        await redis.config_set("maxmemory", "1")
        try:
            repeat, new = await asyncio.gather(
                client.post("/webhooks/stripe", content=body, headers=stripe_headers(body)),
                client.post("/webhooks/stripe", content=other, headers=stripe_headers(other)),
            )
        finally:
            await redis.config_set("maxmemory", "0")
        assert (repeat.status_code, repeat.json()["status"]) == (200, "duplicate")
        assert (new.status_code, new.json()["error"]) == (503, "unavailable")
    assert await redis.xlen(STREAM) == 1


async def test_a_stalled_body_times_out(redis, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ingest.app

    monkeypatch.setattr(ingest.app, "BODY_TIMEOUT_S", 0.2)
    app = ingest_app(redis)
    async with ingest_client(app) as client:

        async def stalls():  # type: ignore[no-untyped-def]
            yield b'{"id":'
            await asyncio.sleep(1)
            yield b"1}"

        r = await client.post("/webhooks/stripe", content=stalls(), headers={"Stripe-Signature": "t=1,v1=00"})
    assert (r.status_code, r.json()["error"]) == (408, "request_timeout")


async def test_an_unexpected_error_is_a_json_500_and_other_methods_a_json_405(redis) -> None:  # type: ignore[no-untyped-def]
    from ingest.app import create_app
    from ingest.config import IngestSettings
    from ingest.sources.stripe import StripeSource

    class Broken(StripeSource):
        def parse(self, body: bytes, *, received_at: float | None = None):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug")

    app = create_app(IngestSettings(), redis=redis, sources={"stripe": Broken([SECRET])}, consumers=[])
    body = samples.payment_intent_succeeded(amount=100, currency="usd")
    async with ingest_client(app) as client:
        r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert (r.status_code, r.json()["error"]) == (500, "internal_error")
        assert r.headers["content-type"] == "application/json"
        exposition = (await client.get("/metrics")).text
        assert 'hookbus_webhooks_received_total{outcome="internal_error",source="stripe"} 1.0' in exposition
        r = await client.put("/webhooks/stripe", content=body)
        assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")
    assert await redis.xlen(STREAM) == 0


async def test_a_sender_leaving_mid_body_is_counted_not_published(redis) -> None:  # type: ignore[no-untyped-def]
    from ingest.app import create_app
    from ingest.config import IngestSettings
    from ingest.sources.stripe import StripeSource

    app = create_app(IngestSettings(), redis=redis, sources={"stripe": StripeSource([SECRET])}, consumers=[])
    messages = [{"type": "http.request", "body": b'{"id":', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive():  # type: ignore[no-untyped-def]
        return messages.pop(0)

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/webhooks/stripe", "headers": [], "root_path": ""}
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert orjson.loads(sent[1]["body"])["error"] == "client_disconnected"
    assert await redis.xlen(STREAM) == 0


@pytest.mark.parametrize(
    ("declared", "outcome"),
    [
        ("212", None),
        ("212 ", None),
        (" 212\t", None),
        ("0", None),
        ("21 2", "bad"),
        ("-1", "bad"),
        ("", "bad"),
        ("2000000", "large"),
    ],
)
def test_content_length_values(declared: str, outcome: str | None) -> None:
    # Optional whitespace around a field value is allowed (RFC 9110, 5.5); anything else not a number is refused.
    from ingest.body import BadContentLength, BodyTooLarge, check_length

    expected = {None: None, "bad": BadContentLength, "large": BodyTooLarge}[outcome]
    if expected is None:
        check_length(declared, 1_000_000)
    else:
        with pytest.raises(expected):
            check_length(declared, 1_000_000)
