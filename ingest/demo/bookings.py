"""The bookings scenario: Calendly and Cal.com bookings → Google Calendar events and Twilio SMS; a change made in
Google Calendar → push notification → incremental sync.

What it posts (all signed like the providers do, except the two forgeries):

1. Calendly ``invitee.created``: Pat (New York) books Anna for 09:00 Berlin on 2026-10-25, the day CEST ends.
2. Cal.com ``BOOKING_CREATED``: Sam (Chicago) books Ben for 10:00 New York on 2026-11-02.
3. Calendly ``invitee.created``: Jo (London) books Anna.
4. Cal.com ``BOOKING_RESCHEDULED``: Sam moves to the next day, 11:00 New York.
5. the first delivery again (a duplicate), and a Cal.com delivery signed with the wrong secret;
6. Google push: the ``sync`` handshake (ignored), ``exists`` after a lunch was added in the Calendar UI (one
   incremental sync), Google's retry of it (duplicate), one with a wrong channel token (rejected);
7. Calendly ``invitee.canceled``: Jo cancels. When the calendar worker is busy, this cancellation can be handled
   before Jo's booking (case 017): a tombstone is written and nothing is created or sent for Jo; otherwise her event
   is deleted and she gets a confirmation and a cancellation SMS. The other results do not depend on timing.

Before posting, it opens a push channel on Anna's calendar the way ``hookbus calendar watch`` does.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx

from bus.localtime import in_zone, parse_instant
from ingest.sources import booking_samples as samples
from ingest.sources.calcom import signature as calcom_signature
from ingest.sources.calendly import signature_header as calendly_signature

from .base import Webhook

ANNA = "anna@example.com"
BEN = "ben@example.com"
TWILIO_SID = "AC" + "0d1e2f3a4b5c6d7e" * 2
RULES = f"""
[calendar]
default_time_zone = "UTC"

[calendar.staff."{ANNA}"]
calendar_id = "{ANNA}"
time_zone = "Europe/Berlin"
name = "Anna"

[calendar.staff."{BEN}"]
calendar_id = "{BEN}"
time_zone = "America/New_York"
name = "Ben"

[calendar.sms]
event_types = ["*"]
send_on = ["created", "rescheduled", "cancelled"]
"""


class Bookings:
    title = "Bookings: Calendly and Cal.com → Google Calendar + Twilio SMS; Google push → incremental sync"
    workers = ("calendar", "calendar_sync")

    def env(self, sandbox_url: str) -> dict[str, str]:
        return {
            "CALENDLY_WEBHOOK_SIGNING_KEY": "demo-calendly-" + secrets.token_hex(16),
            "CALCOM_WEBHOOK_SECRET": "demo-calcom-" + secrets.token_hex(16),
            "GOOGLE_CALENDAR_CHANNEL_TOKEN": "demo-channel-" + secrets.token_hex(16),
            "GOOGLE_CALENDAR_BASE_URL": f"{sandbox_url}/google-calendar",
            "GOOGLE_CALENDAR_ACCESS_TOKEN": "sandbox-token",
            "TWILIO_BASE_URL": f"{sandbox_url}/twilio",
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": "sandbox-token",
            "TWILIO_FROM_NUMBER": "+15005550006",
        }

    def rules(self) -> str:
        return RULES

    def webhooks(self, env: Mapping[str, str]) -> list[Webhook]:
        calendly_key = env["CALENDLY_WEBHOOK_SIGNING_KEY"].split(",")[0]
        calcom_secret = env["CALCOM_WEBHOOK_SECRET"].split(",")[0]
        token = env["GOOGLE_CALENDAR_CHANNEL_TOKEN"].split(",")[0]
        channel = asyncio.run(_watch(env, token))
        _add_in_calendar_ui(env)

        def calendly(label: str, body: bytes) -> Webhook:
            header = calendly_signature(body, calendly_key, int(time.time()))
            return Webhook(label, "/webhooks/calendly", body, {"Calendly-Webhook-Signature": header})

        def calcom(label: str, body: bytes, secret: str = calcom_secret) -> Webhook:
            return Webhook(label, "/webhooks/calcom", body, {"X-Cal-Signature-256": calcom_signature(body, secret)})

        def push(label: str, state: str, number: int, channel_token: str = token) -> Webhook:
            headers = samples.google_push_headers(
                channel_id=channel["id"],
                token=channel_token,
                state=state,
                message_number=number,
                calendar_id=ANNA,
                resource_id=channel["resource_id"],
            )
            return Webhook(label, "/webhooks/google-calendar", b"", headers)

        pat = samples.calendly_invitee(
            invitee_uuid="DEMOPAT1",
            start="2026-10-25T08:00:00Z",
            time_zone="America/New_York",
            name="Pat Lee",
            email="pat@example.com",
            phone="+1 212 555 0142",
            staff_email=ANNA,
            created_at="2026-10-01T09:00:00Z",
        )
        jo = dict(
            invitee_uuid="DEMOJO01",
            start="2026-11-04T10:00:00Z",
            time_zone="Europe/London",
            name="Jo Smith",
            email="jo@example.com",
            phone="+44 7700 900123",
            staff_email=ANNA,
            event_type="Follow-up",
        )
        sam = dict(
            start="2026-11-02T15:00:00Z",
            attendee_time_zone="America/Chicago",
            name="Sam Rivera",
            email="sam@example.com",
            phone="+13125550199",
            organizer_email=BEN,
            organizer_name="Ben Ortiz",
            organizer_time_zone="America/New_York",
        )
        return [
            calendly("Calendly: Pat (New York) books Anna, 09:00 Berlin on 2026-10-25 (CEST ends)", pat),
            calcom(
                "Cal.com: Sam (Chicago) books Ben, 10:00 New York on 2026-11-02",
                samples.calcom_booking(uid="bk_demo_sam", created_at="2026-10-02T09:00:00.000Z", **sam),  # type: ignore[arg-type]
            ),
            calendly(
                "Calendly: Jo (London) books Anna",
                samples.calendly_invitee(created_at="2026-10-03T09:00:00Z", **jo),  # type: ignore[arg-type]
            ),
            calcom(
                "Cal.com: Sam reschedules to 11:00 New York on 2026-11-03",
                samples.calcom_booking(
                    "BOOKING_RESCHEDULED",
                    uid="bk_demo_sam_2",
                    reschedule_uid="bk_demo_sam",
                    created_at="2026-10-04T09:00:00.000Z",
                    **{**sam, "start": "2026-11-03T16:00:00Z"},  # type: ignore[arg-type]
                ),
            ),
            calendly("Calendly: Pat's booking delivered again (duplicate)", pat),
            calcom(
                "Cal.com: a booking signed with the wrong secret",
                samples.calcom_booking(uid="bk_forged"),
                secret="not-the-secret",
            ),
            push("Google push: sync handshake after events.watch (ignored)", "sync", 1),
            push("Google push: exists — a lunch was added in Google Calendar", "exists", 2),
            push("Google push: the same notification retried by Google", "exists", 2),
            push("Google push: wrong channel token", "exists", 3, channel_token="forged-token"),
            calendly(
                "Calendly: Jo cancels",
                samples.calendly_invitee(
                    "invitee.canceled",
                    created_at="2026-10-05T09:00:00Z",
                    reason="Travelling",
                    **jo,  # type: ignore[arg-type]
                ),
            ),
        ]

    def summarize(self, sandbox: httpx.Client) -> dict[str, Any]:
        google = sandbox.get("/google-calendar/_sandbox/objects").json()
        messages = sandbox.get("/twilio/_sandbox/objects").json()["messages"]
        lists = [r for r in google["requests"] if r["op"] == "events.list" and r["status"] == 200]
        return {
            "calendar_events": sorted(_describe(e) for e in google["events"] if e["status"] != "cancelled"),
            "calendar_cancelled": sorted(_describe(e) for e in google["events"] if e["status"] == "cancelled"),
            "sms_sent": [f"{m['to']}: {m['body']}" for m in messages],
            "calendar_incremental_syncs": sum(
                1 for r in lists if "syncToken" in r["params"] and "pageToken" not in r["params"]
            ),
            "calendar_full_syncs": sum(
                1 for r in lists if "syncToken" not in r["params"] and "pageToken" not in r["params"]
            ),
        }

    def lines(self, summary: Mapping[str, Any]) -> list[str]:
        lines = [f"Google Calendar events ({len(summary['calendar_events'])} live):"]
        lines += [f"    {e}" for e in summary["calendar_events"]]
        if summary["calendar_cancelled"]:
            lines.append(f"Google Calendar cancelled ({len(summary['calendar_cancelled'])}):")
            lines += [f"    {e}" for e in summary["calendar_cancelled"]]
        lines.append(f"Twilio SMS sent ({len(summary['sms_sent'])}):")
        lines += [f"    {m}" for m in summary["sms_sent"]]
        lines.append(
            f"Google Calendar sync: {summary['calendar_full_syncs']} baseline full sync (hookbus calendar watch), "
            f"{summary['calendar_incremental_syncs']} incremental sync (syncToken) after the push notification"
        )
        return lines


def _describe(event: Mapping[str, Any]) -> str:
    start = event.get("start") or {}
    when = start.get("date") or ""
    if start.get("dateTime"):
        local = in_zone(parse_instant(start["dateTime"]), start.get("timeZone") or "UTC")
        when = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    return f"{when}  {event.get('summary')}  [{event['calendar_id']}]"


async def _watch(env: Mapping[str, str], token: str) -> dict[str, Any]:
    """Open a push channel on Anna's calendar, as ``hookbus calendar watch`` does (baseline sync, events.watch)."""
    from bus.connection import connect
    from bus.naming import Names
    from consumers.calendar_cli import open_channel
    from consumers.clients.google_calendar import GoogleCalendarClient

    redis = connect(env["REDIS_URL"], socket_timeout_s=10)
    try:
        async with GoogleCalendarClient(
            base_url=env["GOOGLE_CALENDAR_BASE_URL"], access_token=env["GOOGLE_CALENDAR_ACCESS_TOKEN"]
        ) as gcal:
            names = Names(env.get("HOOKBUS_KEY_PREFIX", "hookbus"))
            address = "https://demo.example/webhooks/google-calendar"
            return await open_channel(gcal, redis, names, ANNA, address=address, token=token)
    finally:
        await redis.aclose()


def _add_in_calendar_ui(env: Mapping[str, str]) -> None:
    """Someone adds a team lunch to Anna's calendar in Google Calendar (the sandbox's UI route)."""
    lunch = {
        "summary": "Team lunch (added in Google Calendar)",
        "start": {"dateTime": "2026-10-26T12:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-10-26T13:00:00+01:00", "timeZone": "Europe/Berlin"},
    }
    url = f"{env['GOOGLE_CALENDAR_BASE_URL']}/_sandbox/calendars/{ANNA}/events"
    httpx.post(url, json=lunch, timeout=10).raise_for_status()
