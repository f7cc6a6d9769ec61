"""``hookbus calendar watch|renew|stop|channels``: Google Calendar push channels.

Google delivers push notifications only through a channel opened with ``events.watch``, and every channel expires
(``params.ttl``, one week by default; https://developers.google.com/calendar/api/guides/push#renewing-notification-
channels). There is no automatic renewal: a new channel must be opened before the old one expires. These commands
keep the channel registry in Redis that ingest's notifications are checked against (``calendar_sync``):

- ``hookbus calendar watch CALENDAR_ID`` — if the calendar has no sync token yet, a baseline full sync stores one
  (nothing is published: existing events did not "change"); then ``events.watch`` opens a channel with a minted id
  (:func:`ingest.sources.google_calendar.mint_channel_id`), the address ``GOOGLE_CALENDAR_WEBHOOK_URL`` and the
  token ``GOOGLE_CALENDAR_CHANNEL_TOKEN``, and records it.
- ``hookbus calendar renew [--within 2d]`` — every channel expiring within that window gets a successor
  (``events.watch``) first, then is closed (``channels.stop``): notifications never stop in between, and the short
  overlap at most costs an extra, empty incremental sync. Run it from cron or a systemd timer (``docs/bookings.md``),
  e.g. daily with a two-day window for week-long channels. Renewing a subscription is not polling for data.
- ``hookbus calendar stop CHANNEL_ID`` / ``--all`` — ``channels.stop`` and forget.
- ``hookbus calendar channels`` — the registry: id, calendar, expiry.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import redis.asyncio as aioredis

from bus.connection import connect
from bus.naming import Names
from ingest.sources.google_calendar import GoogleCalendarSettings, mint_channel_id

from .calendar import CalendarSettings, google_client
from .calendar_sync import all_channels, forget_channel, run_sync, save_channel, token_key
from .clients.google_calendar import GoogleCalendarClient

__all__ = ["calendar", "open_channel", "renew_channels", "stop_channels"]

T = TypeVar("T")
DEFAULT_TTL_S = 7 * 24 * 3600
_DURATION = re.compile(r"([0-9]+)\s*([smhd]?)", re.ASCII)


async def open_channel(
    gcal: GoogleCalendarClient,
    redis: aioredis.Redis,
    names: Names,
    calendar_id: str,
    *,
    address: str,
    token: str,
    ttl_s: int = DEFAULT_TTL_S,
) -> dict[str, Any]:
    """Baseline the sync token if needed, open a channel, record it; the channel record."""
    if await redis.get(token_key(names, calendar_id)) is None:
        await run_sync(gcal, redis, names, calendar_id, publisher=None)
    channel_id = mint_channel_id(token)
    answer = await gcal.watch(calendar_id, channel_id=channel_id, address=address, token=token, ttl_s=ttl_s)
    channel = {
        "id": channel_id,
        "calendar_id": calendar_id,
        "resource_id": answer["resourceId"],
        "expiration_ms": int(answer.get("expiration") or (time.time() + ttl_s) * 1000),
        "address": address,
        "created_ms": int(time.time() * 1000),
    }
    await save_channel(redis, names, channel)
    return channel


async def renew_channels(
    gcal: GoogleCalendarClient,
    redis: aioredis.Redis,
    names: Names,
    *,
    within_s: float,
    address: str | None,
    token: str,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Replace every channel expiring within ``within_s`` seconds: open the successor, then stop the old one.
    Returns ``(old, new)`` pairs."""
    horizon_ms = ((time.time() if now is None else now) + within_s) * 1000
    renewed = []
    for old in await all_channels(redis, names):
        if old["expiration_ms"] > horizon_ms:
            continue
        new = await open_channel(
            gcal, redis, names, old["calendar_id"], address=address or old["address"], token=token, ttl_s=ttl_s
        )
        await gcal.stop_channel(old["id"], old["resource_id"])
        await forget_channel(redis, names, old["id"])
        renewed.append((old, new))
    return renewed


async def stop_channels(
    gcal: GoogleCalendarClient, redis: aioredis.Redis, names: Names, channel_ids: list[str] | None
) -> list[str]:
    """Stop and forget the given channels (all when ``None``); the ids stopped."""
    channels = await all_channels(redis, names)
    if channel_ids is not None:
        wanted = set(channel_ids)
        channels = [c for c in channels if c["id"] in wanted]
        missing = wanted - {c["id"] for c in channels}
        if missing:
            raise click.ClickException(f"not in the channel registry: {', '.join(sorted(missing))}")
    for channel in channels:
        await gcal.stop_channel(channel["id"], channel["resource_id"])
        await forget_channel(redis, names, channel["id"])
    return [c["id"] for c in channels]


def parse_duration(text: str) -> float:
    """``"2d"`` → 172800.0; ``"36h"``, ``"90m"``, ``"600s"``, ``"600"`` (seconds)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 2d, 36h, 90m or 600s")
    return float(int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]])


def _run(work: Callable[[GoogleCalendarClient, aioredis.Redis, Names], Awaitable[T]]) -> T:
    settings = CalendarSettings()

    async def main() -> T:
        redis = connect(settings.redis_url, socket_timeout_s=10)
        try:
            async with google_client(settings) as gcal:
                return await work(gcal, redis, Names(settings.hookbus_key_prefix))
        finally:
            await redis.aclose()

    return asyncio.run(main())


def _token() -> str:
    tokens = GoogleCalendarSettings().google_calendar_channel_token
    if not tokens:
        raise click.UsageError("GOOGLE_CALENDAR_CHANNEL_TOKEN is not set (the token ingest verifies)")
    return tokens[0]


def _expires(channel: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(channel["expiration_ms"] / 1000))


@click.group()
def calendar() -> None:
    """Google Calendar push channels (watch, renew before expiry, stop)."""


@calendar.command()
@click.argument("calendar_id")
@click.option("--address", envvar="GOOGLE_CALENDAR_WEBHOOK_URL", help="https://<host>/webhooks/google-calendar")
@click.option("--ttl", "ttl", default="7d", show_default=True, help="Channel lifetime asked of Google.")
def watch(calendar_id: str, address: str | None, ttl: str) -> None:
    """Open a push channel for CALENDAR_ID (after a baseline sync if it has no sync token yet)."""
    if not address:
        raise click.UsageError("give --address or set GOOGLE_CALENDAR_WEBHOOK_URL")
    token = _token()
    channel = _run(
        lambda g, r, n: open_channel(g, r, n, calendar_id, address=address, token=token, ttl_s=int(parse_duration(ttl)))
    )
    click.echo(f"watching {calendar_id}: channel {channel['id']} until {_expires(channel)}")


@calendar.command()
@click.option("--within", default="2d", show_default=True, help="Renew channels expiring within this window.")
@click.option("--address", envvar="GOOGLE_CALENDAR_WEBHOOK_URL", help="Default: each channel's current address.")
@click.option("--ttl", "ttl", default="7d", show_default=True)
def renew(within: str, address: str | None, ttl: str) -> None:
    """Replace channels that expire soon (run it daily from cron or a systemd timer)."""
    token = _token()
    pairs = _run(
        lambda g, r, n: renew_channels(
            g, r, n, within_s=parse_duration(within), address=address, token=token, ttl_s=int(parse_duration(ttl))
        )
    )
    for old, new in pairs:
        click.echo(f"{new['calendar_id']}: channel {old['id']} → {new['id']} until {_expires(new)}")
    click.echo(f"renewed {len(pairs)} channel(s)")


@calendar.command()
@click.argument("channel_ids", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="Stop every registered channel.")
def stop(channel_ids: tuple[str, ...], stop_all: bool) -> None:
    """Stop channels (channels.stop) and forget them."""
    if not channel_ids and not stop_all:
        raise click.UsageError("give CHANNEL_IDS or --all")
    stopped = _run(lambda g, r, n: stop_channels(g, r, n, None if stop_all else list(channel_ids)))
    click.echo(f"stopped {len(stopped)} channel(s)")


@calendar.command()
def channels() -> None:
    """List the registered channels, soonest expiry first."""
    settings = CalendarSettings()

    async def main() -> list[dict[str, Any]]:
        redis = connect(settings.redis_url, socket_timeout_s=10)
        try:
            return await all_channels(redis, Names(settings.hookbus_key_prefix))
        finally:
            await redis.aclose()

    for channel in asyncio.run(main()):
        click.echo(f"{channel['id']}  {channel['calendar_id']}  expires {_expires(channel)}")
