"""``hookbus send calendly|calcom|google-calendar EVENT``: signed sample deliveries of the booking sources.

Options (``-o KEY=VALUE``): ``start`` (RFC 3339 instant, default tomorrow 09:00 UTC), ``minutes``, ``tz`` (the
invitee's zone), ``name``, ``email``, ``phone``, ``staff`` (host e-mail), ``event_type``; Calendly ``invitee`` (uuid)
and ``old_invitee`` (a reschedule); Cal.com ``uid`` and ``reschedule_uid``; Google ``channel`` (a channel id from
``hookbus calendar channels``; default a freshly minted one, which ingest accepts and the sync worker ignores),
``number`` (``X-Goog-Message-Number``), ``calendar``. Secrets come from the variables ingest verifies with.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from bus.localtime import format_instant

from .demo.base import Webhook
from .sources import booking_samples as samples
from .sources.calcom import CalcomSettings
from .sources.calcom import signature as calcom_signature
from .sources.calendly import CalendlySettings
from .sources.calendly import signature_header as calendly_signature
from .sources.google_calendar import GoogleCalendarSettings, mint_channel_id

__all__ = ["CalcomSender", "CalendlySender", "GoogleCalendarSender"]


def _common(options: Mapping[str, str]) -> dict[str, Any]:
    tomorrow = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    values: dict[str, Any] = {"start": options.get("start", format_instant(tomorrow))}
    for key in ("name", "email", "phone", "event_type"):
        if key in options:
            values[key] = options[key]
    if "minutes" in options:
        values["minutes"] = int(options["minutes"])
    return values


class CalendlySender:
    """Calendly ``invitee.created`` / ``invitee.canceled`` signed with ``CALENDLY_WEBHOOK_SIGNING_KEY``."""

    event_types = ("invitee.created", "invitee.canceled")

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        keys = CalendlySettings().calendly_webhook_signing_key
        if not keys:
            raise ValueError("CALENDLY_WEBHOOK_SIGNING_KEY is not set (hookbus dev prints the value it uses)")
        values = _common(options)
        if "tz" in options:
            values["time_zone"] = options["tz"]
        if "staff" in options:
            values["staff_email"] = options["staff"]
        body = samples.calendly_invitee(
            event_type,
            invitee_uuid=options.get("invitee"),
            old_invitee_uuid=options.get("old_invitee"),
            **values,
        )
        header = calendly_signature(body, keys[0], int(time.time()))
        headers = {"Calendly-Webhook-Signature": header, "Content-Type": "application/json"}
        return Webhook(f"calendly {event_type}", "/webhooks/calendly", body, headers)


class CalcomSender:
    """Cal.com booking triggers signed with ``CALCOM_WEBHOOK_SECRET``."""

    event_types = ("BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED", "MEETING_ENDED")

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        secrets = CalcomSettings().calcom_webhook_secret
        if not secrets:
            raise ValueError("CALCOM_WEBHOOK_SECRET is not set (hookbus dev prints the value it uses)")
        values = _common(options)
        if "tz" in options:
            values["attendee_time_zone"] = options["tz"]
        if "staff" in options:
            values["organizer_email"] = options["staff"]
        body = samples.calcom_booking(
            event_type, uid=options.get("uid"), reschedule_uid=options.get("reschedule_uid"), **values
        )
        headers = {"X-Cal-Signature-256": calcom_signature(body, secrets[0]), "Content-Type": "application/json"}
        return Webhook(f"calcom {event_type}", "/webhooks/calcom", body, headers)


class GoogleCalendarSender:
    """A Google Calendar push notification (headers only) with ``GOOGLE_CALENDAR_CHANNEL_TOKEN``."""

    event_types = ("sync", "exists", "not_exists")

    def webhook(self, event_type: str, options: Mapping[str, str]) -> Webhook:
        tokens = GoogleCalendarSettings().google_calendar_channel_token
        if not tokens:
            raise ValueError("GOOGLE_CALENDAR_CHANNEL_TOKEN is not set (hookbus dev prints the value it uses)")
        headers = samples.google_push_headers(
            channel_id=options.get("channel") or mint_channel_id(tokens[0]),
            token=tokens[0],
            state=event_type,
            message_number=int(options.get("number", str(int(time.time())))),
            calendar_id=options.get("calendar", "primary"),
            resource_id=options.get("resource_id", "res-hookbus-send"),
        )
        return Webhook(f"google-calendar {event_type}", "/webhooks/google-calendar", b"", headers)
