"""The HubSpot and SendGrid stand-ins answer like the real APIs where hookbus depends on it, and the e-mail client
maps their answers (the supplier stand-in is covered in test_inventory.py)."""

from __future__ import annotations

import time

import httpx
import pytest

from bus.errors import RetryLater
from consumers.clients.email import EmailClient, EmailMessage
from consumers.clients.responses import DownstreamAuthError, DownstreamValidationError

from .leads_support import TOKEN, email, hubspot

pytestmark = pytest.mark.anyio


async def test_hubspot_create_conflict_is_409_with_the_existing_id() -> None:
    box = hubspot()
    first = await box.request("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "PAT@Example.com"}})
    assert first.status_code == 201 and first.json()["id"] == "501"
    again = await box.request("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "pat@example.com"}})
    assert again.status_code == 409
    assert again.json()["message"] == "Contact already exists. Existing ID: 501"
    assert again.json()["category"] == "CONFLICT" and again.json()["status"] == "error"


async def test_hubspot_batch_upsert_semantics() -> None:
    box = hubspot()

    async def upsert(*inputs: dict) -> httpx.Response:  # type: ignore[type-arg]
        return await box.request("POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": list(inputs)})

    created = await upsert({"idProperty": "email", "id": "pat@example.com", "properties": {"email": "PAT@Example.com"}})
    assert created.status_code == 200 and created.json()["status"] == "COMPLETE"
    (result,) = created.json()["results"]
    assert (result["id"], result["new"], result["properties"]["email"]) == ("501", True, "PAT@Example.com")
    updated = await upsert({"idProperty": "email", "id": "Pat@EXAMPLE.com", "properties": {"firstname": "Pat"}})
    assert [(r["id"], r["new"]) for r in updated.json()["results"]] == [("501", False)]
    non_unique = await upsert({"idProperty": "firstname", "id": "Pat", "properties": {}})
    assert non_unique.status_code == 400
    assert "Unable to perform update/upsert by non-unique 0-1 property firstname" in non_unique.json()["message"]
    duplicates = await upsert({"idProperty": "email", "id": "a@b.co"}, {"idProperty": "email", "id": "A@b.co"})
    assert duplicates.status_code == 400 and "Duplicate IDs" in duplicates.json()["message"]
    invalid = await upsert(
        {
            "idProperty": "email",
            "id": "a@b.co",
            "properties": {"no_such_property": "x", "createdate": "1", "lifecyclestage": "vip"},
        }
    )
    body = invalid.json()
    assert invalid.status_code == 400 and body["category"] == "VALIDATION_ERROR"
    for code in ("PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE", "INVALID_OPTION"):
        assert code in body["message"]
    unauthenticated = await box.request(
        "POST", "/crm/v3/objects/contacts/batch/upsert", json={}, headers={"Authorization": "Bearer wrong"}
    )
    assert unauthenticated.status_code == 401 and unauthenticated.json()["category"] == "INVALID_AUTHENTICATION"
    await box.fault(status=429, retry_after="3", count=1)
    throttled = await upsert({"idProperty": "email", "id": "a@b.co"})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert throttled.json()["category"] == "RATE_LIMITS"
    assert len((await box.objects())["contacts"]) == 1


async def test_hubspot_sequences_one_at_a_time_and_replies_unenroll() -> None:
    box = hubspot()
    contact = (await box.request("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "a@b.co"}})).json()
    body = {"contactId": contact["id"], "sequenceId": "1001", "senderEmail": "sales@shop.example"}
    path = "/automation/v4/sequences/enrollments"
    assert (await box.request("POST", path, json=body)).status_code == 400  # userId is required
    assert (await box.request("POST", path, params={"userId": "7001"}, json=body)).status_code == 200
    assert (await box.request("POST", path, params={"userId": "7001"}, json=body)).status_code == 400
    status = await box.request("GET", f"{path}/contact/{contact['id']}")
    assert status.status_code == 200 and status.json()["sequenceId"] == "1001"
    await box.post(f"/_sandbox/contacts/{contact['id']}/reply")
    assert (await box.request("GET", f"{path}/contact/{contact['id']}")).status_code == 404
    unknown = {**body, "sequenceId": "999"}
    assert (await box.request("POST", path, params={"userId": "7001"}, json=unknown)).status_code == 404


def alert(**overrides: object) -> EmailMessage:
    fields = {"to": ["buyer@shop.example"], "sender": "hookbus@shop.example", "subject": "s", "text": "t"}
    return EmailMessage(**(fields | overrides))  # type: ignore[arg-type]


async def test_sendgrid_stand_in_and_client_mapping() -> None:
    box = email()
    async with EmailClient(base_url="http://sendgrid", api_key=TOKEN, transport=box.transport) as client:
        message_id = await client.send(alert())
        assert message_id
        with pytest.raises(DownstreamValidationError, match="from.email: Does not contain a valid address"):
            await client.send(alert(sender="not-an-address"))
        with pytest.raises(DownstreamValidationError, match="subject: The subject is required"):
            await client.send(alert(subject=""))
        await box.fault(status=429, retry_after="2")
        with pytest.raises(RetryLater) as throttled:
            await client.send(alert())
        assert throttled.value.delay == 2.0
    async with EmailClient(base_url="http://sendgrid", api_key="wrong", transport=box.transport) as client:
        with pytest.raises(DownstreamAuthError, match="authorization grant is invalid"):
            await client.send(alert())
    (sent,) = (await box.objects())["messages"]
    assert sent["message_id"] == message_id and sent["to"] == ["buyer@shop.example"] and sent["text"] == "t"


async def test_sendgrid_rate_limit_reset_header_when_no_retry_after() -> None:
    reset = int(time.time()) + 30

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json={"errors": [{"message": "too many requests"}]}, headers={"X-RateLimit-Reset": str(reset)}
        )

    async with EmailClient(base_url="http://x", api_key="k", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(RetryLater) as throttled:
            await client.send(alert())
    assert 28 <= (throttled.value.delay or 0) <= 30
