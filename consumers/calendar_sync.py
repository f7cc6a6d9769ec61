"""Calendar sync: Google Calendar push notifications become ``calendar.event_changed`` events, without polling.

Ingest turns an authentic ``exists``/``not_exists`` push notification into ``calendar.sync_requested`` (see
:mod:`ingest.sources.google_calendar`); this consumer (group ``calendar_sync``, its own process) then:

1. looks the channel up in the channel registry that ``hookbus calendar watch`` wrote; an unknown channel, or one
   whose resource id does not match, is logged and acked **without any Calendar API call**;
2. under a per-calendar lock, runs an **incremental sync**: ``events.list?syncToken=<stored token>``, following
   ``nextPageToken`` to the last page, whose ``nextSyncToken`` is stored for next time
   (https://developers.google.com/calendar/api/guides/sync);
3. publishes one ``calendar.event_changed`` per changed event (deleted ones included, ``status: cancelled``),
   deduplicated by (calendar, event, ``updated``), so a sync repeated after a crash publishes nothing twice; the new
   token is stored only after every change of the walk was published;
4. on ``410 Gone`` (the token expired or was invalidated) clears the token and runs **one full resync**
   (``showDeleted=true``, so deletions made meanwhile are seen), publishing each listed event with ``resync: true``;
   versions already published (same event and ``updated``) are dropped by the deduplication.

No timer asks Google for changes: the sync runs only when Google says something changed. Keeping the channel alive
(``hookbus calendar renew``, from cron or a systemd timer) renews a subscription, it does not poll data.

Why a consumer of its own rather than part of ``calendar``: a full resync of a busy calendar can take many pages
and must be serialized per calendar, while booking writes must stay prompt; separate groups also scale, fail and
dead-letter independently, and the ``calendar`` worker's own inserts (which Google reports back as changes) never
queue behind a resync.

Redis keys (group ``calendar_sync``): ``{prefix}:state:calendar_sync:sync_token:{calendar id}``,
``…:channel:{channel id}`` (JSON: calendar id, resource id, expiration in Unix ms, address), ``…:channels`` (sorted
set of channel ids by expiration), ``…:lock:sync:{calendar id}``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from bus import Consumer, Context, Event
from bus.consumer import Lifespan, Resources
from bus.envelope import utc_now_rfc3339
from bus.localtime import days_covered, format_instant, parse_date, parse_instant, zone
from bus.locks import held
from bus.naming import Names
from bus.publisher import Publisher

from .calendar import CalendarSettings, google_client
from .clients.google_calendar import GoogleCalendarClient, SyncTokenExpired

__all__ = [
    "GROUP",
    "SyncResult",
    "consumer",
    "event_changed_data",
    "load_channel",
    "make_lifespan",
    "run_sync",
    "save_channel",
]

log = logging.getLogger("hookbus.calendar_sync")

GROUP = "calendar_sync"
SOURCE = "google-calendar"
CHANGED = "calendar.event_changed"
#: How long a stored sync token is kept without use (Google invalidates old tokens too; a 410 then resyncs).
TOKEN_TTL_S = 60 * 24 * 3600


# ------------------------------------------------------------------------------------------------- registry
def token_key(names: Names, calendar_id: str) -> str:
    return names.state(GROUP, f"sync_token:{calendar_id}")


def channel_key(names: Names, channel_id: str) -> str:
    return names.state(GROUP, f"channel:{channel_id}")


def channels_key(names: Names) -> str:
    return names.state(GROUP, "channels")


async def save_channel(redis: aioredis.Redis, names: Names, channel: Mapping[str, Any]) -> None:
    """Record a channel (``id``, ``calendar_id``, ``resource_id``, ``expiration_ms``, ``address``) until a day
    after it expires."""
    expiration_ms = int(channel["expiration_ms"])
    ttl_s = max(60, int(expiration_ms / 1000 - time.time()) + 24 * 3600)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(channel_key(names, channel["id"]), orjson.dumps(dict(channel)), ex=ttl_s)
        pipe.zadd(channels_key(names), {channel["id"]: expiration_ms})
        await pipe.execute()


async def load_channel(redis: aioredis.Redis, names: Names, channel_id: str) -> dict[str, Any] | None:
    raw = await redis.get(channel_key(names, channel_id))
    return orjson.loads(raw) if raw else None


async def forget_channel(redis: aioredis.Redis, names: Names, channel_id: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(channel_key(names, channel_id))
        pipe.zrem(channels_key(names), channel_id)
        await pipe.execute()


async def all_channels(redis: aioredis.Redis, names: Names) -> list[dict[str, Any]]:
    """Every registered channel, soonest expiry first (ids whose record expired are dropped from the index)."""
    found = []
    for raw_id in await redis.zrange(channels_key(names), 0, -1):
        channel_id = raw_id.decode()
        channel = await load_channel(redis, names, channel_id)
        if channel is None:
            await redis.zrem(channels_key(names), channel_id)
        else:
            found.append(channel)
    return found


# ---------------------------------------------------------------------------------------------- normalizing
def _when(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    if value.get("date"):
        return {"date": parse_date(value["date"])}
    text = value.get("dateTime")
    if not isinstance(text, str):
        return {}
    try:
        moment = parse_instant(text)
    except ValueError:
        moment = dt.datetime.fromisoformat(text).replace(tzinfo=zone(value.get("timeZone") or "UTC"))
    return {"instant": moment, "time_zone": value.get("timeZone")}


def event_changed_data(item: Mapping[str, Any], calendar_id: str, *, resync: bool) -> dict[str, Any]:
    """The ``data`` of a ``calendar.event_changed`` for one Google event resource.

    Timed events carry ``start``/``end`` as UTC instants plus ``time_zone``; all-day events carry ``all_day: true``,
    ``start_date``, ``end_date`` (exclusive, as Google sends it), ``days`` (every date covered) and ``last_day``
    (case 022: ``2026-07-04``..``2026-07-07`` covers July 4, 5 and 6). A deleted event may carry only ``id`` and
    ``status: cancelled``.
    """
    start, end = _when(item.get("start")), _when(item.get("end"))
    private = (item.get("extendedProperties") or {}).get("private") or {}
    data: dict[str, Any] = {
        "calendar_id": calendar_id,
        "event_id": item.get("id"),
        "status": item.get("status", "confirmed"),
        "summary": item.get("summary"),
        "updated": item.get("updated"),
        "html_link": item.get("htmlLink"),
        "booking": private.get("hookbus_booking"),
        "origin": "hookbus" if private.get("hookbus_booking") else "calendar",
        "resync": resync,
        "all_day": "date" in start,
        "start": None,
        "end": None,
        "time_zone": start.get("time_zone"),
    }
    if "date" in start and "date" in end:
        days = days_covered(start["date"], end["date"])
        data.update(
            start_date=start["date"].isoformat(),
            end_date=end["date"].isoformat(),
            days=[d.isoformat() for d in days],
            last_day=days[-1].isoformat(),
        )
    elif "instant" in start:
        data["start"] = format_instant(start["instant"])
        data["end"] = format_instant(end["instant"]) if "instant" in end else None
    return data


# ------------------------------------------------------------------------------------------------------ sync
@dataclass(frozen=True, slots=True)
class SyncResult:
    """``full``: a full sync ran (no token, or after a 410); ``expired``: the stored token answered 410;
    ``changed``: events listed; ``published``: events newly published (not duplicates); ``pages``: list calls."""

    full: bool
    expired: bool
    changed: int
    published: int
    pages: int


async def run_sync(
    gcal: GoogleCalendarClient,
    redis: aioredis.Redis,
    names: Names,
    calendar_id: str,
    *,
    publisher: Publisher | None,
) -> SyncResult:
    """Incremental sync of ``calendar_id`` from its stored token (a full one if there is none), one full resync
    after a 410. With ``publisher`` None (the baseline ``hookbus calendar watch`` takes) nothing is published."""
    key = token_key(names, calendar_id)
    raw = await redis.get(key)
    token = raw.decode() if raw else None
    expired = False
    try:
        changed, published, pages = await _walk(gcal, redis, names, calendar_id, token, publisher, resync=token is None)
    except SyncTokenExpired:
        if token is None:
            raise
        expired = True
        log.warning("sync token expired; one full resync", extra={"calendar_id": calendar_id})
        await redis.delete(key)
        token = None
        changed, published, pages = await _walk(gcal, redis, names, calendar_id, None, publisher, resync=True)
    return SyncResult(full=token is None, expired=expired, changed=changed, published=published, pages=pages)


async def _walk(
    gcal: GoogleCalendarClient,
    redis: aioredis.Redis,
    names: Names,
    calendar_id: str,
    token: str | None,
    publisher: Publisher | None,
    *,
    resync: bool,
) -> tuple[int, int, int]:
    changed = published = pages = 0
    page_token: str | None = None
    while True:
        page = await gcal.list_events(
            calendar_id, sync_token=token, page_token=page_token, show_deleted=token is None and publisher is not None
        )
        pages += 1
        for item in page.get("items") or []:
            if not isinstance(item, dict) or not item.get("id"):
                continue
            changed += 1
            if publisher is not None:
                published += await _publish(publisher, calendar_id, item, resync=resync)
        page_token = page.get("nextPageToken")
        if page_token:
            continue
        next_token = page.get("nextSyncToken")
        if next_token:
            await redis.set(token_key(names, calendar_id), next_token, ex=TOKEN_TTL_S)
        return changed, published, pages


async def _publish(publisher: Publisher, calendar_id: str, item: Mapping[str, Any], *, resync: bool) -> int:
    updated = item.get("updated") or utc_now_rfc3339()
    event_id = f"{calendar_id}/{item['id']}/{updated}"
    try:
        moment = format_instant(parse_instant(updated))
    except ValueError:
        moment = utc_now_rfc3339()
    event = Event(
        id=event_id,
        source=SOURCE,
        type=CHANGED,
        time=moment,
        data=event_changed_data(item, calendar_id, resync=resync),
        subject=str(item["id"]),
    )
    result = await publisher.publish([event], dedupe_id=(SOURCE, event_id))
    return 0 if result.duplicate else 1


# --------------------------------------------------------------------------------------------------- consumer
def make_lifespan(
    settings: CalendarSettings | None = None, *, google_transport: httpx.AsyncBaseTransport | None = None
) -> Lifespan:
    """One Google Calendar client and one publisher per process (``google_transport`` replaces the network)."""

    @contextlib.asynccontextmanager
    async def lifespan(resources: Resources) -> AsyncIterator[Mapping[str, Any]]:
        config = settings or CalendarSettings()
        gcal_client = google_client(config, transport=google_transport, limiter=resources.limiter, resources=resources)
        async with gcal_client as gcal:
            publisher = Publisher(resources.redis, resources.names, dedupe_ttl_s=config.hookbus_dedupe_ttl_s)
            yield {"gcal": gcal, "publisher": publisher}

    return lifespan


consumer = Consumer("calendar_sync", lifespan=make_lifespan())


@consumer.handler("calendar.sync_requested")
async def sync_calendar(event: Event, ctx: Context) -> None:
    """Incremental sync of the notified calendar (see the module docstring)."""
    data = event.data
    channel = await load_channel(ctx.redis, ctx.names, str(data.get("channel_id")))
    if channel is None or (data.get("resource_id") and data["resource_id"] != channel.get("resource_id")):
        ctx.log.warning(
            "notification for a channel not in the registry; no sync",
            extra={"outcome": "unknown_channel", "channel_id": data.get("channel_id")},
        )
        return
    calendar_id = channel["calendar_id"]
    gcal: GoogleCalendarClient = ctx.state["gcal"]
    async with held(ctx.redis, ctx.names.state(GROUP, f"lock:sync:{calendar_id}"), ttl_ms=120_000, retry_in_s=1.0):
        result = await run_sync(gcal, ctx.redis, ctx.names, calendar_id, publisher=ctx.state["publisher"])
    note = getattr(ctx, "note", None)
    if callable(note):
        note(calendar_id=calendar_id, changed=result.changed, full_resync=result.full)
    ctx.log.info(
        "calendar synced",
        extra={
            "calendar_id": calendar_id,
            "changed": result.changed,
            "published": result.published,
            "full_resync": result.full,
            "pages": result.pages,
        },
    )
