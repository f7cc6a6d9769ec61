"""Out-of-order delivery: apply a snapshot only if it is not older than the last one applied.

Providers deliver webhooks out of order (a subscription ``updated`` before its ``created``, shared case 016). A
handler that writes an object's state from an event keeps, per object, the time of the last event applied, and
ignores an older one. :func:`newer_or_same` does the compare-and-record atomically, so two workers handling two
snapshots of one object at once cannot both win.
"""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis

# KEYS[1] = per-object key; ARGV[1] = event time (Unix ms); ARGV[2] = TTL (s). Returns 1 if applied.
_NEWER = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) < last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def to_unix_s(rfc3339: str) -> float:
    """Unix time in seconds of an RFC 3339 time with offset (e.g. an event's ``time``). Raises ValueError."""
    moment = dt.datetime.fromisoformat(rfc3339)
    if moment.tzinfo is None:
        raise ValueError(f"{rfc3339!r} has no offset")
    return moment.timestamp()


def to_unix_ms(rfc3339: str) -> int:
    """Unix time in milliseconds of an RFC 3339 time with offset (e.g. an event's ``time``)."""
    return int(to_unix_s(rfc3339) * 1000)


async def newer_or_same(redis: aioredis.Redis, key: str, event_time: str, *, ttl_s: int = 90 * 24 * 3600) -> bool:
    """True (and remember ``event_time``) unless an event newer than ``event_time`` was already applied to the
    object ``key``. Equal times count as applicable so a redelivery of the same event is handled again."""
    return bool(await redis.eval(_NEWER, 1, key, to_unix_ms(event_time), ttl_s))
