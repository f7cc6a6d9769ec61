"""Google Calendar push → ingest → calendar_sync worker → events.list on the sandbox, on a real Valkey.

The issue's three bars: a ``sync`` message makes no sync call; ``exists`` makes one incremental sync with the stored
token; a 410 makes exactly one full resync. Plus channel watch/renew/stop and the unknown-channel guard.
"""

from __future__ import annotations

import time

import pytest

from bus.envelope import Event
from consumers import calendar_sync
from consumers.calendar_cli import open_channel, parse_duration, renew_channels, stop_channels
from consumers.calendar_sync import SyncResult, all_channels, load_channel, run_sync, token_key
from consumers.clients.google_calendar import GoogleCalendarClient
from ingest.sources import booking_samples as samples

from .booking_support import CHANNEL_TOKEN, TOKEN, Sandboxes, booking_ingest, sync_consumer, unlimited
from .support import idle, ingest_client, running_worker, wait_until

pytestmark = pytest.mark.anyio

CAL = "anna@example.com"
ADDRESS = "https://hooks.example.com/webhooks/google-calendar"
CHANGED = "hookbus:stream:calendar.event_changed"


def gcal(sandboxes: Sandboxes) -> GoogleCalendarClient:
    return GoogleCalendarClient(base_url="http://gcal", access_token=TOKEN, transport=sandboxes.google)


def timed_event(event_id: str, summary: str) -> dict[str, object]:
    return {
        "id": event_id,
        "summary": summary,
        "start": {"dateTime": "2026-10-25T09:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-10-25T10:00:00+01:00", "timeZone": "Europe/Berlin"},
    }


async def drained(redis, names) -> None:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await idle(redis, names, "calendar_sync", ("calendar.sync_requested",))

    await wait_until(check, timeout_s=20, what="the calendar_sync group to drain")


async def notify(client, channel: str, state: str, number: int) -> str:  # type: ignore[no-untyped-def]
    headers = samples.google_push_headers(
        channel_id=channel["id"] if isinstance(channel, dict) else channel,  # type: ignore[index]
        token=CHANNEL_TOKEN,
        state=state,
        message_number=number,
        calendar_id=CAL,
        resource_id=channel["resource_id"] if isinstance(channel, dict) else "res-x",  # type: ignore[index]
    )
    response = await client.post("/webhooks/google-calendar", content=b"", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def list_calls(requests: list[dict[str, object]]) -> list[dict[str, str]]:
    return [r["params"] for r in requests if r["op"] == "events.list"]  # type: ignore[misc]


async def test_sync_exists_and_410(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    await sandboxes.ui_event(CAL, timed_event("existing1", "Dentist"))  # before watching: the baseline
    async with gcal(sandboxes) as client_api:
        channel = await open_channel(client_api, redis, names, CAL, address=ADDRESS, token=CHANNEL_TOKEN)
    baseline = (await redis.get(token_key(names, CAL))).decode()
    assert len(list_calls(await sandboxes.requests())) == 1  # the baseline full sync, nothing published
    assert await redis.exists(CHANGED) == 0
    consumer = sync_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with running_worker(consumer, redis, names, limiter=unlimited(redis, names)):
            # 1. sync handshake → no sync call
            assert await notify(client, channel, "sync", 1) == "ignored"
            await drained(redis, names)
            assert len(list_calls(await sandboxes.requests())) == 1

            # 2. a change made in the Calendar UI, then "exists" → one incremental sync with the stored token
            await sandboxes.ui_event(CAL, timed_event("dentist2", "Dentist, moved"))
            assert await notify(client, channel, "exists", 2) == "accepted"
            await drained(redis, names)
            calls = list_calls(await sandboxes.requests())
            assert len(calls) == 2
            assert calls[1]["syncToken"] == baseline and "pageToken" not in calls[1]
            ((_, fields),) = await redis.xrange(CHANGED)
            changed = Event.from_fields(fields)
            assert (changed.type, changed.subject, changed.source) == (
                "calendar.event_changed",
                "dentist2",
                "google-calendar",
            )
            assert changed.data["start"] == "2026-10-25T08:00:00Z" and changed.data["resync"] is False
            token_after = (await redis.get(token_key(names, CAL))).decode()
            assert token_after != baseline

            # Google retries the same notification: deduplicated at ingest, no second sync.
            assert await notify(client, channel, "exists", 2) == "duplicate"

            # 3. the token is invalidated → 410 → exactly one full resync (no syncToken), every event republished
            await sandboxes.invalidate_sync_tokens()
            await sandboxes.ui_delete(CAL, "existing1")
            assert await notify(client, channel, "not_exists", 3) == "accepted"
            await drained(redis, names)
            calls = list_calls(await sandboxes.requests())
            assert len(calls) == 4
            assert calls[2]["syncToken"] == token_after
            assert "syncToken" not in calls[3]
    statuses = [r["status"] for r in await sandboxes.requests("events.list")]
    assert statuses == [200, 200, 410, 200]
    resynced = [Event.from_fields(f) for _, f in await redis.xrange(CHANGED)][1:]
    # The full resync lists deleted events too (the deletion made while the token was invalid is not lost);
    # "dentist2" was already published in this version (same "updated"), so only the deletion is new.
    assert [(e.subject, e.data["status"], e.data["resync"]) for e in resynced] == [("existing1", "cancelled", True)]
    assert calls[3]["showDeleted"] == "true"
    assert (await redis.get(token_key(names, CAL))) is not None


async def test_incremental_sync_follows_pages_and_reports_deletions(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    from bus.publisher import Publisher

    async with gcal(sandboxes) as api:
        await run_sync(api, redis, names, CAL, publisher=None)
        for n in range(5):
            await sandboxes.ui_event(CAL, timed_event(f"ev{n}", f"Event {n}"))
        await sandboxes.ui_delete(CAL, "ev0")
        original = api.list_events

        async def small_pages(calendar_id, **params):  # type: ignore[no-untyped-def]
            return await original(calendar_id, **(params | {"max_results": 2}))

        api.list_events = small_pages  # type: ignore[method-assign]
        result = await run_sync(api, redis, names, CAL, publisher=Publisher(redis, names))
        again = await run_sync(api, redis, names, CAL, publisher=Publisher(redis, names))
    assert result == SyncResult(full=False, expired=False, changed=5, published=5, pages=3)
    assert again == SyncResult(full=False, expired=False, changed=0, published=0, pages=1)
    events = {Event.from_fields(f).subject: Event.from_fields(f) for _, f in await redis.xrange(CHANGED)}
    assert set(events) == {"ev0", "ev1", "ev2", "ev3", "ev4"}
    assert events["ev0"].data["status"] == "cancelled"
    pages = [p for p in list_calls(await sandboxes.requests())][1:]
    assert [("pageToken" in p, "syncToken" in p) for p in pages] == [
        (False, True),
        (True, True),
        (True, True),
        (False, True),
    ]


async def test_unknown_channel_makes_no_calendar_call(redis, names) -> None:  # type: ignore[no-untyped-def]
    """A channel id hookbus minted but that is not (or no longer) in the registry: acked, no events.list."""
    from ingest.sources.google_calendar import mint_channel_id

    sandboxes = Sandboxes()
    consumer = sync_consumer(sandboxes)
    async with ingest_client(booking_ingest(redis, [consumer])) as client:
        async with running_worker(consumer, redis, names, limiter=unlimited(redis, names)) as worker:
            assert await notify(client, mint_channel_id(CHANNEL_TOKEN), "exists", 7) == "accepted"
            await drained(redis, names)
    assert await sandboxes.requests() == []
    assert worker.counts["acked"] == 1


async def test_channel_watch_renew_stop(redis, names) -> None:  # type: ignore[no-untyped-def]
    sandboxes = Sandboxes()
    async with gcal(sandboxes) as api:
        first = await open_channel(api, redis, names, CAL, address=ADDRESS, token=CHANNEL_TOKEN, ttl_s=3600)
        other = await open_channel(api, redis, names, "ben@example.com", address=ADDRESS, token=CHANNEL_TOKEN)
        assert await load_channel(redis, names, first["id"]) == first
        assert [c["id"] for c in await all_channels(redis, names)] == [first["id"], other["id"]]
        # One day ahead, only the one-hour channel is due.
        renewed = await renew_channels(
            api, redis, names, within_s=parse_duration("1d"), address=None, token=CHANNEL_TOKEN
        )
        assert [(old["id"], new["calendar_id"]) for old, new in renewed] == [(first["id"], CAL)]
        new = renewed[0][1]
        assert new["id"] != first["id"] and new["expiration_ms"] > time.time() * 1000 + 6 * 86400 * 1000
        assert await load_channel(redis, names, first["id"]) is None
        open_ids = {c["id"] for c in (await sandboxes.google_objects())["channels"]}
        assert open_ids == {other["id"], new["id"]}
        ops = [r["op"] for r in await sandboxes.requests()]
        assert ops[-2:] == ["events.watch", "channels.stop"]  # the successor first, then the old one stopped
        assert ops.count("events.list") == 2  # one baseline per calendar, none on renewal
        stopped = await stop_channels(api, redis, names, None)
    assert sorted(stopped) == sorted([other["id"], new["id"]])
    assert (await sandboxes.google_objects())["channels"] == [] and await all_channels(redis, names) == []


def test_durations() -> None:
    assert parse_duration("2d") == 172800 and parse_duration("36h") == 129600 and parse_duration("600") == 600
    with pytest.raises(Exception, match="duration"):
        parse_duration("soon")


def test_sync_consumer_is_its_own_group() -> None:
    assert calendar_sync.consumer.name == "calendar_sync"
    assert calendar_sync.consumer.event_types == ("calendar.sync_requested",)
