"""Operating dead-letter streams and re-delivering history, for ``hookbus dlq …`` and ``hookbus replay``.

- A dead-letter entry is replayed by moving its original envelope to the group's replay stream
  (``{prefix}:replay:{group}``), which only that group reads: other groups that already handled the event are not
  affected. The XADD there and the XDEL from the dead-letter stream are one script, so an entry is never both
  replayed and kept, nor lost. The replayed entry carries ``replay_of`` (the dead-letter entry id).
- ``replay_group`` rewinds one group's position (XGROUP SETID) on each stream it reads to just before a time or an
  entry id, so retained history is delivered to that group again (e.g. a consumer added today backfilling last
  week). It never moves a group forward, which would skip entries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from .deadletter import DeadLetter
from .naming import Names
from .retention import StreamId, format_id, parse_id

# KEYS[1] = dead-letter stream, KEYS[2] = replay stream; ARGV = dead-letter entry ids. Returns the replayed ids.
_REPLAY = """
local done = {}
for i = 1, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found == 1 then
    local fields = found[1][2]
    local event, stream
    for j = 1, #fields, 2 do
      if fields[j] == 'event' then event = fields[j + 1] end
      if fields[j] == 'stream' then stream = fields[j + 1] end
    end
    if event and event ~= '' then
      redis.call('XADD', KEYS[2], '*', 'event', event, 'replay_of', ARGV[i], 'original_stream', stream)
      redis.call('XDEL', KEYS[1], ARGV[i])
      done[#done + 1] = ARGV[i]
    end
  end
end
return done
"""

_MAX_SEQ = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Entry:
    """A dead-letter entry: its id, the group whose dead-letter stream holds it, and the record."""

    dlq_id: str
    group: str
    record: DeadLetter


async def dlq_groups(redis: aioredis.Redis, names: Names) -> list[str]:
    groups = [names.group_of_dlq(k.decode()) async for k in redis.scan_iter(match=names.dlq_pattern(), _type="stream")]
    return sorted(groups)


async def known_groups(redis: aioredis.Redis, names: Names) -> set[str]:
    """Every consumer group on a hookbus stream, and every group with a dead-letter stream."""
    groups = set(await dlq_groups(redis, names))
    async for key in redis.scan_iter(match=names.stream_pattern(), _type="stream"):
        groups.update(info["name"].decode() for info in await redis.xinfo_groups(key))
    return groups


async def list_entries(redis: aioredis.Redis, names: Names, group: str, *, count: int = 100) -> list[Entry]:
    """The oldest ``count`` dead-letter entries of ``group``."""
    rows = await redis.xrange(names.dlq(group), count=count)
    return [Entry(row_id.decode(), group, DeadLetter.from_fields(fields)) for row_id, fields in rows]


async def find_entries(redis: aioredis.Redis, names: Names, dlq_id: str, *, group: str | None = None) -> list[Entry]:
    """The dead-letter entries with id ``dlq_id`` (in ``group``'s stream, or in every group's: ids are per stream,
    so two groups may hold the same one)."""
    found = []
    for name in [group] if group else await dlq_groups(redis, names):
        rows = await redis.xrange(names.dlq(name), min=dlq_id, max=dlq_id)
        found += [Entry(row_id.decode(), name, DeadLetter.from_fields(fields)) for row_id, fields in rows]
    return found


async def replay(redis: aioredis.Redis, names: Names, group: str, dlq_ids: Sequence[str] | None) -> list[str]:
    """Re-deliver dead-letter entries to ``group`` only; ``None`` replays all of them. Returns the ids replayed.

    Records without an event (``deleted_before_processing``) cannot be replayed and stay where they are.
    """
    dlq = names.dlq(group)
    if dlq_ids is None:
        dlq_ids = [row_id.decode() for row_id, _ in await redis.xrange(dlq)]
    replayed: list[str] = []
    for start in range(0, len(dlq_ids), 500):
        chunk = list(dlq_ids[start : start + 500])
        result = await redis.eval(_REPLAY, 2, dlq, names.replay(group), *chunk)
        replayed += [r.decode() for r in result]
    return replayed


async def purge(redis: aioredis.Redis, names: Names, group: str, *, older_than_s: float | None) -> int:
    """Delete dead-letter entries of ``group`` (all, or those older than ``older_than_s`` seconds). Returns how many."""
    dlq = names.dlq(group)
    if older_than_s is None:
        count = int(await redis.xlen(dlq))
        await redis.delete(dlq)
        return count
    cutoff_ms = int((time.time() - older_than_s) * 1000)
    return int(await redis.xtrim(dlq, minid=f"{cutoff_ms}-0", approximate=False))


def position_before(start: str) -> StreamId:
    """The group position from which the next read returns ``start`` (an entry id ``ms-seq`` or ``ms``) onward."""
    ms, seq = parse_id(start)
    if seq > 0:
        return ms, seq - 1
    if ms == 0:
        return 0, 0
    return ms - 1, _MAX_SEQ


async def replay_group(redis: aioredis.Redis, names: Names, group: str, start: str) -> dict[str, str]:
    """Rewind ``group`` to just before ``start`` (entry id, or Unix ms) on every hookbus stream it reads.

    Returns ``{stream: new position}`` for the streams moved; streams where the group is already at or before that
    position are left alone.
    """
    target = position_before(start)
    moved = {}
    async for key in redis.scan_iter(match=names.stream_pattern(), _type="stream"):
        stream = key.decode()
        for info in await redis.xinfo_groups(stream):
            if info["name"].decode() != group:
                continue
            if parse_id(info["last-delivered-id"]) > target:
                await redis.xgroup_setid(stream, group, format_id(target))
                moved[stream] = format_id(target)
    return moved
