"""What the booking sources (Calendly, Cal.com) share: the canonical booking payload and small normalizers.

Canonical event types: ``booking.created``, ``booking.cancelled``, ``booking.rescheduled`` (ARCHITECTURE.md), plus
``booking.reschedule_requested`` (the host asked the invitee to pick a new time: the booking is *not* cancelled for
good, shared case 017) and ``booking.meeting_ended`` (Cal.com's ``MEETING_ENDED``, case 011).

The event's ``subject`` is the booking id the consumers know the booking by: for a reschedule, the id of the booking
being moved (``booking_id``), with the new provider id in ``new_booking_id``. ``data``::

    {
      "booking_id": "bk_3F9a77",            # provider uid (Cal.com) or invitee uuid (Calendly)
      "new_booking_id": null,                # the id after a reschedule
      "start": "2026-10-25T08:00:00Z",       # RFC 3339, UTC (an instant); null when the provider omits it
      "end": "2026-10-25T08:30:00Z",         # RFC 3339, UTC, or null
      "time_zone": "America/New_York",       # the invitee's IANA zone, or null
      "all_day": false,                      # true: "start_date"/"end_date" (exclusive) instead of instants
      "event_type": "Consultation",          # the booking page's event type name (null if not sent)
      "staff": {"name": …, "email": …, "time_zone": …},   # the assigned host (null if not sent)
      "invitee": {"name": …, "email": …, "phone": "+4915…", "time_zone": …},
      "location": "…" | null,
      "reason": "…" | null,                  # cancellation or reschedule reason
      "verified": true                       # false only for a source configured with signature "none"
    }

Times: providers send instants in UTC; they are re-emitted with :func:`bus.localtime.format_instant` (fractions of
zero dropped: ``2026-01-05T14:00:00.000000Z`` → ``2026-01-05T14:00:00Z``). A zone name that is not in the tz database
becomes null rather than failing the delivery (the provider would retry a 400 forever).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter

from bus.localtime import UnknownTimeZone, format_instant, parse_instant, zone

from .base import PayloadError

__all__ = [
    "BOOKING_TYPES",
    "UNSIGNED_REJECTED",
    "booking_data",
    "e164",
    "instant",
    "known_trigger",
    "optional_str",
    "time_zone",
]

BOOKING_TYPES = (
    "booking.created",
    "booking.cancelled",
    "booking.rescheduled",
    "booking.reschedule_requested",
    "booking.meeting_ended",
)

UNSIGNED_REJECTED = Counter(
    "hookbus_unsigned_rejected_total",
    "Deliveries rejected because they carried no signature header while a secret is configured, by source and "
    "provider trigger (a trigger outside the provider's known set is counted as 'other').",
    ["source", "trigger"],
)

_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)


def known_trigger(value: object, known: Iterable[str]) -> str:
    """``value`` if it is one of the provider's ``known`` trigger names, else ``"other"``: a label taken from an
    unauthenticated body must not create unbounded metric series."""
    return value if isinstance(value, str) and value in set(known) else "other"


def optional_str(obj: Mapping[str, Any] | None, key: str) -> str | None:
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise PayloadError(f"field {key!r} must be a string")
    return value.strip() or None


def instant(value: object, what: str) -> str | None:
    """An RFC 3339 instant re-emitted in UTC, or None when absent. Raises :class:`PayloadError` when malformed."""
    if value is None or value == "":
        return None
    try:
        return format_instant(parse_instant(value))  # type: ignore[arg-type]
    except ValueError as exc:
        raise PayloadError(f"{what} is not an RFC 3339 time: {exc}") from None


def time_zone(value: object) -> str | None:
    """An IANA zone name if the tz database knows it, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        zone(value)
    except UnknownTimeZone:
        return None
    return value


def e164(value: object) -> str | None:
    """A phone number in E.164 (``+4915112345678``) with spaces, dashes, dots and parentheses removed, or None when
    there is no usable number (SMS needs E.164; a local number without country code cannot be sent to)."""
    if not isinstance(value, str):
        return None
    compact = _PHONE_PUNCTUATION.sub("", value)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if _E164.fullmatch(compact) else None


def booking_data(
    *,
    booking_id: str,
    start: str | None,
    end: str | None,
    time_zone_name: str | None,
    event_type: str | None,
    staff: Mapping[str, str | None] | None,
    invitee: Mapping[str, str | None],
    location: str | None = None,
    reason: str | None = None,
    new_booking_id: str | None = None,
    verified: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The canonical ``data`` of a booking event (see the module docstring)."""
    data: dict[str, Any] = {
        "booking_id": booking_id,
        "new_booking_id": new_booking_id,
        "start": start,
        "end": end,
        "time_zone": time_zone_name,
        "all_day": False,
        "event_type": event_type,
        "staff": dict(staff) if staff and any(staff.values()) else None,
        "invitee": dict(invitee),
        "location": location,
        "reason": reason,
        "verified": verified,
    }
    if extra:
        data.update(extra)
    return data
