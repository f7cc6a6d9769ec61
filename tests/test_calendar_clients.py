"""Google Calendar and Twilio clients: error mapping (httpx.MockTransport) and the sandboxes' validation rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from bus.errors import PermanentError, RetryLater
from consumers.clients.google_calendar import (
    EventAlreadyExists,
    GoogleCalendarClient,
    GoogleCalendarInvalid,
    GoogleCalendarRetry,
    SyncTokenExpired,
)
from consumers.clients.twilio import TwilioAuthError, TwilioClient, TwilioRejected

from .booking_support import FROM_NUMBER, TOKEN, TWILIO_SID, Sandboxes

pytestmark = pytest.mark.anyio


def google_error(status: int, reason: str, message: str = "x") -> dict[str, object]:
    return {"error": {"errors": [{"domain": "global", "reason": reason, "message": message}], "code": status}}


def google(handler: Callable[[httpx.Request], httpx.Response], **kwargs: str) -> GoogleCalendarClient:
    options = {"access_token": "t"} | kwargs
    return GoogleCalendarClient(base_url="http://gcal", transport=httpx.MockTransport(handler), **options)


EVENT = {"id": "abcde12345", "start": {"date": "2026-07-04"}, "end": {"date": "2026-07-05"}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "delay"),
    [
        (400, google_error(400, "invalid"), {}, GoogleCalendarInvalid, None),
        (401, google_error(401, "authError"), {}, GoogleCalendarRetry, None),
        (403, google_error(403, "rateLimitExceeded"), {"Retry-After": "7"}, GoogleCalendarRetry, 7.0),
        (403, google_error(403, "userRateLimitExceeded"), {}, GoogleCalendarRetry, None),
        (403, google_error(403, "forbidden"), {}, GoogleCalendarRetry, None),
        (409, google_error(409, "duplicate"), {}, EventAlreadyExists, None),
        (
            429,
            google_error(429, "rateLimitExceeded"),
            {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"},
            RetryLater,
            3600.0,
        ),
        (503, {}, {"Retry-After": "2"}, RetryLater, 2.0),
        (418, {}, {}, PermanentError, None),
    ],
)
async def test_google_insert_error_mapping(status, body, headers, expected, delay) -> None:  # type: ignore[no-untyped-def]
    client = google(lambda request: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(expected) as caught:
        await client.insert_event("primary", EVENT)
    if delay is not None:
        assert caught.value.delay == delay  # type: ignore[attr-defined]
    if status == 403:
        assert isinstance(caught.value, RetryLater)
        assert caught.value.reason.startswith(
            "gcal_rate_limited" if "LimitExceeded" in json.dumps(body) else "gcal_auth"
        )
    await client.aclose()


async def test_google_transport_errors_retry() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = google(boom)
    with pytest.raises(RetryLater, match="gcal_transport_error"):
        await client.insert_event("primary", EVENT)
    await client.aclose()


async def test_google_410_on_list_and_delete() -> None:
    client = google(
        lambda r: httpx.Response(410, json=google_error(410, "fullSyncRequired" if r.method == "GET" else "deleted"))
    )
    with pytest.raises(SyncTokenExpired):
        await client.list_events("primary", sync_token="old")
    assert await client.delete_event("primary", "abcde12345") is False
    await client.aclose()


async def test_google_refresh_token_flow() -> None:
    tokens = iter(["first", "second"])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            form = parse_qs(request.content.decode())
            assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["r"]
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 3599})
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer first":
            return httpx.Response(401, json=google_error(401, "authError"))  # revoked early: refresh once
        return httpx.Response(200, json={"items": [], "nextSyncToken": "s"})

    client = google(
        handler, access_token="", refresh_token="r", client_id="c", client_secret="s", token_url="http://oauth/token"
    )
    assert (await client.list_events("primary"))["nextSyncToken"] == "s"
    assert seen == ["Bearer first", "Bearer second"]
    await client.aclose()


async def test_google_client_against_the_sandbox() -> None:
    sandboxes = Sandboxes()
    client = GoogleCalendarClient(base_url="http://gcal", access_token=TOKEN, transport=sandboxes.google)
    bad_ids = ["bk_3F9a-77", "0f8fad5b-d9cb-469f-a165-70867728950e", "ab12", "wxyz12345"]
    for bad in bad_ids:
        with pytest.raises(GoogleCalendarInvalid, match="Invalid resource id value"):
            await client.insert_event("primary", {**EVENT, "id": bad})
    invalid_bodies = [
        {"id": "abcde00001", "start": {"date": "2026-07-04"}},  # no end
        {"id": "abcde00002", "start": {"date": "2026-07-04"}, "end": {"date": "2026-07-04"}},  # empty (end exclusive)
        {"id": "abcde00003", "start": {"date": "2026-07-04"}, "end": {"dateTime": "2026-07-05T00:00:00Z"}},  # mixed
        {"id": "abcde00004", "start": {"dateTime": "2026-07-04T09:00:00"}, "end": {"dateTime": "2026-07-04T10:00:00Z"}},
        {
            "id": "abcde00005",
            "start": {"dateTime": "2026-07-04T09:00:00-05:00", "timeZone": "Mars/Base"},
            "end": {"dateTime": "2026-07-04T10:00:00-05:00", "timeZone": "Mars/Base"},
        },
    ]
    for body in invalid_bodies:
        with pytest.raises(GoogleCalendarInvalid):
            await client.insert_event("primary", body)
    created = await client.insert_event("primary", EVENT)
    assert created["status"] == "confirmed" and created["id"] == EVENT["id"]
    with pytest.raises(EventAlreadyExists):
        await client.insert_event("primary", EVENT)
    patched = await client.patch_event("primary", EVENT["id"], {"end": {"date": "2026-07-06"}})
    assert patched["sequence"] == 1
    assert await client.delete_event("primary", EVENT["id"]) is True
    assert (await client.get_event("primary", EVENT["id"]))["status"] == "cancelled"
    with pytest.raises(EventAlreadyExists):  # a deleted event's id stays taken
        await client.insert_event("primary", EVENT)
    assert await client.get_event("primary", "neverused1") is None
    with pytest.raises(SyncTokenExpired):
        await client.list_events("primary", sync_token="made-up")
    await client.aclose()


# ---------------------------------------------------------------------------------------------------------- Twilio
def twilio(handler: Callable[[httpx.Request], httpx.Response]) -> TwilioClient:
    return TwilioClient(
        account_sid=TWILIO_SID,
        auth_token=TOKEN,
        from_number=FROM_NUMBER,
        base_url="http://twilio",
        transport=httpx.MockTransport(handler),
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"code": 21211, "message": "The 'To' number 555 is not a valid phone number."}, TwilioRejected),
        (401, {"code": 20003, "message": "Authenticate"}, TwilioAuthError),
        (429, {"code": 20429, "message": "Too Many Requests"}, RetryLater),
        (500, {}, RetryLater),
        (404, {"code": 20404}, PermanentError),
    ],
)
async def test_twilio_error_mapping(status, body, expected) -> None:  # type: ignore[no-untyped-def]
    client = twilio(lambda r: httpx.Response(status, json=body, headers={"Retry-After": "3"}))
    with pytest.raises(expected) as caught:
        await client.send_sms("+12125550100", "hi")
    if status == 400:
        assert caught.value.code == 21211  # type: ignore[attr-defined]
    if status == 429:
        assert caught.value.delay == 3.0  # type: ignore[attr-defined]
    await client.aclose()


async def test_twilio_request_shape() -> None:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(201, json={"sid": "SM" + "0" * 32, "status": "queued"})

    client = twilio(handler)
    assert (await client.send_sms("+12125550100", "Hi & bye"))["status"] == "queued"
    (request,) = captured
    assert request.url.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {"To": ["+12125550100"], "Body": ["Hi & bye"], "From": [FROM_NUMBER]}
    assert request.headers["Authorization"].startswith("Basic ")
    await client.aclose()


async def test_twilio_sandbox_validates_like_twilio() -> None:
    sandboxes = Sandboxes()
    client = TwilioClient(
        account_sid=TWILIO_SID,
        auth_token=TOKEN,
        from_number=FROM_NUMBER,
        base_url="http://twilio",
        transport=sandboxes.twilio,
    )
    for to, code in (("555-0100", 21211), ("+0123", 21211)):
        with pytest.raises(TwilioRejected) as caught:
            await client.send_sms(to, "hi")
        assert caught.value.code == code
    with pytest.raises(TwilioRejected) as caught:
        await client.send_sms("+12125550100", "")
    assert caught.value.code == 21602
    with pytest.raises(TwilioRejected) as caught:
        await client.send_sms("+12125550100", "x" * 1601)
    assert caught.value.code == 21617
    sent = await client.send_sms("+12125550100", "hello")
    assert sent["sid"].startswith("SM") and sent["status"] == "queued" and sent["from"] == FROM_NUMBER
    wrong = TwilioClient(
        account_sid=TWILIO_SID,
        auth_token="nope",
        from_number=FROM_NUMBER,
        base_url="http://twilio",
        transport=sandboxes.twilio,
    )
    with pytest.raises(TwilioAuthError):
        await wrong.send_sms("+12125550100", "hello")
    await sandboxes.twilio_fault(status=429, count=1, retry_after="2")
    with pytest.raises(RetryLater) as throttled:
        await client.send_sms("+12125550100", "hello")
    assert throttled.value.delay == 2.0
    assert [m["body"] for m in await sandboxes.messages()] == ["hello"]
    await client.aclose()
    await wrong.aclose()
