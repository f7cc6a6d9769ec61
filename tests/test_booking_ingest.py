"""Booking and calendar sources over HTTP on a real Valkey: cases 010, 011 and 014, rejections publish nothing,
body limits before verification (case 036's rule for every source)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from bus.envelope import Event
from ingest.sources import booking_samples as samples
from ingest.sources.google_calendar import mint_channel_id

from .booking_support import CHANNEL_TOKEN, booking_ingest, calcom_headers, calendly_headers
from .support import ingest_client

pytestmark = pytest.mark.anyio

T_010 = 1767225600
BODY_010 = (
    b'{"event":"invitee.created","created_at":"2026-01-01T00:00:00.000000Z","payload":{"email":"pat@example.com",'
    b'"scheduled_event":{"start_time":"2026-01-05T14:00:00.000000Z"}}}'
)
HEADER_010 = "t=1767225600,v1=4c23ae4093253b3e85e1a7e54e3d9439cb57acf1daeb55a3e27f11b5685cb253"
BODY_011 = b'{"triggerEvent":"MEETING_ENDED","createdAt":"2026-01-05T15:00:00.000Z","payload":{"uid":"bk_3F9a77"}}'
SIG_011 = "2c2300efbf716c38efa67f234ed36d5a3ada15594fdaed6976266fef7dfd490e"


def unsigned(source: str, trigger: str) -> float:
    return REGISTRY.get_sample_value("hookbus_unsigned_rejected_total", {"source": source, "trigger": trigger}) or 0.0


async def xlen(redis, event_type: str) -> int:  # type: ignore[no-untyped-def]
    return int(await redis.xlen(f"hookbus:stream:{event_type}"))


async def test_case_010_over_http(redis) -> None:  # type: ignore[no-untyped-def]
    now = {"t": T_010 + 100.0}
    async with ingest_client(booking_ingest(redis, [], clock=lambda: now["t"])) as client:
        statuses, deltas = [], []
        for clock, headers in (
            (T_010 + 100, {"Calendly-Webhook-Signature": HEADER_010}),
            (T_010 + 181, {"Calendly-Webhook-Signature": HEADER_010}),
            (T_010 + 100, {}),
        ):
            now["t"] = clock
            before = await xlen(redis, "booking.created")
            response = await client.post("/webhooks/calendly", content=BODY_010, headers=headers)
            statuses.append(response.status_code)
            deltas.append(await xlen(redis, "booking.created") - before)
    assert statuses == [200, 401, 401]
    assert deltas == [1, 0, 0]
    ((_, fields),) = await redis.xrange("hookbus:stream:booking.created")
    event = Event.from_fields(fields)
    assert (event.source, event.type, event.data["start"]) == ("calendly", "booking.created", "2026-01-05T14:00:00Z")


async def test_case_011_over_http(redis) -> None:  # type: ignore[no-untyped-def]
    before = unsigned("calcom", "MEETING_ENDED")
    stream = "booking.meeting_ended"
    async with ingest_client(booking_ingest(redis, [])) as client:
        a = await client.post("/webhooks/calcom", content=BODY_011, headers={"X-Cal-Signature-256": SIG_011})
        assert (a.status_code, a.json()["status"]) == (200, "accepted")
        assert unsigned("calcom", "MEETING_ENDED") == before
        assert await xlen(redis, stream) == 1
        b = await client.post(
            "/webhooks/calcom", content=BODY_011, headers={"X-Cal-Signature-256": f"sha256={SIG_011}"}
        )
        assert (b.status_code, b.json()["status"]) == (200, "duplicate")  # accepted; the same delivery again
        c = await client.post("/webhooks/calcom", content=BODY_011)
        assert (c.status_code, c.json()["error"]) == (401, "bad_signature")
    assert unsigned("calcom", "MEETING_ENDED") == before + 1
    ((_, fields),) = await redis.xrange(f"hookbus:stream:{stream}")
    assert Event.from_fields(fields).subject == "bk_3F9a77"


async def test_case_011_b_alone_is_accepted(redis) -> None:  # type: ignore[no-untyped-def]
    async with ingest_client(booking_ingest(redis, [])) as client:
        b = await client.post(
            "/webhooks/calcom", content=BODY_011, headers={"X-Cal-Signature-256": f"sha256={SIG_011}"}
        )
    assert (b.status_code, b.json()["status"]) == (200, "accepted")


@pytest.mark.parametrize("source", ["calendly", "calcom"])
async def test_wrong_stale_or_missing_signature_publishes_nothing(redis, source: str) -> None:  # type: ignore[no-untyped-def]
    body = samples.calendly_invitee() if source == "calendly" else samples.calcom_booking()
    good = calendly_headers(body) if source == "calendly" else calcom_headers(body)
    forged = dict(good)
    key = next(iter(good))
    forged[key] = good[key][:-4] + ("0000" if not good[key].endswith("0000") else "1111")
    attempts = [forged, {"Content-Type": "application/json"}]
    if source == "calendly":
        attempts.append(calendly_headers(body, timestamp=1767225600))  # stale
    async with ingest_client(booking_ingest(redis, [])) as client:
        for headers in attempts:
            response = await client.post(f"/webhooks/{source}", content=body, headers=headers)
            assert response.status_code == 401, (headers, response.text)
        assert await redis.keys("hookbus:stream:*") == []
        assert await redis.keys("hookbus:dedupe:*") == []
        ok = await client.post(f"/webhooks/{source}", content=body, headers=good)
        assert ok.status_code == 200 and ok.json()["status"] == "accepted"


@pytest.mark.parametrize("source", ["calendly", "calcom", "google-calendar"])
async def test_body_limit_before_verification(redis, source: str) -> None:  # type: ignore[no-untyped-def]
    body = b'{"x":"' + b"a" * 2000 + b'"}'
    async with ingest_client(booking_ingest(redis, [], max_body_bytes=1024)) as client:
        response = await client.post(f"/webhooks/{source}", content=body)  # unsigned: 413 comes first
        assert response.status_code == 413

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(4):
                yield b"a" * 512

        chunked = await client.post(f"/webhooks/{source}", content=chunks())
        assert chunked.status_code == 413
    assert await redis.keys("hookbus:stream:*") == []


def push(channel: str, state: str, number: int, *, token: str = CHANNEL_TOKEN) -> dict[str, str]:
    return samples.google_push_headers(
        channel_id=channel, token=token, state=state, message_number=number, resource_id="res-hb-0001"
    )


async def test_case_014_over_http(redis) -> None:  # type: ignore[no-untyped-def]
    channel = mint_channel_id(CHANNEL_TOKEN)
    requests = [
        push(channel, "sync", 1),
        push(channel, "exists", 2),
        push(channel, "exists", 2),  # Google's retry
        push(channel, "exists", 2, token="wrong"),
        push("chan-unknown", "exists", 2),
    ]
    async with ingest_client(booking_ingest(redis, [])) as client:
        results = []
        for headers in requests:
            response = await client.post("/webhooks/google-calendar", content=b"", headers=headers)
            results.append((response.status_code, response.json().get("status") or response.json().get("error")))
    assert results == [
        (200, "ignored"),
        (200, "accepted"),
        (200, "duplicate"),
        (401, "bad_signature"),
        (401, "bad_signature"),
    ]
    assert await xlen(redis, "calendar.sync_requested") == 1
    ((_, fields),) = await redis.xrange("hookbus:stream:calendar.sync_requested")
    event = Event.from_fields(fields)
    assert event.data["channel_id"] == channel
    assert (event.data["resource_id"], event.data["message_number"]) == ("res-hb-0001", 2)
    assert await redis.exists(f"hookbus:dedupe:google-calendar:{channel}:2") == 1
