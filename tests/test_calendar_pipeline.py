"""Signed booking webhook → ingest → stream → calendar worker → Google Calendar and Twilio sandboxes, on a real Valkey.

Cases 021 (DST), 022 (all-day), 017 (reschedule-as-cancel, cancel before create), 023 (client-chosen id, 409), and
the issue's two-step idempotency (a failed SMS does not recreate the event).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import orjson
import pytest

from bus.deadletter import DeadLetter
from bus.envelope import Event
from bus.groups import ensure_groups
from bus.localtime import format_instant, resolve_local
from bus.publisher import Publisher
from consumers.clients.google_calendar import event_id_for
from ingest.sources import booking_samples as samples

from .booking_support import (
    FROM_NUMBER,
    RULES,
    Sandboxes,
    booking_ingest,
    calcom_headers,
    calendar_consumer,
    calendly_headers,
    unlimited,
)
from .support import idle, ingest_client, running_worker, wait_until

pytestmark = pytest.mark.anyio

TYPES = ("booking.created", "booking.rescheduled", "booking.cancelled", "booking.reschedule_requested")


async def drained(redis, names) -> None:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await idle(redis, names, "calendar", TYPES)

    await wait_until(check, timeout_s=20, what="the calendar group to drain")


async def post(client: httpx.AsyncClient, source: str, body: bytes) -> str:
    headers = calcom_headers(body) if source == "calcom" else calendly_headers(body)
    response = await client.post(f"/webhooks/{source}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def worker(consumer, redis, names):  # type: ignore[no-untyped-def]
    return running_worker(consumer, redis, names, limiter=unlimited(redis, names))


async def test_berlin_booking_on_dst_end_for_new_york_invitee(redis, names) -> None:  # type: ignore[no-untyped-def]
    """09:00 Europe/Berlin on 2026-10-25 (CEST ends that night), booked by an invitee in America/New_York."""
    sandboxes = Sandboxes()
    body = samples.calcom_booking(
        uid="bk_dst1",
        start="2026-10-25T08:00:00Z",
        minutes=30,
        attendee_time_zone="America/New_York",
        name="Sam Rivera",
    )
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names):
            assert await post(client, "calcom", body) == "accepted"
            await drained(redis, names)
    (insert,) = await sandboxes.requests("events.insert")
    assert insert["calendar_id"] == "anna@example.com"
    sent = insert["body"]
    assert sent["id"] == event_id_for("calcom", "bk_dst1")
    assert sent["start"] == {"dateTime": "2026-10-25T09:00:00+01:00", "timeZone": "Europe/Berlin"}
    assert sent["end"] == {"dateTime": "2026-10-25T09:30:00+01:00", "timeZone": "Europe/Berlin"}
    (message,) = await sandboxes.messages()
    assert (message["to"], message["from"]) == ("+12125550199", FROM_NUMBER)
    assert message["body"] == "Hi Sam, your Consultation with Anna is confirmed for Sun Oct 25, 4:00 AM EDT."


async def test_case_021_a_and_b_insert_body_and_sms(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    consumer = calendar_consumer(sandboxes)
    # (b) Cal.com: startTime 2025-11-03T14:00:00Z, attendee in New York, host Ben (rules: America/New_York).
    body = samples.calcom_booking(
        uid="bk_021b",
        start="2025-11-03T14:00:00Z",
        minutes=60,
        organizer_email="ben@example.com",
        organizer_name="Ben Ortiz",
        organizer_time_zone="America/New_York",
        attendee_time_zone="America/New_York",
        created_at="2025-10-20T12:00:00.000Z",
    )
    # (a) a form's naive local time, resolved by the shared policy and published as a form source would.
    start = resolve_local("2025-11-03", "09:00", "America/New_York").instant
    form_booking = Event(
        id="form-021a",
        source="forms",
        type="booking.created",
        time="2025-10-20T12:00:00Z",
        subject="f-021a",
        data={
            "booking_id": "f-021a",
            "start": format_instant(start),
            "end": "2025-11-03T15:00:00Z",
            "time_zone": "America/New_York",
            "all_day": False,
            "event_type": "Site visit",
            "staff": {"email": "ben@example.com", "name": None, "time_zone": None},
            "invitee": {"name": "Kim Park", "email": "kim@example.com", "phone": "+12125550123", "time_zone": None},
        },
    )
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names):
            assert await post(client, "calcom", body) == "accepted"
            await Publisher(redis, names).publish([form_booking], dedupe_id=("forms", "form-021a"))
            await drained(redis, names)
    inserts = {r["body"]["id"]: r["body"] for r in await sandboxes.requests("events.insert")}
    expected_start = {"dateTime": "2025-11-03T09:00:00-05:00", "timeZone": "America/New_York"}
    assert inserts[event_id_for("calcom", "bk_021b")]["start"] == expected_start
    assert inserts[event_id_for("forms", "f-021a")]["start"] == expected_start
    texts = sorted(m["body"] for m in await sandboxes.messages())
    assert texts == [
        "Hi Kim, your Site visit with Ben is confirmed for Mon Nov 3, 9:00 AM EST.",
        "Hi Sam, your Consultation with Ben is confirmed for Mon Nov 3, 9:00 AM EST.",
    ]


async def test_case_022_all_day_bookings(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    consumer = calendar_consumer(sandboxes)

    def booking(booking_id: str, start_date: str, end_date: str) -> Event:
        return Event(
            id=booking_id,
            source="forms",
            type="booking.created",
            time="2026-06-01T12:00:00Z",
            subject=booking_id,
            data={
                "booking_id": booking_id,
                "all_day": True,
                "start_date": start_date,
                "end_date": end_date,
                "start": None,
                "end": None,
                "time_zone": "America/Chicago",
                "event_type": "Site visit",
                "staff": {"email": "ben@example.com"},
                "invitee": {"name": "Lee Chen", "phone": "+13125550100"},
            },
        )

    await ensure_groups(redis, names, [consumer])
    async with worker(consumer, redis, names):
        publisher = Publisher(redis, names)
        # (a) July 4; (b) July 4 to July 6 entered inclusive → end July 7 (exclusive).
        await publisher.publish([booking("day-a", "2026-07-04", "2026-07-05")])
        await publisher.publish([booking("day-b", "2026-07-04", "2026-07-07")])
        await drained(redis, names)
    inserts = {r["body"]["id"]: r["body"] for r in await sandboxes.requests("events.insert")}
    a, b = inserts[event_id_for("forms", "day-a")], inserts[event_id_for("forms", "day-b")]
    assert {"start": a["start"], "end": a["end"]} == {"start": {"date": "2026-07-04"}, "end": {"date": "2026-07-05"}}
    assert {"start": b["start"], "end": b["end"]} == {"start": {"date": "2026-07-04"}, "end": {"date": "2026-07-07"}}
    texts = sorted(m["body"] for m in await sandboxes.messages())
    assert texts == [
        "Hi Lee, your Site visit with Ben is confirmed for Sat Jul 4 (all day).",
        "Hi Lee, your Site visit with Ben is confirmed for Sat Jul 4 – Mon Jul 6 (all day).",
    ]


async def test_calendly_create_reschedule_cancel(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    consumer = calendar_consumer(sandboxes)
    created = samples.calendly_invitee(
        invitee_uuid="INV1",
        start="2026-03-27T09:00:00Z",
        time_zone="Europe/London",
        name="Jo Smith",
        created_at="2026-03-01T10:00:00Z",
    )
    cancel_half = samples.calendly_invitee(
        "invitee.canceled", invitee_uuid="INV1", new_invitee_uuid="INV2", created_at="2026-03-02T10:00:00Z"
    )
    # Moved across the European DST change (2026-03-29): 10:00 Berlin is now 08:00Z.
    moved = samples.calendly_invitee(
        invitee_uuid="INV2",
        old_invitee_uuid="INV1",
        start="2026-03-30T08:00:00Z",
        time_zone="Europe/London",
        name="Jo Smith",
        created_at="2026-03-02T10:00:01Z",
    )
    cancelled = samples.calendly_invitee(
        "invitee.canceled",
        invitee_uuid="INV2",
        start="2026-03-30T08:00:00Z",
        time_zone="Europe/London",
        name="Jo Smith",
        created_at="2026-03-03T10:00:00Z",
        reason="ill",
    )
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names):
            assert await post(client, "calendly", created) == "accepted"
            await drained(redis, names)
            assert await post(client, "calendly", cancel_half) == "ignored"
            assert await post(client, "calendly", moved) == "accepted"
            await drained(redis, names)
            assert await post(client, "calendly", cancelled) == "accepted"
            await drained(redis, names)
    event_id = event_id_for("calendly", "INV1")
    ops = [(r["op"], r["event_id"] or r["body"]["id"], r["status"]) for r in await sandboxes.requests()]
    assert ops == [
        ("events.insert", event_id, 200),
        ("events.patch", event_id, 200),
        ("events.delete", event_id, 204),
    ]
    patch = (await sandboxes.requests("events.patch"))[0]["body"]
    assert patch["start"] == {"dateTime": "2026-03-30T10:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert patch["status"] == "confirmed"
    (event,) = await sandboxes.events()
    assert event["status"] == "cancelled"
    assert [m["body"] for m in await sandboxes.messages()] == [
        "Hi Jo, your Consultation with Anna is confirmed for Fri Mar 27, 9:00 AM GMT.",
        "Hi Jo, your Consultation with Anna has moved to Mon Mar 30, 9:00 AM BST.",
        "Hi Jo, your Consultation with Anna on Mon Mar 30, 9:00 AM BST has been cancelled.",
    ]


async def test_failed_sms_retry_does_not_recreate_the_event(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    await sandboxes.twilio_fault(status=429, count=1, retry_after="1")
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names) as running:
            await post(client, "calcom", samples.calcom_booking(uid="bk_sms1"))
            await drained(redis, names)
    assert len(await sandboxes.requests("events.insert")) == 1
    assert await sandboxes.requests("events.get") == []
    assert len(await sandboxes.messages()) == 1
    assert running.counts["retry"] == 1 and running.counts["acked"] == 1


async def test_calendar_429_is_retried_after_retry_after(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    await sandboxes.google_fault(status=429, count=1, retry_after="1", only="events.insert")
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names) as running:
            await post(client, "calcom", samples.calcom_booking(uid="bk_429"))
            await drained(redis, names)
    statuses = [r["status"] for r in await sandboxes.requests("events.insert")]
    assert statuses == [429, 200]
    assert len(await sandboxes.events()) == 1 and len(await sandboxes.messages()) == 1
    assert running.counts["retry"] == 1


async def test_rules_decide_sms_and_calendar(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    rules = RULES.model_copy(update={"sms": RULES.sms.model_copy(update={"event_types": ["Consultation"]})})
    consumer = calendar_consumer(sandboxes, rules)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names):
            await post(client, "calcom", samples.calcom_booking(uid="r1", event_type="Consultation"))
            await post(client, "calcom", samples.calcom_booking(uid="r2", event_type="Quick call"))
            await post(client, "calcom", samples.calcom_booking(uid="r3", organizer_email="nobody@example.com"))
            await drained(redis, names)
    assert len(await sandboxes.messages()) == 1
    assert {r["body"]["id"] for r in await sandboxes.requests("events.insert")} == {
        event_id_for("calcom", "r1"),
        event_id_for("calcom", "r2"),
    }
    (_, fields), *_ = await redis.xrange(names.dlq("calendar"))
    record = DeadLetter.from_fields(fields)
    assert record.reason.startswith("no_calendar_for_staff: nobody@example.com") and record.attempts == 1


# ----------------------------------------------------------------------------------------------------- case 017
CASE_017 = [
    b'{"triggerEvent":"BOOKING_CANCELLED","payload":{"uid":"bk_A1","requestReschedule":true,"rescheduledToUid":null,'
    b'"startTime":"2026-01-06T15:00:00Z"}}',
    b'{"triggerEvent":"BOOKING_CANCELLED","payload":{"uid":"bk_B2","startTime":"2026-01-07T15:00:00Z"}}',
    b'{"triggerEvent":"BOOKING_CREATED","payload":{"uid":"bk_B2","startTime":"2026-01-07T15:00:00Z",'
    b'"attendees":[{"email":"sam@example.com","timeZone":"America/New_York"}]}}',
]


async def test_case_017_reschedule_request_and_cancel_before_create(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names):
            # bk_A1 existed before the three deliveries of the case (so there is an event to mark tentative).
            await post(client, "calcom", samples.calcom_booking(uid="bk_A1", start="2026-01-06T15:00:00Z"))
            await drained(redis, names)
            calls_before = len(await sandboxes.requests())
            sms_before = len(await sandboxes.messages())
            for body in CASE_017:
                assert await post(client, "calcom", body) == "accepted"
                await drained(redis, names)  # in the order given
    after = (await sandboxes.requests())[calls_before:]
    assert [(r["op"], r["event_id"]) for r in after] == [("events.patch", event_id_for("calcom", "bk_A1"))]
    assert after[0]["body"]["status"] == "tentative"
    assert after[0]["body"]["summary"].startswith("[Reschedule requested]")
    assert len(await sandboxes.messages()) == sms_before  # no cancellation SMS, no confirmation SMS
    tombstone = names.state("calendar", "booking:calcom:bk_B2")
    assert orjson.loads(await redis.get(tombstone))["status"] == "cancelled"
    assert await redis.ttl(tombstone) >= 30 * 24 * 3600
    (event,) = await sandboxes.events()
    assert event["status"] == "tentative"


async def test_case_017_reschedule_of_an_unknown_booking_waits(redis, names) -> None:  # type: ignore[no-untyped-def]
    """Without bk_A1 on the calendar, event 1 is NotReady (retried shortly): no calendar call, no SMS; a later
    creation lets it through."""
    sandboxes = Sandboxes()
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names) as running:
            await post(client, "calcom", CASE_017[0])
            await wait_until(lambda: _true(running.counts["retry"] >= 1), what="a NotReady retry")
            assert await sandboxes.requests() == [] and await sandboxes.messages() == []
            # Created (per its createdAt) before the reschedule request was received.
            late = samples.calcom_booking(
                uid="bk_A1", start="2026-01-06T15:00:00Z", created_at="2026-01-01T00:00:00.000Z"
            )
            await post(client, "calcom", late)
            await drained(redis, names)
    assert [r["op"] for r in await sandboxes.requests()] == ["events.insert", "events.patch"]
    assert await redis.xlen(names.dlq("calendar")) == 0


async def _true(value: bool) -> bool:
    return value


# ----------------------------------------------------------------------------------------------------- case 023
class LoseFirstInsertAnswer(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox; the first insert is stored there, then its answer is lost (a read timeout)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/events") and not self.lost:
            self.lost += 1
            await response.aread()
            raise httpx.ReadTimeout("timed out after the server stored the event", request=request)
        return response


async def test_case_023_lost_answer_then_409_is_success(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    lossy = LoseFirstInsertAnswer(sandboxes.google)
    consumer = calendar_consumer(sandboxes, google_transport=lossy)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names) as running:
            await post(client, "calcom", samples.calcom_booking(uid="bk_3F9a-77"))
            await drained(redis, names)
    derived = "78d6b4302c4be4dd055dc1fe9ff1987a3c607f1807e0a0a3bd2ffb38e30589a1"
    ops = [(r["op"], r["status"]) for r in await sandboxes.requests()]
    assert ops == [("events.insert", 200), ("events.insert", 409), ("events.get", 200)]
    assert {r["body"]["id"] for r in await sandboxes.requests("events.insert")} == {derived}
    assert (await sandboxes.requests("events.get"))[0]["event_id"] == derived
    assert len(await sandboxes.events()) == 1 and len(await sandboxes.messages()) == 1
    assert running.counts["acked"] == 1 and await redis.xlen(names.dlq("calendar")) == 0


async def test_case_023_event_deleted_in_the_ui_is_dead_lettered(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    derived = event_id_for("calcom", "bk_3F9a-77")
    existing = {"id": derived, "start": {"date": "2026-01-05"}, "end": {"date": "2026-01-06"}, "summary": "old"}
    await sandboxes.ui_event("anna@example.com", existing)
    await sandboxes.ui_delete("anna@example.com", derived)
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with worker(consumer, redis, names):
            await post(client, "calcom", samples.calcom_booking(uid="bk_3F9a-77"))
            await drained(redis, names)
    ops = [(r["op"], r["status"]) for r in await sandboxes.requests()]
    assert ops == [("events.insert", 409), ("events.get", 200)]  # no insert under another id, no retry loop
    (_, fields), *_ = await redis.xrange(names.dlq("calendar"))
    record = DeadLetter.from_fields(fields)
    assert record.reason.startswith("gcal_id_tombstoned") and record.attempts == 1
    assert await sandboxes.messages() == []


async def test_concurrent_create_and_cancel_leave_no_event(redis, names) -> None:  # type: ignore[no-untyped-def]
    """Both published before the worker starts, so one read hands out both at once; the per-booking lock orders
    them, and whichever wins, the booking ends cancelled with no live event."""
    sandboxes = Sandboxes()
    consumer = calendar_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        await post(client, "calcom", samples.calcom_booking(uid="bk_race"))
        await post(client, "calcom", samples.calcom_booking("BOOKING_CANCELLED", uid="bk_race"))
        async with worker(consumer, redis, names):
            await drained(redis, names)
    live = [e for e in await sandboxes.events() if e["status"] != "cancelled"]
    assert live == []
    record: dict[str, Any] = orjson.loads(await redis.get(names.state("calendar", "booking:calcom:bk_race")))
    assert record["status"] == "cancelled"


def test_consumer_declares_its_types() -> None:
    from consumers.calendar import consumer

    assert consumer.name == "calendar"
    assert set(consumer.event_types) == set(TYPES)
    assert dataclasses.is_dataclass(consumer)
