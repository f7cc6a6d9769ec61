"""Realistic sample deliveries of Calendly, Cal.com and Google Calendar push, for ``hookbus send``, the demo and tests.

The shapes follow the providers' documented payloads (Calendly webhook payload with the embedded ``scheduled_event``;
Cal.com ``{"triggerEvent", "createdAt", "payload"}``; Google push headers), trimmed to the fields a receiver reads.
Bodies are compact JSON bytes, exactly what is signed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import orjson

from bus.localtime import format_instant, parse_instant

__all__ = ["calcom_booking", "calendly_invitee", "google_push_headers", "new_uid"]

CALENDLY_API = "https://api.calendly.com"


def new_uid(prefix: str = "") -> str:
    return prefix + secrets.token_hex(8)


def _calendly_time(text: str) -> str:
    """Calendly writes instants with six fraction digits: ``2026-10-25T08:00:00.000000Z``."""
    return parse_instant(text).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def calendly_invitee(
    event: str = "invitee.created",
    *,
    invitee_uuid: str | None = None,
    event_uuid: str | None = None,
    start: str = "2026-10-25T08:00:00Z",
    minutes: int = 30,
    time_zone: str = "America/New_York",
    name: str = "Pat Lee",
    email: str = "pat@example.com",
    phone: str | None = "+1 212 555 0142",
    staff_email: str = "anna@example.com",
    staff_name: str = "Anna Schmidt",
    event_type: str = "Consultation",
    old_invitee_uuid: str | None = None,
    new_invitee_uuid: str | None = None,
    created_at: str | None = None,
    reason: str | None = None,
) -> bytes:
    """A Calendly ``invitee.created`` / ``invitee.canceled`` delivery (webhook payload v2)."""
    invitee_uuid = invitee_uuid or new_uid().upper()
    event_uuid = event_uuid or new_uid().upper()
    event_uri = f"{CALENDLY_API}/scheduled_events/{event_uuid}"
    begin = parse_instant(start)
    end = begin + dt.timedelta(minutes=minutes)
    now = created_at or format_instant(dt.datetime.now(dt.UTC))
    first, _, last = name.partition(" ")
    payload: dict[str, Any] = {
        "cancel_url": f"https://calendly.com/cancellations/{invitee_uuid}",
        "created_at": _calendly_time(now),
        "email": email,
        "event": event_uri,
        "first_name": first,
        "last_name": last or None,
        "name": name,
        "new_invitee": f"{event_uri}/invitees/{new_invitee_uuid}" if new_invitee_uuid else None,
        "old_invitee": f"{CALENDLY_API}/scheduled_events/OLD/invitees/{old_invitee_uuid}" if old_invitee_uuid else None,
        "questions_and_answers": [],
        "reschedule_url": f"https://calendly.com/reschedulings/{invitee_uuid}",
        "rescheduled": new_invitee_uuid is not None,
        "status": "canceled" if event == "invitee.canceled" else "active",
        "text_reminder_number": phone,
        "timezone": time_zone,
        "tracking": {"utm_campaign": None, "utm_source": None},
        "updated_at": _calendly_time(now),
        "uri": f"{event_uri}/invitees/{invitee_uuid}",
        "scheduled_event": {
            "uri": event_uri,
            "name": event_type,
            "status": "canceled" if event == "invitee.canceled" else "active",
            "start_time": _calendly_time(start),
            "end_time": _calendly_time(format_instant(end)),
            "event_type": f"{CALENDLY_API}/event_types/{new_uid().upper()}",
            "location": {"type": "physical", "location": "Torstraße 1, Berlin"},
            "invitees_counter": {"total": 1, "active": 1, "limit": 1},
            "created_at": _calendly_time(now),
            "updated_at": _calendly_time(now),
            "event_memberships": [
                {"user": f"{CALENDLY_API}/users/ANNA", "user_email": staff_email, "user_name": staff_name}
            ],
            "event_guests": [],
        },
    }
    if event == "invitee.canceled":
        payload["cancellation"] = {"canceled_by": name, "reason": reason, "canceler_type": "invitee"}
    doc = {
        "created_at": _calendly_time(now),
        "created_by": f"{CALENDLY_API}/users/ANNA",
        "event": event,
        "payload": payload,
    }
    return orjson.dumps(doc)


def calcom_booking(
    trigger: str = "BOOKING_CREATED",
    *,
    uid: str | None = None,
    start: str = "2026-10-25T08:00:00Z",
    minutes: int = 30,
    attendee_time_zone: str = "America/New_York",
    name: str = "Sam Rivera",
    email: str = "sam@example.com",
    phone: str | None = "+12125550199",
    organizer_email: str = "anna@example.com",
    organizer_name: str = "Anna Schmidt",
    organizer_time_zone: str = "Europe/Berlin",
    event_type: str = "Consultation",
    reschedule_uid: str | None = None,
    request_reschedule: bool = False,
    created_at: str | None = None,
    reason: str | None = None,
) -> bytes:
    """A Cal.com webhook delivery for a booking trigger."""
    uid = uid or new_uid("bk_")
    begin = parse_instant(start)
    end = begin + dt.timedelta(minutes=minutes)
    payload: dict[str, Any] = {
        "type": event_type.lower().replace(" ", "-"),
        "title": f"{event_type} between {organizer_name} and {name}",
        "description": "",
        "startTime": format_instant(begin),
        "endTime": format_instant(end),
        "organizer": {
            "id": 5,
            "name": organizer_name,
            "email": organizer_email,
            "username": organizer_name.split()[0].lower(),
            "timeZone": organizer_time_zone,
            "language": {"locale": "en"},
            "timeFormat": "h:mma",
        },
        "responses": {
            "name": {"label": "your_name", "value": name},
            "email": {"label": "email_address", "value": email},
        },
        "attendees": [
            {
                "email": email,
                "name": name,
                "timeZone": attendee_time_zone,
                "language": {"locale": "en"},
                "phoneNumber": phone,
            }
        ],
        "location": "In person",
        "eventTypeId": 7,
        "eventTitle": event_type,
        "length": minutes,
        "uid": uid,
        "bookingId": 91,
        "status": "CANCELLED" if trigger == "BOOKING_CANCELLED" else "ACCEPTED",
    }
    if reschedule_uid:
        payload.update(rescheduleUid=reschedule_uid, rescheduledBy=email)
    if request_reschedule:
        payload.update(requestReschedule=True, rescheduledToUid=None)
    if reason:
        payload["cancellationReason" if trigger == "BOOKING_CANCELLED" else "rescheduleReason"] = reason
    created = created_at or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"triggerEvent": trigger, "createdAt": created, "payload": payload})


def google_push_headers(
    *,
    channel_id: str,
    token: str,
    state: str,
    message_number: int,
    calendar_id: str = "primary",
    resource_id: str = "res-hb-0001",
) -> dict[str, str]:
    """The headers of a Google Calendar push notification (the body is empty)."""
    from urllib.parse import quote

    return {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Channel-Token": token,
        "X-Goog-Channel-Expiration": "Tue, 08 Dec 2026 01:13:52 GMT",
        "X-Goog-Resource-ID": resource_id,
        "X-Goog-Resource-URI": (
            f"https://www.googleapis.com/calendar/v3/calendars/{quote(calendar_id, safe='')}/events?alt=json"
        ),
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": str(message_number),
        "Content-Length": "0",
    }
