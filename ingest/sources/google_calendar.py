"""Google Calendar push notifications: ``POST /webhooks/google-calendar``.

Google's notification carries **only headers**, no body (https://developers.google.com/calendar/api/guides/push)::

    X-Goog-Channel-ID: hb-…            the channel id we chose in events.watch
    X-Goog-Channel-Token: …            the token we gave in events.watch (verified here)
    X-Goog-Channel-Expiration: Tue, 19 Nov 2026 01:13:52 GMT
    X-Goog-Resource-ID: …              opaque id of the watched collection
    X-Goog-Resource-URI: https://www.googleapis.com/calendar/v3/calendars/<calendarId>/events?alt=json
    X-Goog-Resource-State: sync | exists | not_exists
    X-Goog-Message-Number: 1, 2, …     increasing per channel

What ingest does, without ever calling Google in the request path (shared case 014):

1. **Token**: ``X-Goog-Channel-Token`` must equal a configured ``GOOGLE_CALENDAR_CHANNEL_TOKEN`` (several while
   rotating), compared in constant time; missing or wrong → 401, nothing published.
2. **Known channel**: channel ids are minted by ``hookbus calendar watch`` as ``hb-<nonce>-<mac>``, where ``mac`` is
   an HMAC of the nonce under the token (:func:`mint_channel_id`). A channel id hookbus did not mint (another app's
   channel pointed at this endpoint, a spoofed id) → 401, nothing published, no Calendar API call.
3. ``sync`` (the handshake Google sends right after ``events.watch``) → 200, acknowledged and ignored: no sync runs
   (otherwise every renewal would trigger a pointless sync).
4. ``exists`` / ``not_exists`` → one ``calendar.sync_requested`` event (subject: the calendar id) for the
   ``calendar_sync`` consumer, which runs an *incremental* ``events.list`` with the stored ``syncToken``; the
   notification itself says nothing about which event changed.
5. **Dedupe** on ``(channel id, X-Goog-Message-Number)``: a retried notification publishes nothing.

The notification has no body, so the source is a :class:`~ingest.sources.base.RequestSource`: ingest hands
:meth:`GoogleCalendarSource.parse_request` the verified headers.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import field_validator
from pydantic_settings import NoDecode

from bus.config import HookbusSettings
from bus.envelope import Event, from_unix

from .base import Delivery, PayloadError, SignatureError, header_value, hmac_sha256_hex, matches_any
from .bookings import UNSIGNED_REJECTED

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "EVENT_TYPE",
    "GoogleCalendarSettings",
    "GoogleCalendarSource",
    "calendar_id_of",
    "channel_id_minted",
    "from_env",
    "mint_channel_id",
]

EVENT_TYPE = "calendar.sync_requested"
DEFAULT_MAX_BODY_BYTES = 4096
STATES = ("sync", "exists", "not_exists")
_CHANNEL_ID = re.compile(r"hb-(?P<nonce>[0-9a-f]{20})-(?P<mac>[0-9a-f]{24})", re.ASCII)
_MESSAGE_NUMBER = re.compile(r"[0-9]{1,19}", re.ASCII)
_CALENDAR_PATH = re.compile(r"/calendar/v3/calendars/(?P<id>[^/]+)/events/?$")


class GoogleCalendarSettings(HookbusSettings):
    """- ``GOOGLE_CALENDAR_CHANNEL_TOKEN``: the channel token(s) given to ``events.watch``, comma-separated while
      rotating (the first one is used for new channels); or ``GOOGLE_CALENDAR_CHANNEL_TOKEN_FILE``.
    - ``GOOGLE_CALENDAR_MAX_BODY_BYTES``: Google sends no body; anything larger is refused with 413.
    """

    google_calendar_channel_token: Annotated[tuple[str, ...], NoDecode] = ()
    google_calendar_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @field_validator("google_calendar_channel_token", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


def _mac(token: str, nonce: str) -> str:
    return hmac_sha256_hex(token.encode("utf-8"), f"hookbus-google-calendar-channel:{nonce}".encode())[:24]


def mint_channel_id(token: str, nonce: str | None = None) -> str:
    """A new channel id ``hb-<20 hex nonce>-<24 hex mac>`` (48 characters; Google allows 64 of
    ``[A-Za-z0-9-_+/=]``) that only holders of ``token`` can produce."""
    nonce = nonce or secrets.token_hex(10)
    if not re.fullmatch(r"[0-9a-f]{20}", nonce):
        raise ValueError("nonce must be 20 lower-case hex digits")
    return f"hb-{nonce}-{_mac(token, nonce)}"


def channel_id_minted(channel_id: str, tokens: Sequence[str]) -> bool:
    """Whether ``channel_id`` was minted by :func:`mint_channel_id` under one of ``tokens`` (constant time)."""
    match = _CHANNEL_ID.fullmatch(channel_id or "")
    if not match:
        return False
    return matches_any(match["mac"], [_mac(token, match["nonce"]) for token in tokens])


def calendar_id_of(resource_uri: str | None) -> str | None:
    """The calendar id in an ``X-Goog-Resource-URI`` (percent-decoded), or None."""
    if not resource_uri:
        return None
    match = _CALENDAR_PATH.search(urlsplit(resource_uri).path)
    return unquote(match["id"]) if match else None


class GoogleCalendarSource:
    """Google Calendar push-notification source. ``tokens``: the configured channel tokens (first = current)."""

    name = "google-calendar"

    def __init__(self, tokens: Sequence[str], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if isinstance(tokens, str):
            raise ValueError("tokens must be a sequence of strings, not a single string")
        cleaned = tuple(t for t in tokens if isinstance(t, str) and t.strip())
        if not cleaned or len(cleaned) != len(tokens):
            raise ValueError("GoogleCalendarSource needs at least one non-empty channel token")
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.tokens = cleaned
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"GoogleCalendarSource(tokens=<{len(self.tokens)} hidden>)"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the channel token and that the channel is one hookbus minted. Raises SignatureError."""
        token = header_value(headers, "X-Goog-Channel-Token")
        state = header_value(headers, "X-Goog-Resource-State")
        if not token:
            UNSIGNED_REJECTED.labels(self.name, state if state in STATES else "other").inc()
            raise SignatureError("missing X-Goog-Channel-Token header")
        if not matches_any(token, self.tokens):
            raise SignatureError("X-Goog-Channel-Token does not match the configured token")
        channel_id = header_value(headers, "X-Goog-Channel-ID") or ""
        if not channel_id_minted(channel_id, self.tokens):
            raise SignatureError("unknown notification channel (not created by hookbus calendar watch)")

    def parse(self, body: bytes) -> Delivery:
        """Not used: the notification is all headers (ingest calls :meth:`parse_request`)."""
        raise PayloadError("a Google Calendar push notification is read from its headers")

    def parse_request(self, headers: Mapping[str, str], body: bytes, *, received_at: float | None = None) -> Delivery:
        """The delivery for a verified notification's headers (the body is empty and ignored). Raises PayloadError."""
        channel_id = header_value(headers, "X-Goog-Channel-ID") or ""
        number = header_value(headers, "X-Goog-Message-Number") or ""
        if not _MESSAGE_NUMBER.fullmatch(number):
            raise PayloadError("X-Goog-Message-Number must be a positive integer")
        state = header_value(headers, "X-Goog-Resource-State") or ""
        event_id = f"{channel_id}:{number}"
        if state != "exists" and state != "not_exists":
            # "sync": the handshake after events.watch; anything else is not a Calendar state. Acknowledged only.
            return Delivery(event_id=event_id, provider_type=state or "missing_state", events=())
        resource_uri = header_value(headers, "X-Goog-Resource-URI")
        calendar_id = calendar_id_of(resource_uri)
        resource_id = header_value(headers, "X-Goog-Resource-ID")
        data = {
            "channel_id": channel_id,
            "resource_id": resource_id,
            "resource_uri": resource_uri,
            "resource_state": state,
            "message_number": int(number),
            "calendar_id": calendar_id,
            "channel_expiration": header_value(headers, "X-Goog-Channel-Expiration"),
        }
        event = Event(
            id=event_id,
            source=self.name,
            type=EVENT_TYPE,
            time=from_unix(time.time() if received_at is None else received_at),
            data=data,
            subject=calendar_id or resource_id,
        )
        return Delivery(event_id=event_id, provider_type=state, events=(event,))


def from_env() -> list[GoogleCalendarSource]:
    """The Google Calendar push source if ``GOOGLE_CALENDAR_CHANNEL_TOKEN`` is set."""
    settings = GoogleCalendarSettings()
    if not settings.google_calendar_channel_token:
        return []
    return [
        GoogleCalendarSource(
            settings.google_calendar_channel_token, max_body_bytes=settings.google_calendar_max_body_bytes
        )
    ]
