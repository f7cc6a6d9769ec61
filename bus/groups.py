"""Creating consumer groups, idempotently.

A deployment's groups must exist before the first event is published, or a consumer created later at ``$`` would
never see it. Ingest therefore creates the groups of every installed consumer at start-up (and before its first
publish if Redis was down then), workers create their own on start, and ``hookbus groups`` does it as a release step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .consumer import Consumer
from .naming import Names

log = logging.getLogger("hookbus.groups")


async def ensure_group(redis: aioredis.Redis, stream: str, group: str, *, start_id: str) -> bool:
    """Create ``group`` on ``stream`` (and the stream itself) unless it exists. Returns True if it was created.

    ``start_id`` is ``"$"`` (only new entries) or ``"0"`` (every retained entry). BUSYGROUP means the group is
    already there, which is success (shared case 026).
    """
    try:
        await redis.xgroup_create(stream, group, id=start_id, mkstream=True)
    except ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    log.info("created consumer group", extra={"stream": stream, "group": group, "start_id": start_id})
    return True


async def ensure_groups(
    redis: aioredis.Redis, names: Names, consumers: Iterable[Consumer], *, start_id: str | None = None
) -> int:
    """Create every group the given consumers read through, including each group's replay stream. Returns how many
    were created. ``start_id`` overrides the consumer's ``start_from``: after NOGROUP a group is recreated at ``"0"``
    so the entries XADDed since the stream vanished are not skipped (shared case 026)."""
    created = 0
    for consumer in consumers:
        first = start_id or ("0" if consumer.start_from == "oldest" else "$")
        for event_type in consumer.event_types:
            created += await ensure_group(redis, names.stream(event_type), consumer.name, start_id=first)
        created += await ensure_group(redis, names.replay(consumer.name), consumer.name, start_id="0")
    return created


def is_nogroup(exc: BaseException) -> bool:
    """True for the error Redis returns when a stream or its group vanished (e.g. after FLUSHALL)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")
