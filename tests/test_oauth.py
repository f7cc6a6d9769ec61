"""OAuth 2.0 refresh-token grant (consumers/clients/oauth.py) against the QuickBooks sandbox's token endpoint, in
process, with the token set shared through the real Valkey: expiry and refresh, rotation, two processes, the
configured refresh token versus the stored one, secrets kept out of logs and reprs, and refusals dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from bus.connection import connect
from bus.consumer import Resources
from bus.deadletter import DeadLetter
from bus.errors import ConfigError, PermanentError, RetryLater
from bus.naming import Names
from bus.ratelimit import Limiter
from consumers import accounting
from consumers.calendar import CalendarSettings, google_client
from consumers.clients.oauth import BearerAuth, OAuthRefreshFailed, RefreshingToken, StaticToken, fingerprint
from consumers.clients.quickbooks import QuickBooksClient, SalesReceipt, intuit_tokens
from consumers.sandboxes.google_calendar import create_app as create_google
from consumers.sandboxes.quickbooks import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    TOKEN_PATH,
)
from ingest.sources import stripe_samples as samples

from .conftest import Valkey
from .support import (
    REALM,
    QuickBooksSandbox,
    idle,
    ingest_app,
    ingest_client,
    running_worker,
    stripe_headers,
    wait_until,
)

pytestmark = pytest.mark.anyio

TOKEN_URL = f"http://qb{TOKEN_PATH}"
TYPES = ("payment.succeeded", "payment.refunded")


# ------------------------------------------------------------------------------------------------------- helpers
class Recording(httpx.AsyncBaseTransport):
    """Wraps the sandbox transport: records ``(path, status)`` of every request; token requests can be slowed down
    so that concurrent refreshes really overlap."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, token_delay_s: float = 0.0) -> None:
        self.inner = inner
        self.token_delay_s = token_delay_s
        self.seen: list[tuple[str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH and self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        response = await self.inner.handle_async_request(request)
        self.seen.append((request.url.path, response.status_code))
        return response

    def count(self, path_end: str, status: int | None = None) -> int:
        return sum(1 for p, s in self.seen if p.endswith(path_end) and (status is None or s == status))


async def sandbox_tokens(sandbox: QuickBooksSandbox) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=sandbox.transport, base_url="http://qb") as client:
        return (await client.get("/_sandbox/tokens")).json()


async def expire(sandbox: QuickBooksSandbox) -> None:
    async with httpx.AsyncClient(transport=sandbox.transport, base_url="http://qb") as client:
        assert (await client.post("/_sandbox/expire-token")).json()["expired"] >= 1


def key(names: Names) -> str:
    return names.state("accounting", "oauth:quickbooks")


def tokens_for(
    redis: aioredis.Redis | None,
    names: Names,
    transport: httpx.AsyncBaseTransport,
    *,
    refresh_token: str = DEFAULT_REFRESH_TOKEN,
    client_secret: str = DEFAULT_CLIENT_SECRET,
) -> RefreshingToken:
    return intuit_tokens(
        client_id=DEFAULT_CLIENT_ID,
        client_secret=client_secret,
        refresh_token=refresh_token,
        token_url=TOKEN_URL,
        redis=redis,
        key=key(names) if redis is not None else "",
        transport=transport,
    )


def quickbooks(tokens: RefreshingToken, transport: httpx.AsyncBaseTransport) -> QuickBooksClient:
    return QuickBooksClient(base_url="http://qb", realm_id=REALM, tokens=tokens, transport=transport)


def receipt(amount: str = "19.99") -> SalesReceipt:
    return SalesReceipt(
        amount=Decimal(amount), currency="USD", txn_date=date(2026, 1, 1), description="d", private_note="n"
    )


async def stored(redis: aioredis.Redis, names: Names) -> dict[str, Any]:
    raw = await redis.get(key(names))
    assert raw is not None, "no token set in Redis"
    return orjson.loads(raw)


def oauth_consumer(
    sandbox: QuickBooksSandbox, transport: httpx.AsyncBaseTransport, *, refresh_token: str = DEFAULT_REFRESH_TOKEN
) -> Any:
    """The real accounting consumer, configured with a refresh token instead of a fixed access token."""
    config = accounting.AccountingSettings(
        quickbooks_base_url="http://qb",
        quickbooks_realm_id=REALM,
        quickbooks_refresh_token=refresh_token,
        quickbooks_client_id=DEFAULT_CLIENT_ID,
        quickbooks_client_secret=DEFAULT_CLIENT_SECRET,
        quickbooks_token_url=TOKEN_URL,
    )
    return dataclasses.replace(accounting.consumer, lifespan=accounting.make_lifespan(config, transport=transport))


async def deliver(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 200, response.text


async def drained(redis: aioredis.Redis, names: Names) -> None:
    async def check() -> bool:
        return await idle(redis, names, "accounting", TYPES)

    await wait_until(check, what="the accounting group to drain")


def payment(n: int) -> bytes:
    return samples.payment_intent_succeeded(
        amount=1000 + n, currency="usd", payment_intent_id=f"pi_3Q0hookbusOAuth{n:08d}", charge_id=f"ch_oauth{n:08d}"
    )


@pytest.fixture
async def second_redis(valkey: Valkey) -> AsyncIterator[aioredis.Redis]:
    """Another connection pool to the same server: what a second worker process has."""
    client = connect(valkey.url, socket_timeout_s=10)
    yield client
    await client.aclose()


# --------------------------------------------------------------------------------------------------------- tests
async def test_expired_access_token_is_refreshed_and_the_call_succeeds_once(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    transport = Recording(sandbox.transport)
    async with quickbooks(tokens_for(redis, names, transport), transport) as client:
        await client.create_sales_receipt(receipt(), request_id="r1")  # no access token yet: one refresh first
        assert transport.count(TOKEN_PATH) == 1
        first = await stored(redis, names)
        assert first["access_token"] in (await sandbox_tokens(sandbox))["access_tokens"]

        await expire(sandbox)
        transport.seen.clear()
        created = await client.create_sales_receipt(receipt("5.00"), request_id="r2")

    assert created.total == Decimal("5.00")
    # 401 → one refresh → the same request once more, which succeeds.
    assert transport.seen == [
        (f"/v3/company/{REALM}/salesreceipt", 401),
        (TOKEN_PATH, 200),
        (f"/v3/company/{REALM}/salesreceipt", 200),
    ]
    assert len((await sandbox.objects())["salesreceipts"]) == 2
    second = await stored(redis, names)
    assert second["access_token"] != first["access_token"]
    assert second["expires_at"] > second["refreshed_at"] + 3000 and second["expires_in"] == 3600


async def test_rotated_refresh_token_is_stored_and_used_after_a_restart(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with quickbooks(tokens_for(redis, names, sandbox.transport), sandbox.transport) as client:
        await client.create_sales_receipt(receipt(), request_id="r1")
    current = (await sandbox_tokens(sandbox))["refresh_token"]
    document = await stored(redis, names)
    assert current != DEFAULT_REFRESH_TOKEN, "the sandbox rotates refresh tokens"
    assert document["refresh_token"] == current
    assert document["seeds"] == [fingerprint(DEFAULT_REFRESH_TOKEN)]
    assert document["x_refresh_token_expires_in"] == 8726400

    # A restart: a new process configured with the original (now spent) refresh token. Its access token expired.
    await expire(sandbox)
    transport = Recording(sandbox.transport)
    async with quickbooks(tokens_for(redis, names, transport), transport) as client:
        await client.create_sales_receipt(receipt("2.00"), request_id="r2")
    requests = (await sandbox_tokens(sandbox))["requests"]
    assert [r["refresh_token"] for r in requests] == [DEFAULT_REFRESH_TOKEN, current]  # the rotated one
    assert all(r["status"] == 200 for r in requests)
    assert (await stored(redis, names))["refresh_token"] == (await sandbox_tokens(sandbox))["refresh_token"]


async def test_a_stored_token_wins_over_the_configured_one(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with quickbooks(tokens_for(redis, names, sandbox.transport), sandbox.transport) as client:
        await client.create_sales_receipt(receipt(), request_id="r1")
    # Another process starting later with the configured token: it uses the stored access token, no refresh.
    transport = Recording(sandbox.transport)
    async with quickbooks(tokens_for(redis, names, transport), transport) as client:
        await client.create_sales_receipt(receipt("3.00"), request_id="r2")
    assert transport.count(TOKEN_PATH) == 0
    assert transport.count("/salesreceipt", 200) == 1


async def test_a_new_configured_refresh_token_replaces_the_stored_set(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    async with quickbooks(tokens_for(redis, names, sandbox.transport), sandbox.transport) as client:
        await client.create_sales_receipt(receipt(), request_id="r1")
    # The operator authorized hookbus again: a new grant, a new configured refresh token.
    sandbox.app.state.sandbox.refresh_token = "reauthorized-grant"
    transport = Recording(sandbox.transport)
    async with quickbooks(tokens_for(redis, names, transport, refresh_token="reauthorized-grant"), transport) as qb:
        await qb.create_sales_receipt(receipt("4.00"), request_id="r2")
    assert transport.count(TOKEN_PATH, 200) == 1
    document = await stored(redis, names)
    assert document["seeds"] == [fingerprint(DEFAULT_REFRESH_TOKEN), fingerprint("reauthorized-grant")]
    # A process still configured with the old token (a rolling deploy) follows the stored set, not its own token.
    await expire(sandbox)
    async with quickbooks(tokens_for(redis, names, sandbox.transport), sandbox.transport) as client:
        await client.create_sales_receipt(receipt("6.00"), request_id="r3")
    assert all(r["status"] == 200 for r in (await sandbox_tokens(sandbox))["requests"])


async def test_two_processes_never_refresh_with_the_same_refresh_token(redis, second_redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    transport = Recording(sandbox.transport, token_delay_s=0.2)  # refreshes are slow: the processes overlap
    one = quickbooks(tokens_for(redis, names, transport), transport)
    two = quickbooks(tokens_for(second_redis, names, transport), transport)
    try:
        for round_ in range(3):
            calls = [
                client.create_sales_receipt(receipt(), request_id=f"r{round_}-{i}")
                for i, client in enumerate([one, two] * 4)
            ]
            await asyncio.gather(*calls)
            await expire(sandbox)
    finally:
        await one.aclose()
        await two.aclose()
    requests = (await sandbox_tokens(sandbox))["requests"]
    assert len(requests) == 3, "one refresh per expiry, for both processes together"
    assert all(r["status"] == 200 for r in requests), requests
    used = [r["refresh_token"] for r in requests]
    assert len(set(used)) == len(used)
    assert len((await sandbox.objects())["salesreceipts"]) == 24


async def test_nothing_secret_in_logs_or_reprs(redis, names, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    sandbox = QuickBooksSandbox()
    tokens = tokens_for(redis, names, sandbox.transport)
    settings = accounting.AccountingSettings(
        quickbooks_realm_id=REALM,
        quickbooks_access_token="fixed-access-token-secret",
        quickbooks_refresh_token=DEFAULT_REFRESH_TOKEN,
        quickbooks_client_id=DEFAULT_CLIENT_ID,
        quickbooks_client_secret=DEFAULT_CLIENT_SECRET,
    )
    async with quickbooks(tokens, sandbox.transport) as client:
        await client.create_sales_receipt(receipt(), request_id="r1")
        await expire(sandbox)
        await client.create_sales_receipt(receipt(), request_id="r2")
        texts = [repr(tokens), repr(client), repr(settings), repr(BearerAuth(tokens)), repr(StaticToken("abc-secret"))]
    revoked = tokens_for(None, names, sandbox.transport, refresh_token="revoked-refresh-secret")
    with pytest.raises(OAuthRefreshFailed) as failure:
        await revoked.access_token()
    await revoked.aclose()
    texts += [str(failure.value), repr(failure.value), repr(failure.value.__cause__), repr(revoked)]

    state = await sandbox_tokens(sandbox)
    secrets = {DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, "revoked-refresh-secret", "fixed-access-token-secret"}
    secrets |= {r["refresh_token"] for r in state["requests"]} | {state["refresh_token"], *state["access_tokens"]}
    secrets.add("abc-secret")
    secrets.add(str((await stored(redis, names))["access_token"]))
    assert len(caplog.records) >= 3  # refreshes and the refusal are logged …
    assert any(r.getMessage() == "oauth access token refreshed" for r in caplog.records)
    for record in caplog.records:  # … without a token or secret in the message or any field
        texts.append(record.getMessage())
        texts.extend(str(value) for value in record.__dict__.values())
    texts.append(caplog.text)
    leaks = [(secret, text) for secret in secrets for text in texts if secret in text]
    assert not leaks


async def test_refused_refresh_is_dead_lettered_with_a_clear_reason(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    consumer = oauth_consumer(sandbox, sandbox.transport, refresh_token="revoked-or-expired")
    async with ingest_client(ingest_app(redis)) as client:
        async with running_worker(consumer, redis, names):
            await deliver(client, payment(1))
            await drained(redis, names)
    (_, fields), *_ = await redis.xrange(names.dlq("accounting"))
    record = DeadLetter.from_fields(fields)
    assert record.reason == "oauth refresh failed: invalid_grant"
    assert record.error_type == "OAuthRefreshFailed" and record.attempts == 1
    assert (await sandbox.objects())["salesreceipts"] == []


async def test_worker_books_across_an_expiry_with_a_refresh_token(redis, second_redis, names) -> None:  # type: ignore[no-untyped-def]
    """Two worker processes (their own Redis connections and lifespans), payments before and after the access
    token expires: everything is booked once, nothing dead-lettered, one refresh per expiry."""
    sandbox = QuickBooksSandbox()
    transport = Recording(sandbox.transport, token_delay_s=0.1)
    async with ingest_client(ingest_app(redis)) as client:
        async with (
            running_worker(oauth_consumer(sandbox, transport), redis, names, consumer_name="w1"),
            running_worker(oauth_consumer(sandbox, transport), second_redis, names, consumer_name="w2"),
        ):
            for n in range(6):
                await deliver(client, payment(n))
            await drained(redis, names)
            await expire(sandbox)
            for n in range(6, 12):
                await deliver(client, payment(n))
            await drained(redis, names)
    assert len((await sandbox.objects())["salesreceipts"]) == 12
    assert await redis.xlen(names.dlq("accounting")) == 0
    requests = (await sandbox_tokens(sandbox))["requests"]
    assert [r["status"] for r in requests] == [200, 200]


async def test_fixed_access_token_still_works_and_nothing_is_stored(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    config = accounting.AccountingSettings(
        quickbooks_base_url="http://qb", quickbooks_realm_id=REALM, quickbooks_access_token="sandbox-token"
    )
    resources = Resources(redis, names, Limiter(redis, names))
    async with accounting.make_lifespan(config, transport=sandbox.transport)(resources) as state:
        await state["quickbooks"].create_sales_receipt(receipt(), request_id="r1")
        await expire(sandbox)
        with pytest.raises(RetryLater, match="quickbooks_auth: 401"):
            await state["quickbooks"].create_sales_receipt(receipt(), request_id="r2")
    assert await redis.get(key(names)) is None
    assert (await sandbox_tokens(sandbox))["requests"] == []


async def test_missing_credentials_are_a_config_error(redis, names) -> None:  # type: ignore[no-untyped-def]
    resources = Resources(redis, names, Limiter(redis, names))
    for config in (
        accounting.AccountingSettings(quickbooks_realm_id=REALM),
        accounting.AccountingSettings(quickbooks_realm_id=REALM, quickbooks_refresh_token="r"),
    ):
        with pytest.raises(ConfigError, match="QUICKBOOKS_CLIENT_ID"):
            async with accounting.make_lifespan(config)(resources):
                pass


async def test_a_refreshed_token_that_could_not_be_stored_is_stored_on_next_use(redis, names, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sandbox = QuickBooksSandbox()
    tokens = tokens_for(redis, names, sandbox.transport)
    real_write = RefreshingToken._write
    failures = iter([True])

    async def flaky_write(self: RefreshingToken, document: dict[str, Any]) -> None:
        if next(failures, False):
            raise RedisConnectionError("Redis went away")
        await real_write(self, document)

    monkeypatch.setattr(RefreshingToken, "_write", flaky_write)
    first = await tokens.access_token()  # refreshed; the write failed, the token is still used
    assert await redis.get(key(names)) is None
    assert await tokens.access_token() == first  # the next use stores it before anything else
    assert (await stored(redis, names))["refresh_token"] == (await sandbox_tokens(sandbox))["refresh_token"]
    await tokens.aclose()


# ---------------------------------------------------------------------------------- token endpoint error mapping
def mock_tokens(handler: Any, **kwargs: Any) -> RefreshingToken:
    options: dict[str, Any] = {
        "api": "test",
        "token_url": "http://auth/token",
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "rt",
    }
    return RefreshingToken(transport=httpx.MockTransport(handler), **(options | kwargs))


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "reason", "delay"),
    [
        (400, {"error": "invalid_grant"}, {}, OAuthRefreshFailed, "oauth refresh failed: invalid_grant", None),
        (401, {"error": "invalid_client"}, {}, OAuthRefreshFailed, "oauth refresh failed: invalid_client", None),
        (400, {"error": "invalid_grant", "error_description": 'Token "x" revoked'}, {}, OAuthRefreshFailed, None, None),
        (400, {"error": "slow_down"}, {}, RetryLater, "oauth refresh failed: slow_down", None),
        (503, {"error": "server_error"}, {"Retry-After": "7"}, RetryLater, "oauth refresh failed: HTTP 503", 7.0),
        (429, {}, {"Retry-After": "3"}, RetryLater, "oauth refresh failed: HTTP 429", 3.0),
        (404, "<html>not here</html>", {}, OAuthRefreshFailed, "oauth refresh failed: HTTP 404", None),
        (200, "not json", {}, RetryLater, None, None),
        (
            200,
            {"token_type": "bearer"},
            {},
            RetryLater,
            "oauth refresh failed: no access_token in the token response",
            None,
        ),
    ],
)
async def test_token_endpoint_errors(status, body, headers, expected, reason, delay) -> None:  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    tokens = mock_tokens(handler)
    with pytest.raises(expected) as caught:
        await tokens.access_token()
    if reason is not None:
        assert caught.value.reason == reason
    if expected is OAuthRefreshFailed:
        assert isinstance(caught.value, PermanentError)
    if delay is not None:
        assert caught.value.delay == delay
    await tokens.aclose()


async def test_token_endpoint_transport_error_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    tokens = mock_tokens(handler)
    with pytest.raises(RetryLater, match="oauth refresh failed: ConnectTimeout"):
        await tokens.access_token()
    await tokens.aclose()


async def test_client_authentication_methods() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "at", "expires_in": 3600, "token_type": "Bearer"})

    basic = mock_tokens(handler)  # Intuit
    post = mock_tokens(handler, auth_method="client_secret_post")  # Google
    assert await basic.access_token() == "at" and await post.access_token() == "at"
    await basic.aclose()
    await post.aclose()
    first, second = seen
    assert first.headers["Authorization"] == "Basic Y2lkOmNzZWNyZXQ="  # base64("cid:csecret")
    assert parse_qs(first.content.decode()) == {"grant_type": ["refresh_token"], "refresh_token": ["rt"]}
    assert "Authorization" not in second.headers
    assert parse_qs(second.content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["rt"],
        "client_id": ["cid"],
        "client_secret": ["csecret"],
    }
    assert first.headers["Accept"] == "application/json"


async def test_renewed_before_expiry_and_kept_refresh_token_when_not_rotated() -> None:
    issued = iter(["a1", "a2"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": next(issued), "expires_in": 30})  # inside the 60 s leeway

    tokens = mock_tokens(handler)
    assert await tokens.access_token() == "a1"
    assert await tokens.access_token() == "a2"  # about to expire: renewed before use
    await tokens.aclose()


# ------------------------------------------------------------------------------------------------- Google Calendar
async def test_google_calendar_shares_its_token_set_in_redis(redis, second_redis, names) -> None:  # type: ignore[no-untyped-def]
    app = create_google()
    transport = Recording(httpx.ASGITransport(app=app))
    config = CalendarSettings(
        google_calendar_base_url="http://gcal",
        google_calendar_refresh_token="sandbox-refresh",
        google_calendar_client_id="gcid",
        google_calendar_client_secret="gsecret",
        google_oauth_token_url="http://gcal/token",
    )
    limiter = Limiter(redis, names)
    async with (
        google_client(config, transport=transport, resources=Resources(redis, names, limiter)) as one,
        google_client(config, transport=transport, resources=Resources(second_redis, names, limiter)) as two,
    ):
        await asyncio.gather(one.list_events("primary"), two.list_events("primary"))
    assert transport.count("/token") == 1
    document = orjson.loads(await redis.get(names.state("calendar", "oauth:google_calendar")))
    assert document["refresh_token"] == "sandbox-refresh"  # Google does not rotate: the old one is kept
    assert document["access_token"] == "sandbox-token"


async def test_google_calendar_revoked_grant_is_permanent() -> None:
    app = create_google()
    config = CalendarSettings(
        google_calendar_base_url="http://gcal",
        google_calendar_refresh_token="revoked",
        google_calendar_client_id="gcid",
        google_calendar_client_secret="gsecret",
        google_oauth_token_url="http://gcal/token",
    )
    async with google_client(config, transport=httpx.ASGITransport(app=app)) as gcal:
        with pytest.raises(OAuthRefreshFailed, match="oauth refresh failed: invalid_grant"):
            await gcal.list_events("primary")
