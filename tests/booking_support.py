"""Helpers for the booking and calendar integration tests: the Google Calendar and Twilio sandboxes in process,
the calendar and calendar_sync consumers wired to them, and signed deliveries of the three sources."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette

from bus.consumer import Consumer
from bus.naming import Names
from bus.ratelimit import Limiter
from consumers import calendar, calendar_sync
from consumers.sandboxes.google_calendar import create_app as create_google
from consumers.sandboxes.twilio import create_app as create_twilio
from ingest.app import create_app
from ingest.config import IngestSettings
from ingest.sources.calcom import CalcomSource, signature
from ingest.sources.calendly import CalendlySource, signature_header
from ingest.sources.google_calendar import GoogleCalendarSource

CALENDLY_KEY = "hookbus-calendly-signing-key"
CALCOM_SECRET = "hookbus-calcom-secret"
CHANNEL_TOKEN = "tok-6b1f0c2e"
TOKEN = "sandbox-token"
TWILIO_SID = "AC" + "0123456789abcdef" * 2
FROM_NUMBER = "+15005550006"

SETTINGS = calendar.CalendarSettings(
    google_calendar_base_url="http://gcal",
    google_calendar_access_token=TOKEN,
    twilio_base_url="http://twilio",
    twilio_account_sid=TWILIO_SID,
    twilio_auth_token=TOKEN,
    twilio_from_number=FROM_NUMBER,
)

RULES = calendar.CalendarRules.model_validate(
    {
        "default_time_zone": "UTC",
        "staff": {
            "anna@example.com": {"calendar_id": "anna@example.com", "time_zone": "Europe/Berlin", "name": "Anna"},
            "ben@example.com": {"calendar_id": "ben@example.com", "time_zone": "America/New_York", "name": "Ben"},
        },
    }
)


class Sandboxes:
    """The Google Calendar and Twilio stand-ins in process, and transports to them."""

    def __init__(self) -> None:
        self.google_app = create_google(access_token=TOKEN)
        self.twilio_app = create_twilio(auth_token=TOKEN)
        self.google = httpx.ASGITransport(app=self.google_app)
        self.twilio = httpx.ASGITransport(app=self.twilio_app)

    async def _call(self, transport: httpx.AsyncBaseTransport, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            response = await client.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else None

    async def google_objects(self) -> dict[str, Any]:
        return await self._call(self.google, "GET", "/_sandbox/objects")  # type: ignore[no-any-return]

    async def requests(self, op: str | None = None) -> list[dict[str, Any]]:
        found = (await self.google_objects())["requests"]
        return [r for r in found if op is None or r["op"] == op]

    async def events(self) -> list[dict[str, Any]]:
        return (await self.google_objects())["events"]  # type: ignore[no-any-return]

    async def messages(self) -> list[dict[str, Any]]:
        return (await self._call(self.twilio, "GET", "/_sandbox/objects"))["messages"]  # type: ignore[no-any-return]

    async def google_fault(self, **spec: Any) -> None:
        await self._call(self.google, "POST", "/_sandbox/faults", json=spec)

    async def twilio_fault(self, **spec: Any) -> None:
        await self._call(self.twilio, "POST", "/_sandbox/faults", json=spec)

    async def ui_event(self, calendar_id: str, event: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self.google, "POST", f"/_sandbox/calendars/{calendar_id}/events", json=event)  # type: ignore[no-any-return]

    async def ui_delete(self, calendar_id: str, event_id: str) -> None:
        await self._call(self.google, "DELETE", f"/_sandbox/calendars/{calendar_id}/events/{event_id}")

    async def invalidate_sync_tokens(self) -> None:
        await self._call(self.google, "POST", "/_sandbox/invalidate_sync_tokens")


def calendar_consumer(
    sandboxes: Sandboxes,
    rules: calendar.CalendarRules = RULES,
    *,
    google_transport: httpx.AsyncBaseTransport | None = None,
) -> Consumer:
    lifespan = calendar.make_lifespan(
        SETTINGS, rules, google_transport=google_transport or sandboxes.google, twilio_transport=sandboxes.twilio
    )
    return dataclasses.replace(calendar.consumer, lifespan=lifespan)


def sync_consumer(sandboxes: Sandboxes) -> Consumer:
    lifespan = calendar_sync.make_lifespan(SETTINGS, google_transport=sandboxes.google)
    return dataclasses.replace(calendar_sync.consumer, lifespan=lifespan)


def unlimited(redis: aioredis.Redis, names: Names) -> Limiter:
    """A limiter without limits: the Twilio default (1 SMS per second per number) would only slow the tests."""
    return Limiter(redis, names, limits={})


def booking_ingest(
    redis: aioredis.Redis,
    consumers: Sequence[Consumer],
    *,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int | None = None,
) -> Starlette:
    limit = {"max_body_bytes": max_body_bytes} if max_body_bytes else {}
    return create_app(
        IngestSettings(),
        redis=redis,
        sources={
            "calendly": CalendlySource([CALENDLY_KEY], **limit),
            "calcom": CalcomSource([CALCOM_SECRET], **limit),
            "google-calendar": GoogleCalendarSource([CHANNEL_TOKEN], **limit),
        },
        consumers=consumers,
        clock=clock,
    )


def calendly_headers(body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    return {"Calendly-Webhook-Signature": signature_header(body, CALENDLY_KEY, t), "Content-Type": "application/json"}


def calcom_headers(body: bytes) -> dict[str, str]:
    return {"X-Cal-Signature-256": signature(body, CALCOM_SECRET), "Content-Type": "application/json"}
