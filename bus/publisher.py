"""Publishing events to their streams, deduplicated atomically with the XADD.

The dedupe check, the XADDs and the dedupe record run in one Lua script, so two concurrent deliveries of the same
provider event (shared case 015) cannot both publish, and a failed XADD never leaves a dedupe key behind: the key is
written only after every XADD of the script succeeded (a script is not rolled back on error, so order matters).

Concurrent publishes (ingest answering many webhooks at once) are coalesced: the scripts of every call made while a
round trip is in flight go out in the next single write, one EVALSHA each, and each caller awaits its own result
(see :class:`bus.wire.ScriptCalls`). Every call stays atomic on its own; none waits for a timer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from .envelope import FIELD, Event
from .naming import Names
from .wire import Arg, ScriptCalls

# KEYS[1] = dedupe key ("" when not deduplicating), KEYS[2] = trace key ("" for none), KEYS[3..] = one stream per
# event. ARGV[1] = dedupe and trace TTL in seconds, ARGV[2] = MAXLEN (0 = no trim), ARGV[3..] = one envelope per
# stream. Returns {0, previous ids} for a duplicate, {1, new ids} after publishing. The trace record (see
# bus/trace.py) is appended in the same script, so it costs no extra round trip.
_PUBLISH = """
local dedupe, trace = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
if dedupe ~= '' then
  local seen = redis.call('GET', dedupe)
  if seen then
    if trace ~= '' then
      redis.call('RPUSH', trace, '{"at":' .. now .. ',"step":"duplicate","entries":"' .. seen .. '"}')
    end
    return {0, seen}
  end
end
local ids = {}
for i = 3, #KEYS do
  if ARGV[2] ~= '0' then
    ids[#ids + 1] = redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i])
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[i], '*', 'event', ARGV[i])
  end
end
local joined = table.concat(ids, ',')
if dedupe ~= '' then redis.call('SET', dedupe, joined, 'EX', ARGV[1]) end
if trace ~= '' then
  redis.call('RPUSH', trace, '{"at":' .. now .. ',"step":"published","entries":"' .. joined .. '"}')
  redis.call('EXPIRE', trace, ARGV[1])
end
return {1, joined}
"""

assert FIELD == b"event"  # the script writes the field by name


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Outcome of :meth:`Publisher.publish`: ``duplicate`` is true when nothing was written; ``entry_ids`` are the
    stream entry ids (of the first publication, for a duplicate)."""

    duplicate: bool
    entry_ids: tuple[str, ...]


class Publisher:
    """Writes events to ``{prefix}:stream:{type}``.

    ``dedupe_ttl_s`` is in seconds (also the lifetime of the event's trace, see :mod:`bus.trace`); ``maxlen``
    (approximate, ``MAXLEN ~``) bounds each stream, ``None`` leaves retention to the trimming housekeeping.
    Raises redis-py's ConnectionError/TimeoutError when Redis is down; in that case nothing was written and the
    dedupe key was not consumed.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        names: Names,
        *,
        dedupe_ttl_s: int = 7 * 24 * 3600,
        maxlen: int | None = None,
        trace: bool = True,
    ) -> None:
        self._redis = redis
        self._trace = trace
        self._names = names
        self._dedupe_ttl_s = dedupe_ttl_s
        self._maxlen = maxlen
        self._calls = ScriptCalls(redis, _PUBLISH)

    async def publish(self, events: Sequence[Event], *, dedupe_id: tuple[str, str] | None = None) -> PublishResult:
        """Publish ``events`` (each to its type's stream) in one atomic step.

        ``dedupe_id`` is ``(source, provider event id)``: when given and already seen within the TTL, nothing is
        written and the result says ``duplicate``.
        """
        keys, args = self._script_args(events, dedupe_id)
        return _result(await self._calls(keys, args))

    async def publish_many(
        self, deliveries: Sequence[tuple[Sequence[Event], tuple[str, str] | None]]
    ) -> list[PublishResult]:
        """Publish several deliveries, each ``(events, dedupe_id)`` as :meth:`publish` does, in one round trip.

        Each delivery is atomic on its own (one script each). Raises the first error reply, if any, after all of
        them ran; a delivery that succeeded before it stays published.
        """
        replies = await self._calls.many([self._script_args(events, dedupe_id) for events, dedupe_id in deliveries])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [_result(reply) for reply in replies]

    def _script_args(self, events: Sequence[Event], dedupe_id: tuple[str, str] | None) -> tuple[list[Arg], list[Arg]]:
        if not events:
            raise ValueError("nothing to publish")
        names = self._names
        dedupe_key = names.dedupe(*dedupe_id) if dedupe_id else ""
        trace_key = names.trace(events[0].source, events[0].id) if self._trace else ""
        keys: list[Arg] = [dedupe_key, trace_key, *(names.stream(e.type) for e in events)]
        args: list[Arg] = [self._dedupe_ttl_s, self._maxlen or 0, *(e.to_json() for e in events)]
        return keys, args


def _result(reply: list[bytes | int]) -> PublishResult:
    status, joined = reply
    ids = tuple(joined.decode().split(",")) if joined else ()  # type: ignore[union-attr]
    return PublishResult(duplicate=status == 0, entry_ids=ids)
