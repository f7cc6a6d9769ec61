"""Publishing events to their streams, deduplicated atomically with the XADD.

The dedupe check, the XADDs and the dedupe record run in one Lua script, so two concurrent deliveries of the same
provider event (shared case 015) cannot both publish, and a failed XADD never leaves a dedupe key behind: the key is
written only after every XADD of the delivery succeeded (a script is not rolled back on error, so order matters).

The script takes a batch of deliveries and handles each on its own (its dedupe check, XADDs, dedupe record and trace
record), so concurrent publishes (ingest answering many webhooks at once) are coalesced: every call made while a
round trip is in flight goes out in the next single script call, and each caller awaits its own result (see
:class:`bus.wire.ScriptCalls`). A script runs without interleaving, so each delivery stays atomic; none waits for a
timer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .envelope import FIELD, Event
from .naming import Names
from .wire import Arg, ScriptCalls

# A batch of deliveries. ARGV[1] = dedupe and trace TTL in seconds, ARGV[2] = MAXLEN (0 = no trim); then per
# delivery ARGV holds n (its number of events) and its n envelopes, and KEYS holds its dedupe key ("" when not
# deduplicating), its trace key ("" for none) and one stream per event. Returns one reply per delivery: {0, previous
# ids} for a duplicate, {1, new ids} after publishing, {-1, error} if an XADD failed (earlier XADDs of that delivery
# stay, its dedupe key is not written). The trace record (see bus/trace.py) is appended in the same script, so it
# costs no extra round trip.
_PUBLISH = """
local ttl, maxlen = ARGV[1], ARGV[2]
local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end
local results = {}
local k, a = 1, 3
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local dedupe, trace = KEYS[k], KEYS[k + 1]
  local seen = dedupe ~= '' and redis.call('GET', dedupe)
  if seen then
    if trace ~= '' then
      -- pcall: a trace record that cannot be written (the server is out of memory) must not fail the answer, nor
      -- the other deliveries of this call.
      redis.pcall('RPUSH', trace, '{"at":' .. now_ms() .. ',"step":"duplicate","entries":"' .. seen .. '"}')
    end
    results[#results + 1] = {0, seen}
  else
    local ids, failed = {}, nil
    for i = 1, n do
      local id
      if maxlen ~= '0' then
        id = redis.pcall('XADD', KEYS[k + 1 + i], 'MAXLEN', '~', maxlen, '*', 'event', ARGV[a + i])
      else
        id = redis.pcall('XADD', KEYS[k + 1 + i], '*', 'event', ARGV[a + i])
      end
      if type(id) == 'table' and id.err then
        failed = id.err
        break
      end
      ids[i] = id
    end
    if failed then
      results[#results + 1] = {-1, failed}
    else
      local joined = table.concat(ids, ',')
      if dedupe ~= '' then redis.call('SET', dedupe, joined, 'EX', ttl) end
      if trace ~= '' then
        -- An id XADD made is "<Unix ms>-<sequence>": the time of publication, without another call for TIME.
        local at = string.sub(ids[1], 1, string.find(ids[1], '-', 1, true) - 1)
        redis.call('RPUSH', trace, '{"at":' .. at .. ',"step":"published","entries":"' .. joined .. '"}')
        redis.call('EXPIRE', trace, ttl)
      end
      results[#results + 1] = {1, joined}
    end
  end
  k = k + 2 + n
  a = a + 1 + n
end
return results
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
        self._calls = ScriptCalls(redis, _PUBLISH, shared=[dedupe_ttl_s, maxlen or 0])

    async def publish(
        self,
        events: Sequence[Event],
        *,
        dedupe_id: tuple[str, str] | None = None,
        envelopes: Sequence[bytes] | None = None,
    ) -> PublishResult:
        """Publish ``events`` (each to its type's stream) in one atomic step.

        ``dedupe_id`` is ``(source, provider event id)``: when given and already seen within the TTL, nothing is
        written and the result says ``duplicate``. ``envelopes``: the events' envelopes already encoded, one per
        event in order (ingest encodes them with its ``receivedtime`` added); default ``Event.to_json()`` of each.
        """
        keys, args = self._script_args(events, dedupe_id, envelopes)
        return _result(await self._calls(keys, args))

    async def publish_many(
        self, deliveries: Sequence[tuple[Sequence[Event], tuple[str, str] | None]]
    ) -> list[PublishResult]:
        """Publish several deliveries, each ``(events, dedupe_id)`` as :meth:`publish` does, in one round trip.

        Each delivery is atomic on its own. Raises the first error, if any, after all of them ran; a delivery that
        succeeded before it stays published.
        """
        replies = await self._calls.many([self._script_args(events, dedupe_id) for events, dedupe_id in deliveries])
        results = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            results.append(_result(reply))
        return results

    def _script_args(
        self, events: Sequence[Event], dedupe_id: tuple[str, str] | None, envelopes: Sequence[bytes] | None = None
    ) -> tuple[list[Arg], list[Arg]]:
        if not events:
            raise ValueError("nothing to publish")
        if envelopes is not None and len(envelopes) != len(events):
            raise ValueError("one envelope per event")
        names = self._names
        dedupe_key = names.dedupe(*dedupe_id) if dedupe_id else ""
        trace_key = names.trace(events[0].source, events[0].id) if self._trace else ""
        keys: list[Arg] = [dedupe_key, trace_key, *(names.stream(e.type) for e in events)]
        args: list[Arg] = [len(events), *(envelopes if envelopes is not None else [e.to_json() for e in events])]
        return keys, args


def _result(reply: list[bytes | int]) -> PublishResult:
    status, joined = reply
    if status == -1:
        raise ResponseError(joined.decode() if isinstance(joined, bytes) else str(joined))
    ids = tuple(joined.decode().split(",")) if joined else ()  # type: ignore[union-attr]
    return PublishResult(duplicate=status == 0, entry_ids=ids)
