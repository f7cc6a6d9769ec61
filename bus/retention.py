"""Stream retention: trim old entries, but never one that a consumer group still needs.

An entry may be trimmed when it is older than the retention (time via MINID, and/or beyond a maximum length) **and**
every group on the stream is done with it: it is not pending in the group, and the group has read past it (entries
after a group's ``last-delivered-id`` are still to be delivered). The bound is computed from XINFO GROUPS and
XPENDING just before ``XTRIM … MINID``; entries delivered after that snapshot have larger ids, so the trim cannot
reach them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

StreamId = tuple[int, int]


def parse_id(text: str | bytes) -> StreamId:
    raw = text.decode() if isinstance(text, bytes) else text
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


@dataclass(frozen=True, slots=True)
class GroupProgress:
    """What one group still needs: ``last_delivered`` (entries after it are unread) and ``oldest_pending``."""

    last_delivered: StreamId
    oldest_pending: StreamId | None


def trim_bound(
    groups: Iterable[GroupProgress], *, now_ms: int, retention_ms: int | None, length_bound: StreamId | None = None
) -> StreamId | None:
    """The MINID to trim to (entries with smaller ids go), or None to trim nothing.

    - ``retention_ms``: keep entries younger than this (None: no time limit).
    - ``length_bound``: the id of the oldest entry a maximum length would keep (None: no length limit).
    The result is the larger of the retention limits, capped by what every group still needs.
    """
    limits = []
    if retention_ms is not None:
        limits.append((now_ms - retention_ms, 0))
    if length_bound is not None:
        limits.append(length_bound)
    if not limits:
        return None
    bound = max(limits)
    for group in groups:
        # Keep the last delivered entry itself: a group created at "0" on an empty stream has last_delivered 0-0.
        bound = min(bound, group.last_delivered)
        if group.oldest_pending is not None:
            bound = min(bound, group.oldest_pending)
    return bound if bound > (0, 0) else None


async def group_progress(redis: aioredis.Redis, stream: str) -> list[GroupProgress]:
    progress = []
    for info in await redis.xinfo_groups(stream):
        name = info["name"]
        oldest = None
        if int(info["pending"]):
            summary = await redis.xpending(stream, name)
            oldest = parse_id(summary["min"])
        progress.append(GroupProgress(parse_id(info["last-delivered-id"]), oldest))
    return progress


async def length_bound(redis: aioredis.Redis, stream: str, maxlen: int | None) -> StreamId | None:
    """The id of the oldest entry that a maximum length of ``maxlen`` keeps, or None if the stream is shorter."""
    if maxlen is None:
        return None
    if maxlen < 1:
        raise ValueError("maxlen must be at least 1")
    newest = await redis.xrevrange(stream, count=maxlen + 1)
    if len(newest) <= maxlen:
        return None
    return parse_id(newest[maxlen - 1][0])


async def trim(
    redis: aioredis.Redis, stream: str, *, now_ms: int, retention_ms: int | None, maxlen: int | None = None
) -> int:
    """Trim ``stream`` under the rule above. Returns the number of entries removed."""
    bound = trim_bound(
        await group_progress(redis, stream),
        now_ms=now_ms,
        retention_ms=retention_ms,
        length_bound=await length_bound(redis, stream, maxlen),
    )
    if bound is None:
        return 0
    # Exact, not "~": an approximate trim only drops whole radix-tree nodes (100 entries) and would keep small
    # streams forever; this runs once per housekeeping interval, so the exact trim costs little.
    return int(await redis.xtrim(stream, minid=format_id(bound), approximate=False))
