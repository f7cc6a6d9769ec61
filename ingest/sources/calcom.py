"""Cal.com webhooks: signature verification and normalization into booking events.

Signature scheme (https://cal.com/docs/developing/guides/automation/webhooks#verifying-the-authenticity-of-the-received-payload)::

    X-Cal-Signature-256: <hex HMAC-SHA256 of the raw body, keyed with the webhook's secret>

Some senders and proxies prefix ``sha256=``; it is stripped. Several secrets may be configured at once (rotation).
Cal.com has no official verification library; shared case 011 pins a value computed with Python's ``hmac``.

- A delivery **without** the header is rejected (401) while a secret is configured — never "accepted because the
  header is absent" — and counted in ``hookbus_unsigned_rejected_total{source="calcom",trigger=…}`` so an operator
  sees a provider-side gap (case 011: ``MEETING_ENDED`` was once sent unsigned). The trigger label is the body's
  ``triggerEvent`` only if it is one of Cal.com's known triggers (else ``other``): the body is not authenticated.
- Cal.com signs no timestamp, so there is no replay window; a replayed delivery is dropped by the ingest
  deduplication (provider event id ``"<triggerEvent>:<uid>"``, kept ``HOOKBUS_DEDUPE_TTL_S``).

Normalization (payload reference: https://cal.com/docs/developing/guides/automation/webhooks#webhook-payload):

=======================================================  ===========================================================
``BOOKING_CREATED``                                      ``booking.created``
``BOOKING_RESCHEDULED``                                  ``booking.rescheduled``: ``booking_id`` = ``rescheduleUid``
                                                         (the booking moved), ``new_booking_id`` = ``uid``
``BOOKING_CANCELLED`` with ``requestReschedule: true``   ``booking.reschedule_requested`` (the host asked for a new
                                                         time; case 017: not a cancellation, no cancellation SMS)
``BOOKING_CANCELLED`` with ``rescheduledToUid`` set      not published: the old half of a reschedule, which the
                                                         ``BOOKING_RESCHEDULED`` delivery carries
``BOOKING_CANCELLED``                                    ``booking.cancelled``
``MEETING_ENDED``                                        ``booking.meeting_ended``
anything else (``PING``, ``BOOKING_REQUESTED`` …)        no event
=======================================================  ===========================================================

Fields: times from ``startTime``/``endTime`` (UTC); the invitee is ``attendees[0]`` (``name``, ``email``,
``timeZone``, ``phoneNumber``; else ``smsReminderNumber`` or the ``attendeePhoneNumber``/``phone`` booking-form
responses); the staff member is ``organizer`` (``name``, ``email``, ``timeZone``); the event type is ``eventTitle``,
else ``type`` (the slug); when ``endTime`` is missing it is ``startTime`` + ``length`` minutes if given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import orjson
from pydantic import field_validator
from pydantic_settings import NoDecode

from bus.config import HookbusSettings
from bus.envelope import Event, from_unix
from bus.localtime import format_instant, parse_instant

from .base import Delivery, PayloadError, SignatureError, header_value, hmac_sha256_hex, matches_any
from .bookings import UNSIGNED_REJECTED, booking_data, e164, instant, known_trigger, optional_str, time_zone

__all__ = ["DEFAULT_MAX_BODY_BYTES", "SIGNATURE_HEADER", "CalcomSettings", "CalcomSource", "from_env", "signature"]

SIGNATURE_HEADER = "X-Cal-Signature-256"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
TRIGGERS = (
    "BOOKING_CREATED",
    "BOOKING_RESCHEDULED",
    "BOOKING_CANCELLED",
    "BOOKING_REQUESTED",
    "BOOKING_REJECTED",
    "BOOKING_PAYMENT_INITIATED",
    "BOOKING_PAID",
    "BOOKING_NO_SHOW_UPDATED",
    "MEETING_STARTED",
    "MEETING_ENDED",
    "RECORDING_READY",
    "RECORDING_TRANSCRIPTION_GENERATED",
    "INSTANT_MEETING",
    "OOO_CREATED",
    "FORM_SUBMITTED",
    "AFTER_HOSTS_CAL_VIDEO_NO_SHOW",
    "AFTER_GUESTS_CAL_VIDEO_NO_SHOW",
    "PING",
)
_HEX = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


class CalcomSettings(HookbusSettings):
    """- ``CALCOM_WEBHOOK_SECRET``: the webhook secret(s), comma-separated while rotating (or ``…_FILE``).
    - ``CALCOM_MAX_BODY_BYTES``: larger bodies get 413 before any of it is verified.
    """

    calcom_webhook_secret: Annotated[tuple[str, ...], NoDecode] = ()
    calcom_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @field_validator("calcom_webhook_secret", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


def signature(body: bytes, secret: str) -> str:
    """The ``X-Cal-Signature-256`` value for ``body``: lower-case hex HMAC-SHA256 (``hookbus send``, tests)."""
    return hmac_sha256_hex(secret.encode("utf-8"), body)


def _trigger_of(body: bytes) -> object:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc.get("triggerEvent") if isinstance(doc, dict) else None


class CalcomSource:
    """Cal.com webhook source. ``secrets``: the active webhook secrets; ``max_body_bytes``: request body limit."""

    name = "calcom"

    def __init__(self, secrets: Sequence[str], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if isinstance(secrets, str):
            raise ValueError("secrets must be a sequence of strings, not a single string")
        keys = tuple(secret.encode("utf-8") for secret in secrets if isinstance(secret, str) and secret.strip())
        if not keys or len(keys) != len(secrets):
            raise ValueError("CalcomSource needs at least one non-empty secret")
        if max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self._keys = keys
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"CalcomSource(secrets=<{len(self._keys)} hidden>)"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check ``X-Cal-Signature-256`` over the raw body. Raises SignatureError (``now`` is unused: Cal.com
        signs no timestamp)."""
        value = header_value(headers, SIGNATURE_HEADER)
        if value is None or not value.strip():
            UNSIGNED_REJECTED.labels(self.name, known_trigger(_trigger_of(body), TRIGGERS)).inc()
            raise SignatureError("missing X-Cal-Signature-256 header")
        candidate = value.strip()
        if candidate[:7].lower() == "sha256=":
            candidate = candidate[7:]
        if not _HEX.fullmatch(candidate):
            raise SignatureError("X-Cal-Signature-256 is not a hex SHA-256 HMAC")
        candidate = candidate.lower()
        found = False
        for key in self._keys:
            found |= matches_any(hmac_sha256_hex(key, bytes(body)), [candidate])
        if not found:
            raise SignatureError("no Cal.com signature matches the payload")

    def parse(self, body: bytes, *, received_at: float | None = None) -> Delivery:
        """Normalize a verified Cal.com delivery. Raises PayloadError."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"Cal.com body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise PayloadError("Cal.com body is not a JSON object")
        trigger = doc.get("triggerEvent")
        if not isinstance(trigger, str) or not trigger:
            raise PayloadError("Cal.com body lacks a string 'triggerEvent'")
        payload = doc.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        uid = optional_str(payload, "uid") or optional_str(payload, "bookingUid")
        event_id = f"{trigger}:{uid}" if uid else f"{trigger}:sha256-{hashlib.sha256(body).hexdigest()[:32]}"

        new_id: str | None = None
        if trigger == "BOOKING_CREATED":
            kind = "booking.created"
        elif trigger == "BOOKING_RESCHEDULED":
            kind = "booking.rescheduled"
            original = (
                optional_str(payload, "rescheduleUid")
                or optional_str(payload, "fromReschedule")
                or optional_str(payload.get("originalRescheduledBooking"), "uid")
            )
            if original and original != uid:
                uid, new_id = original, uid
        elif trigger == "BOOKING_CANCELLED":
            if payload.get("requestReschedule") is True:
                kind = "booking.reschedule_requested"
            elif optional_str(payload, "rescheduledToUid"):
                return Delivery(event_id=event_id, provider_type=f"{trigger} (rescheduled)", events=())
            else:
                kind = "booking.cancelled"
        elif trigger == "MEETING_ENDED":
            kind = "booking.meeting_ended"
        else:
            return Delivery(event_id=event_id, provider_type=trigger, events=())
        if not uid:
            raise PayloadError(f"Cal.com {trigger} payload lacks the booking 'uid'")

        created = instant(doc.get("createdAt"), "createdAt")
        event = Event(
            id=event_id,
            source=self.name,
            type=kind,
            time=created or from_unix(time.time() if received_at is None else received_at),
            data=_data(payload, uid, new_id),
            subject=uid,
        )
        return Delivery(event_id=event_id, provider_type=trigger, events=(event,))


def _data(payload: Mapping[str, Any], booking_id: str, new_id: str | None) -> dict[str, Any]:
    attendees = payload.get("attendees")
    attendee = attendees[0] if isinstance(attendees, list) and attendees and isinstance(attendees[0], dict) else {}
    organizer = payload.get("organizer")
    organizer = organizer if isinstance(organizer, dict) else {}
    responses = payload.get("responses")
    responses = responses if isinstance(responses, dict) else {}
    start = instant(payload.get("startTime"), "startTime")
    end = instant(payload.get("endTime"), "endTime")
    length = payload.get("length")
    if end is None and start is not None and type(length) is int and length > 0:
        end = format_instant(parse_instant(start) + dt.timedelta(minutes=length))
    zone_name = time_zone(attendee.get("timeZone"))
    phone = (
        e164(attendee.get("phoneNumber"))
        or e164(payload.get("smsReminderNumber"))
        or e164(_response(responses, "attendeePhoneNumber"))
        or e164(_response(responses, "phone"))
    )
    location = payload.get("location")
    return booking_data(
        booking_id=booking_id,
        new_booking_id=new_id,
        start=start,
        end=end,
        time_zone_name=zone_name,
        event_type=optional_str(payload, "eventTitle") or optional_str(payload, "type"),
        staff={
            "name": optional_str(organizer, "name"),
            "email": (optional_str(organizer, "email") or "").lower() or None,
            "time_zone": time_zone(organizer.get("timeZone")),
        },
        invitee={
            "name": optional_str(attendee, "name") or _response(responses, "name"),
            "email": optional_str(attendee, "email") or _response(responses, "email"),
            "phone": phone,
            "time_zone": zone_name,
        },
        location=location.strip() or None if isinstance(location, str) else None,
        reason=optional_str(payload, "cancellationReason") or optional_str(payload, "rescheduleReason"),
    )


def _response(responses: Mapping[str, Any], key: str) -> str | None:
    """A booking-form answer (``responses.<key>.value``) if it is a string."""
    entry = responses.get(key)
    value = entry.get("value") if isinstance(entry, dict) else entry
    return value.strip() or None if isinstance(value, str) else None


def from_env() -> list[CalcomSource]:
    """The Cal.com source if ``CALCOM_WEBHOOK_SECRET`` is set."""
    settings = CalcomSettings()
    if not settings.calcom_webhook_secret:
        return []
    return [CalcomSource(settings.calcom_webhook_secret, max_body_bytes=settings.calcom_max_body_bytes)]
