"""Operations on a consumer group's pending entries list (PEL) and its consumers.

Kept apart from the worker loop so each can be tested alone against a real server.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

# XAUTOCLAIM with a min-idle-time no entry can reach claims nothing, but still removes (and reports, as the reply's
# third element) entries deleted from the stream while pending (Redis >= 7.0, shared case 024).
_NEVER_IDLE_MS = 10**15


@dataclass(frozen=True, slots=True)
class PendingEntry:
    entry_id: str
    consumer: str
    idle_ms: int
    delivery_count: int


async def pending_entries(redis: aioredis.Redis, stream: str, group: str, *, count: int) -> list[PendingEntry]:
    """The oldest ``count`` pending entries of ``group`` on ``stream`` (XPENDING extended form)."""
    rows = await redis.xpending_range(stream, group, min="-", max="+", count=count)
    return [
        PendingEntry(
            entry_id=row["message_id"].decode(),
            consumer=row["consumer"].decode(),
            idle_ms=int(row["time_since_delivered"]),
            delivery_count=int(row["times_delivered"]),
        )
        for row in rows
    ]


async def sweep_deleted(
    redis: aioredis.Redis, stream: str, group: str, consumer: str, *, count: int = 100, max_rounds: int = 100
) -> list[str]:
    """Remove from the PEL the entries that no longer exist in the stream; return their ids.

    Follows XAUTOCLAIM's cursor until it wraps to ``0-0`` (at most ``max_rounds`` calls). A two-element reply
    (Redis 6.2, which has no deleted list) counts as nothing deleted.
    """
    deleted: list[str] = []
    cursor: bytes | str = "0-0"
    for _ in range(max_rounds):
        reply = await redis.xautoclaim(stream, group, consumer, _NEVER_IDLE_MS, start_id=cursor, count=count)
        cursor = reply[0]
        if len(reply) > 2:
            deleted.extend(i.decode() if isinstance(i, bytes) else str(i) for i in reply[2])
        if cursor in (b"0-0", "0-0"):
            break
    return deleted


async def delete_idle_consumers(
    redis: aioredis.Redis, stream: str, group: str, *, idle_ms: int, keep: str
) -> list[str]:
    """Delete consumers of ``group`` that own no pending entries and have been idle longer than ``idle_ms``.

    A consumer with pending entries is never deleted (XGROUP DELCONSUMER would drop them from the PEL); a live
    worker blocks in XREADGROUP every few seconds, which keeps its idle time small. ``keep`` (the caller) is spared.
    """
    removed = []
    for info in await redis.xinfo_consumers(stream, group):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name != keep and int(info["pending"]) == 0 and int(info["idle"]) > idle_ms:
            await redis.xgroup_delconsumer(stream, group, name)
            removed.append(name)
    return removed
