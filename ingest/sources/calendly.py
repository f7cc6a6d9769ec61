"""Calendly webhooks (API v2): signature verification and normalization into booking events.

Signature scheme (https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures)::

    Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex>

``v1`` is the lower-case hex HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the subscription's ``signing_key``
(set when the subscription is created, ``POST /webhook_subscriptions``). Calendly has no official Python helper;
this follows the documented scheme, and shared case 010 pins a value computed with Python's ``hmac``. Checks:

- several signing keys may be configured at once (rotation: a new subscription with a new key runs alongside the
  old one until it is deleted); every configured key × every ``v1`` is compared in constant time;
- the replay window is ``tolerance_s`` (default **180 s**, Calendly's recommended three minutes; configurable):
  a ``t`` older than that is rejected even with a valid signature; a ``t`` in the future is accepted (the app counts
  it as clock skew), as for Stripe;
- a delivery **without** the header is rejected while a key is configured, and counted in
  ``hookbus_unsigned_rejected_total{source="calendly"}``: subscriptions created without a ``signing_key`` arrive
  unsigned, and accepting "whenever there is no header" would accept forgeries. Unsigned deliveries are accepted only
  when the source is explicitly configured with ``CALENDLY_SIGNATURE=none``; every event then carries
  ``verified: false``.

Normalization (webhook payload: https://developer.calendly.com/api-docs/overview/webhooks/webhook-payload;
``payload`` is the Invitee resource of the Scheduling API, ``scheduled_event`` embedded):

- ``invitee.created`` → ``booking.created``; when the invitee has an ``old_invitee`` (the new half of a reschedule)
  → ``booking.rescheduled`` with ``booking_id`` = the old invitee's uuid and ``new_booking_id`` = this one's.
- ``invitee.canceled`` → ``booking.cancelled``, except the old half of a reschedule (``rescheduled: true``), which is
  acknowledged and not published: the ``invitee.created`` of the new invitee carries the reschedule (case 017: a
  "cancel" that is really a reschedule must not send a cancellation).
- anything else (``invitee_no_show.created``, ``routing_form_submission.created`` …) → no event.

The booking id is the invitee's uuid (last segment of ``payload.uri``); the provider event id used for deduplication
is ``"<event>:<invitee uuid>"`` (Calendly sends no delivery id, and each invitee is created and canceled at most
once). The staff member is the first of ``scheduled_event.event_memberships``; the invitee's phone is
``text_reminder_number`` or an answer to a question mentioning "phone".
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import orjson
from pydantic import field_validator
from pydantic_settings import NoDecode

from bus.config import HookbusSettings
from bus.envelope import Event, from_unix

from .base import (
    Delivery,
    PayloadError,
    SignatureError,
    check_timestamped_hmac,
    header_value,
    hmac_sha256,
    hmac_sha256_hex,
)
from .bookings import UNSIGNED_REJECTED, booking_data, e164, instant, known_trigger, optional_str, time_zone

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "CalendlySettings",
    "CalendlySource",
    "from_env",
    "signature_header",
]

SIGNATURE_HEADER = "Calendly-Webhook-Signature"
DEFAULT_TOLERANCE_S = 180
DEFAULT_MAX_BODY_BYTES = 256 * 1024
TRIGGERS = (
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
    "routing_form_submission.created",
)
_DIGITS = re.compile(r"[0-9]{1,12}", re.ASCII)


class CalendlySettings(HookbusSettings):
    """- ``CALENDLY_WEBHOOK_SIGNING_KEY``: the subscription signing key(s), comma-separated while rotating (or
      ``CALENDLY_WEBHOOK_SIGNING_KEY_FILE``).
    - ``CALENDLY_TOLERANCE_S``: maximum age of the signature timestamp, seconds (default 180).
    - ``CALENDLY_MAX_BODY_BYTES``: larger bodies get 413 before any of it is verified.
    - ``CALENDLY_SIGNATURE``: ``required`` (default) or ``none`` for subscriptions created without a signing key
      (events then carry ``verified: false``).
    """

    calendly_webhook_signing_key: Annotated[tuple[str, ...], NoDecode] = ()
    calendly_tolerance_s: int = DEFAULT_TOLERANCE_S
    calendly_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    calendly_signature: Literal["required", "none"] = "required"

    @field_validator("calendly_webhook_signing_key", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


def signature_header(body: bytes, key: str, timestamp: int) -> str:
    """A ``Calendly-Webhook-Signature`` value (``t=<timestamp>,v1=<hex>``) for ``body`` (``hookbus send``, tests)."""
    return f"t={int(timestamp)},v1={hmac_sha256_hex(key.encode('utf-8'), f'{int(timestamp)}.'.encode() + body)}"


def _parse_header(value: str) -> tuple[int, list[str]]:
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, item_value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(item_value.strip())
        elif key == "v1":
            signatures.append(item_value.strip())
    if len(timestamps) != 1 or not _DIGITS.fullmatch(timestamps[0]):
        raise SignatureError("Calendly-Webhook-Signature needs exactly one integer t= timestamp")
    if not signatures:
        raise SignatureError("no v1 signature in Calendly-Webhook-Signature")
    return int(timestamps[0]), signatures


def _trigger_of(body: bytes) -> object:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc.get("event") if isinstance(doc, dict) else None


class CalendlySource:
    """Calendly webhook source. ``signing_keys``: active keys (empty only with ``signature="none"``);
    ``tolerance_s``: replay window, seconds; ``max_body_bytes``: request body limit, enforced before verification."""

    name = "calendly"

    def __init__(
        self,
        signing_keys: Sequence[str],
        *,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        signature: Literal["required", "none"] = "required",
    ) -> None:
        if isinstance(signing_keys, str):
            raise ValueError("signing_keys must be a sequence of strings, not a single string")
        keys = tuple(key.encode("utf-8") for key in signing_keys if isinstance(key, str) and key.strip())
        if len(keys) != len(signing_keys):
            raise ValueError("every Calendly signing key must be a non-empty string")
        if signature == "required" and not keys:
            raise ValueError("CalendlySource needs a signing key (or signature='none', explicitly)")
        if signature not in ("required", "none"):
            raise ValueError("signature must be 'required' or 'none'")
        if tolerance_s <= 0 or max_body_bytes <= 0:
            raise ValueError("tolerance_s and max_body_bytes must be positive")
        self._keys = keys
        self._macs = tuple(hmac_sha256(key) for key in keys)
        self.signature = signature
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"CalendlySource(keys=<{len(self._keys)} hidden>, signature={self.signature!r})"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> float | None:
        """Check ``Calendly-Webhook-Signature`` over the raw body at Unix time ``now``. Raises SignatureError.

        Returns the signature's ``t=`` (Unix seconds), or ``None`` when signatures are off."""
        if self.signature == "none":
            return None
        value = header_value(headers, SIGNATURE_HEADER)
        if not value:
            UNSIGNED_REJECTED.labels(self.name, known_trigger(_trigger_of(body), TRIGGERS)).inc()
            raise SignatureError("missing Calendly-Webhook-Signature header")
        timestamp, candidates = _parse_header(value)
        check_timestamped_hmac(self._macs, timestamp, candidates, body, now, self.tolerance_s, what="Calendly")
        return float(timestamp)

    def signed_at(self, headers: Mapping[str, str]) -> float:
        """The ``t=`` of a verified delivery (Unix seconds); 0 when unsigned."""
        value = header_value(headers, SIGNATURE_HEADER)
        if not value:
            return 0.0
        try:
            return float(_parse_header(value)[0])
        except SignatureError:
            return 0.0

    def parse(self, body: bytes, *, received_at: float | None = None) -> Delivery:
        """Normalize a verified Calendly delivery. Raises PayloadError."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"Calendly body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise PayloadError("Calendly body is not a JSON object")
        trigger = doc.get("event")
        if not isinstance(trigger, str) or not trigger:
            raise PayloadError("Calendly body lacks a string 'event'")
        payload = doc.get("payload")
        if not isinstance(payload, dict):
            raise PayloadError("Calendly body lacks the object 'payload'")
        invitee_id = _uuid_of(payload.get("uri")) or "sha256-" + hashlib.sha256(body).hexdigest()[:32]
        event_id = f"{trigger}:{invitee_id}"
        if trigger == "invitee.created":
            old = _uuid_of(payload.get("old_invitee"))
            kind = "booking.rescheduled" if old else "booking.created"
            booking_id, new_id = (old, invitee_id) if old else (invitee_id, None)
        elif trigger == "invitee.canceled":
            if payload.get("rescheduled") is True:
                return Delivery(event_id=event_id, provider_type=f"{trigger} (rescheduled)", events=())
            kind, booking_id, new_id = "booking.cancelled", invitee_id, None
        else:
            return Delivery(event_id=event_id, provider_type=trigger, events=())

        data = self._data(payload, booking_id, new_id)
        created = instant(doc.get("created_at"), "created_at")
        event = Event(
            id=event_id,
            source=self.name,
            type=kind,
            time=created or from_unix(time.time() if received_at is None else received_at),
            data=data,
            subject=booking_id,
        )
        return Delivery(event_id=event_id, provider_type=trigger, events=(event,))

    def _data(self, payload: Mapping[str, Any], booking_id: str, new_id: str | None) -> dict[str, Any]:
        scheduled = payload.get("scheduled_event")
        scheduled = scheduled if isinstance(scheduled, dict) else {}
        memberships = scheduled.get("event_memberships")
        host = memberships[0] if isinstance(memberships, list) and memberships else None
        host = host if isinstance(host, dict) else {}
        zone_name = time_zone(payload.get("timezone"))
        name = optional_str(payload, "name") or " ".join(
            part for part in (optional_str(payload, "first_name"), optional_str(payload, "last_name")) if part
        )
        cancellation = payload.get("cancellation")
        location = scheduled.get("location")
        location_text = None
        if isinstance(location, dict):
            location_text = optional_str(location, "location") or optional_str(location, "join_url")
        return booking_data(
            booking_id=booking_id,
            new_booking_id=new_id,
            start=instant(scheduled.get("start_time"), "scheduled_event.start_time"),
            end=instant(scheduled.get("end_time"), "scheduled_event.end_time"),
            time_zone_name=zone_name,
            event_type=optional_str(scheduled, "name"),
            staff={
                "name": optional_str(host, "user_name"),
                "email": (optional_str(host, "user_email") or "").lower() or None,
                "time_zone": None,
            },
            invitee={
                "name": name or None,
                "email": optional_str(payload, "email"),
                "phone": e164(payload.get("text_reminder_number")) or _phone_answer(payload),
                "time_zone": zone_name,
            },
            location=location_text,
            reason=optional_str(cancellation, "reason") if isinstance(cancellation, dict) else None,
            verified=self.signature == "required",
        )


def _uuid_of(uri: object) -> str | None:
    """The last path segment of a Calendly resource URI (``…/invitees/AAAA`` → ``AAAA``), or None."""
    if not isinstance(uri, str) or not uri.strip():
        return None
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    return segment or None


def _phone_answer(payload: Mapping[str, Any]) -> str | None:
    answers = payload.get("questions_and_answers")
    if not isinstance(answers, list):
        return None
    for item in answers:
        if isinstance(item, dict) and "phone" in str(item.get("question", "")).lower():
            number = e164(item.get("answer"))
            if number:
                return number
    return None


def from_env() -> list[CalendlySource]:
    """The Calendly source if ``CALENDLY_WEBHOOK_SIGNING_KEY`` is set, or ``CALENDLY_SIGNATURE=none``."""
    settings = CalendlySettings()
    if not settings.calendly_webhook_signing_key and settings.calendly_signature == "required":
        return []
    return [
        CalendlySource(
            settings.calendly_webhook_signing_key,
            tolerance_s=settings.calendly_tolerance_s,
            max_body_bytes=settings.calendly_max_body_bytes,
            signature=settings.calendly_signature,
        )
    ]
