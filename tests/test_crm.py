"""Signed form post → ingest → lead.created → crm worker → HubSpot sandbox, on a real Valkey.

Case 040 (one contact per person, 409 "already exists" → update), the follow-up once per contact and its stop
conditions, downstream failures mapped to retries and dead letters.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from bus.deadletter import DeadLetter
from bus.errors import PermanentError, RetryLater
from consumers.clients.hubspot import HubSpotClient
from consumers.clients.responses import DownstreamAuthError, DownstreamValidationError
from consumers.crm import CrmRules, contact_properties
from ingest.sources.forms import FormConfig, FormSource, hmac_signature
from ingest.sources.standard_webhooks import signature_headers

from .leads_support import Sandbox, crm_consumer, hubspot, ingest_with
from .support import idle, ingest_client, running_worker, wait_until

pytestmark = pytest.mark.anyio

SECRET = "form-contact-secret-0001"
SEQUENCE = {"mode": "sequence", "sequence_id": "1001", "sender_email": "sales@shop.example", "user_id": "7001"}


def form() -> FormSource:
    config = FormConfig(secret_env="FORM_CONTACT_SECRET", honeypot="website", lead_source="website-contact")
    return FormSource("contact", config, (SECRET,))


async def submit(client: httpx.AsyncClient, **fields: Any) -> str:
    body = orjson.dumps(fields)
    headers = {"Content-Type": "application/json", "X-Hookbus-Signature": hmac_signature(SECRET, body)}
    response = await client.post("/webhooks/forms/contact", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def drained(redis, names) -> None:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await idle(redis, names, "crm", ["lead.created"])

    await wait_until(check, what="the crm group to drain")


async def run_leads(redis, names, sandbox: Sandbox, leads: list[dict[str, Any]], rules: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    """Submit ``leads`` one after the other (each handled before the next), return the worker."""
    consumer = crm_consumer(sandbox, rules)
    async with ingest_client(ingest_with(redis, [form()], consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names) as worker:
            for lead in leads:
                assert await submit(client, **lead) == "accepted"
                await drained(redis, names)
    return worker


def upserts(objects: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in objects["requests"] if r["path"] == "/crm/v3/objects/contacts/batch/upsert"]


async def test_case_040_same_person_is_one_contact(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = hubspot()
    leads = [
        {"email": "PAT@Example.com", "name": "Pat Example", "utm_source": "google", "utm_medium": "cpc"},
        {"email": " pat@example.com ", "name": "Pat Example", "phone": "+15555550100"},
        {"email": "pat+quote@example.com", "name": "Pat Example"},
    ]
    worker = await run_leads(redis, names, sandbox, leads, {"follow_up": SEQUENCE})
    objects = await sandbox.objects()
    contacts = {c["id"]: c["properties"] for c in objects["contacts"]}
    assert sorted(contacts) == ["501", "502"]  # exactly 2 contacts
    assert contacts["501"]["email"] == "PAT@Example.com"  # the original casing for the new contact
    assert contacts["502"]["email"] == "pat+quote@example.com"  # plus-tags are a different person
    assert contacts["501"]["phone"] == "+15555550100"  # the second submission updated contact 501
    assert contacts["501"]["hookbus_utm_source"] == "google"  # and did not blank the first one's tags
    assert contacts["501"]["hookbus_lead_source"] == "website-contact"
    assert [r["body"]["inputs"][0]["id"] for r in upserts(objects)] == [
        "pat@example.com",
        "pat@example.com",
        "pat+quote@example.com",
    ]
    assert [r["body"]["inputs"][0]["idProperty"] for r in upserts(objects)] == ["email"] * 3
    # Follow-up once per contact: two sequence enrollments, none for the repeat.
    assert sorted(e["contactId"] for e in objects["enrollments"]) == ["501", "502"]
    assert await redis.xlen(names.dlq("crm")) == 0
    assert worker.counts["acked"] == 3 and worker.counts["dead_lettered"] == 0


async def test_case_040_conflict_409_updates_the_existing_contact(redis, names) -> None:  # type: ignore[no-untyped-def]
    """HubSpot's 409 "Contact already exists. Existing ID: 501" (a create that raced another) → PATCH 501."""
    sandbox = hubspot()
    consumer = crm_consumer(sandbox, {"follow_up": SEQUENCE})
    async with ingest_client(ingest_with(redis, [form()], consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names):
            await submit(client, email="PAT@Example.com", name="Pat Example")
            await drained(redis, names)
            await sandbox.fault(status=409, count=1, path="/crm/v3/objects/contacts/batch/upsert")
            await submit(client, email=" pat@example.com ", company="Example Ltd")
            await drained(redis, names)
            await submit(client, email="pat+quote@example.com")
            await drained(redis, names)
    objects = await sandbox.objects()
    assert len(objects["contacts"]) == 2
    patches = [r for r in objects["requests"] if r["method"] == "PATCH"]
    assert [(r["path"], r["body"]["properties"]["company"]) for r in patches] == [
        ("/crm/v3/objects/contacts/501", "Example Ltd")
    ]
    assert len(objects["enrollments"]) == 2
    assert await redis.xlen(names.dlq("crm")) == 0


async def test_same_lead_twice_as_form_and_json_with_case_differences(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = hubspot()
    consumer = crm_consumer(sandbox, {"follow_up": {"mode": "list", "list_id": "2001"}})
    async with ingest_client(ingest_with(redis, [form()], consumers=[consumer])) as client:
        async with running_worker(consumer, redis, names):
            body = b"email=Jo.Doe%40Example.COM&name=Jo+Doe&message=Quote+please"
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Hookbus-Signature": hmac_signature(SECRET, body),
            }
            assert (await client.post("/webhooks/forms/contact", content=body, headers=headers)).status_code == 200
            await drained(redis, names)
            assert await submit(client, email="jo.doe@example.com", name="Jo Doe", message="Any news?") == "accepted"
            await drained(redis, names)
    objects = await sandbox.objects()
    (contact,) = objects["contacts"]
    assert contact["properties"]["email"] == "Jo.Doe@Example.COM"
    assert contact["properties"]["message"] == "Any news?"  # updated by the second submission
    assert contact["properties"]["firstname"] == "Jo" and contact["properties"]["lastname"] == "Doe"
    assert objects["list_memberships"] == {"2001": [contact["id"]]}
    adds = [r for r in objects["requests"] if r["path"].endswith("/memberships/add")]
    assert len(adds) == 1  # the follow-up started once


async def test_follow_up_stops_for_customers_and_replies(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = hubspot()
    created = await sandbox.request(
        "POST",
        "/crm/v3/objects/contacts",
        json={"properties": {"email": "buyer@example.com", "lifecyclestage": "customer"}},
    )
    assert created.status_code == 201
    customer_id = created.json()["id"]
    replied = await sandbox.request("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "r@example.com"}})
    await sandbox.post(f"/_sandbox/contacts/{replied.json()['id']}/reply")
    leads = [{"email": "Buyer@Example.com"}, {"email": "r@example.com"}, {"email": "new@example.com"}]
    await run_leads(redis, names, sandbox, leads, {"follow_up": SEQUENCE})
    objects = await sandbox.objects()
    assert len(objects["contacts"]) == 3
    assert [e["toEmail"] for e in objects["enrollments"]] == ["new@example.com"]
    customer = next(c for c in objects["contacts"] if c["id"] == customer_id)
    assert customer["properties"]["lifecyclestage"] == "customer"  # never demoted to lead


async def test_rate_limit_is_retried_after_retry_after(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = hubspot()
    await sandbox.fault(status=429, count=1, retry_after="1")
    worker = await run_leads(redis, names, sandbox, [{"email": "slow@example.com"}])
    assert len((await sandbox.objects())["contacts"]) == 1
    assert worker.counts["retry"] == 1 and worker.counts["acked"] == 1


async def test_validation_error_is_dead_lettered_with_hubspots_message(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = hubspot()
    rules = {"properties": {"lead_source": "lead_source_that_does_not_exist"}}
    await run_leads(redis, names, sandbox, [{"email": "x@example.com"}], rules)
    ((_, fields),) = await redis.xrange(names.dlq("crm"))
    record = DeadLetter.from_fields(fields)
    assert record.error_type == "DownstreamValidationError" and record.attempts == 1
    assert record.reason.startswith("hubspot_validation: 400 Property values were not valid")
    assert 'Property \\"lead_source_that_does_not_exist\\" does not exist' in record.reason
    assert (await sandbox.objects())["contacts"] == []


async def test_leads_without_email_and_other_sources_are_skipped(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandbox = hubspot()
    await run_leads(redis, names, sandbox, [{"name": "No Mail", "phone": "+15555550100"}, {"email": "bad@"}])
    assert (await sandbox.objects())["requests"] == []
    only_quotes = {"sources": ["forms/quote"]}
    await run_leads(redis, names, sandbox, [{"email": "ok@example.com"}], only_quotes)
    assert (await sandbox.objects())["requests"] == []


def test_contact_properties_mapping() -> None:
    data = {
        "email": " Pat@Example.com ",
        "name": "Pat  van Example",
        "phone": None,
        "phone_raw": "555 0100",
        "lead_source": "website",
        "form_id": "contact",
        "utm": {"source": "news", "medium": "", "campaign": None},
        "referrer": "https://ref.example/",
        "message": "  ",
    }
    properties = contact_properties(data, CrmRules(properties={"referrer": "", "form_id": "source_form"}).property_map)
    assert properties == {
        "email": "Pat@Example.com",
        "firstname": "Pat",
        "lastname": "van Example",
        "phone": "555 0100",
        "hookbus_lead_source": "website",
        "source_form": "contact",
        "hookbus_utm_source": "news",
    }


def test_rules_validation() -> None:
    with pytest.raises(ValueError, match="sequence_id"):
        CrmRules.model_validate({"follow_up": {"mode": "sequence"}})
    with pytest.raises(ValueError, match="list_id"):
        CrmRules.model_validate({"follow_up": {"mode": "list"}})
    with pytest.raises(ValueError, match="unknown lead field"):
        CrmRules.model_validate({"properties": {"utm_term": "x"}})


# --- the client's error mapping, with httpx.MockTransport ------------------------------------------------------------


def client_answering(handler) -> HubSpotClient:  # type: ignore[no-untyped-def]
    return HubSpotClient(base_url="http://hubspot", access_token="t", transport=httpx.MockTransport(handler))


async def test_client_error_mapping() -> None:
    def status(code: int, **headers: str):  # type: ignore[no-untyped-def]
        body = {"status": "error", "message": f"m{code}", "category": "X"}
        return lambda request: httpx.Response(code, json=body, headers=headers)

    async def upsert(handler) -> None:  # type: ignore[no-untyped-def]
        async with client_answering(handler) as client:
            await client.upsert_contact("a@b.co", {"email": "a@b.co"})

    with pytest.raises(DownstreamValidationError, match="hubspot_validation: 400 m400"):
        await upsert(status(400))
    for code in (401, 403):
        with pytest.raises(DownstreamAuthError, match=f"hubspot_auth: {code}"):
            await upsert(status(code))
    with pytest.raises(RetryLater) as throttled:
        await upsert(status(429, **{"Retry-After": "7"}))
    assert throttled.value.delay == 7.0
    with pytest.raises(RetryLater) as unavailable:
        await upsert(status(503))
    assert unavailable.value.delay is None
    with pytest.raises(PermanentError, match="no existing contact id"):
        await upsert(status(409))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RetryLater, match="hubspot_transport_error: ConnectError"):
        await upsert(refuse)


async def test_an_older_submission_from_the_same_source_is_skipped(redis, names) -> None:  # type: ignore[no-untyped-def]
    """Out-of-order delivery: the sender's later post arrives first; the earlier one must not overwrite it."""
    secret = "whsec_aG9va2J1cy1zdGFuZGFyZC13ZWJob29rcy1rZXkhISE="
    config = FormConfig(secret_env="FORM_QUOTE_SECRET", signature="standard-webhooks")
    source = FormSource("quote", config, (secret,))
    sandbox = hubspot()
    consumer = crm_consumer(sandbox)
    now = 1767225600

    async def post(client: httpx.AsyncClient, msg_id: str, at: int, message: str) -> None:
        body = orjson.dumps({"email": "late@example.com", "message": message})
        headers = {"Content-Type": "application/json"} | signature_headers(secret, msg_id, at, body)
        response = await client.post("/webhooks/forms/quote", content=body, headers=headers)
        assert response.json()["status"] == "accepted", response.text

    async with ingest_client(ingest_with(redis, [source], consumers=[consumer], clock=lambda: now)) as client:
        async with running_worker(consumer, redis, names) as worker:
            await post(client, "msg_2", now - 10, "second thoughts")
            await drained(redis, names)
            await post(client, "msg_1", now - 60, "first thoughts")  # sent earlier, delivered later
            await drained(redis, names)
    (contact,) = (await sandbox.objects())["contacts"]
    assert contact["properties"]["message"] == "second thoughts"
    assert len(upserts(await sandbox.objects())) == 1 and worker.counts["acked"] == 2
