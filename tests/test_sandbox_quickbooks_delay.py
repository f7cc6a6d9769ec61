"""The QuickBooks sandbox's delay fault: the create is stored at once, its response is held back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from consumers.sandboxes.quickbooks import create_app

TOKEN = "sandbox-token"
REALM = "9130357992223456"
BODY = {
    "Line": [{"Amount": 42, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {}}],
    "CurrencyRef": {"value": "USD"},
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app() -> Starlette:
    return create_app(access_token=TOKEN)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://qb") as client:
        yield client


async def create(client: httpx.AsyncClient, request_id: str) -> httpx.Response:
    return await client.post(
        f"/v3/company/{REALM}/salesreceipt", params={"requestid": request_id}, json=BODY, headers=AUTH
    )


async def stored(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await client.get("/_sandbox/objects")).json()["salesreceipts"]


@pytest.mark.anyio
async def test_delayed_create_is_stored_before_the_response(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sandbox/faults", json={"delay_s": 0.6, "count": 1})
    assert response.status_code == 200
    assert response.json() == {"status": None, "count": 1, "retry_after": None, "delay_s": 0.6}

    started = time.monotonic()
    call = asyncio.create_task(create(client, "r1"))
    deadline = time.monotonic() + 5
    while not await stored(client):
        assert time.monotonic() < deadline, "the delayed create was never stored"
        await asyncio.sleep(0.01)
    assert not call.done(), "the response should still be held back while the object is already stored"
    response = await call
    assert time.monotonic() - started >= 0.6
    assert response.status_code == 200
    assert response.json()["SalesReceipt"]["Id"] == "1"

    # The fault is used up: a replay of the same requestid answers at once with the first object.
    started = time.monotonic()
    again = await create(client, "r1")
    assert time.monotonic() - started < 0.5
    assert again.json()["SalesReceipt"]["Id"] == "1"
    assert len(await stored(client)) == 1


@pytest.mark.anyio
async def test_delay_with_status_delays_the_injected_fault(client: httpx.AsyncClient) -> None:
    await client.post("/_sandbox/faults", json={"status": 503, "delay_s": 0.3, "count": 1})
    started = time.monotonic()
    response = await create(client, "r2")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503
    assert await stored(client) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "spec",
    [{}, {"count": 1}, {"delay_s": -1}, {"delay_s": True}, {"delay_s": "5"}, {"delay_s": 1, "status": 200}, [1]],
)
async def test_bad_fault_specs(client: httpx.AsyncClient, spec: object) -> None:
    assert (await client.post("/_sandbox/faults", json=spec)).status_code == 400


@pytest.mark.anyio
async def test_delay_ends_when_the_client_disconnects(app: Starlette, client: httpx.AsyncClient) -> None:
    await client.post("/_sandbox/faults", json={"delay_s": 30, "count": 1})
    body = json.dumps(BODY).encode()
    messages = [
        {"type": "http.request", "body": body, "more_body": False},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if len(messages) == 1:
            await asyncio.sleep(0.1)  # the client goes away a little after sending its request
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v3/company/{REALM}/salesreceipt",
        "raw_path": f"/v3/company/{REALM}/salesreceipt".encode(),
        "query_string": b"requestid=r3",
        "root_path": "",
        "headers": [(b"authorization", AUTH["Authorization"].encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("qb", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    assert len(await stored(client)) == 1
    assert sent and sent[0]["status"] == 200
