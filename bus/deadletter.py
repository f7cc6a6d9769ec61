"""Moving an entry to its group's dead-letter stream, atomically with the XACK.

A dead-letter entry (stream ``{prefix}:dlq:{group}``) has these fields, all strings:

- ``event``: the original envelope bytes, unchanged (replay re-publishes exactly these).
- ``stream`` and ``entry_id``: where the entry was; ``group`` and ``consumer``: who gave up on it.
- ``error_type`` and ``reason``: the last error's class name and message (e.g. ``PermanentError``,
  ``unknown_currency_exponent: XYZ``).
- ``attempts``: deliveries made; ``first_failure_ms`` and ``last_failure_ms``: Unix time in milliseconds.

Fields follow Watermill's poison queue (reason, topic, handler, subscriber), named in Redis Streams' terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

# KEYS[1] = stream, KEYS[2] = dead-letter stream, KEYS[3] = retry hash.
# ARGV[1] = group, ARGV[2] = entry id, ARGV[3..] = field/value pairs of the dead-letter entry.
# The entry must still be pending in the group: if another consumer acked or dead-lettered it meanwhile, nothing is
# written. XADD comes before XACK so a failing XADD leaves the entry pending (a script is not rolled back).
_MOVE = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then return false end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return id
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter record (see the module docstring for the field meanings)."""

    event: bytes
    stream: str
    entry_id: str
    group: str
    consumer: str
    error_type: str
    reason: str
    attempts: int
    first_failure_ms: int
    last_failure_ms: int

    def to_fields(self) -> dict[str, str | bytes]:
        return {
            "event": self.event,
            "stream": self.stream,
            "entry_id": self.entry_id,
            "group": self.group,
            "consumer": self.consumer,
            "error_type": self.error_type,
            "reason": self.reason,
            "attempts": str(self.attempts),
            "first_failure_ms": str(self.first_failure_ms),
            "last_failure_ms": str(self.last_failure_ms),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> DeadLetter:
        text = {k.decode(): v for k, v in fields.items()}
        return cls(
            event=text["event"],
            stream=text["stream"].decode(),
            entry_id=text["entry_id"].decode(),
            group=text["group"].decode(),
            consumer=text["consumer"].decode(),
            error_type=text["error_type"].decode(),
            reason=text["reason"].decode(),
            attempts=int(text["attempts"]),
            first_failure_ms=int(text["first_failure_ms"]),
            last_failure_ms=int(text["last_failure_ms"]),
        )


class DeadLetterMover:
    """Runs the atomic move. ``move`` returns the dead-letter entry id, or None if the entry was no longer pending."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_MOVE)

    async def move(self, record: DeadLetter, *, dlq: str, retry_hash: str) -> str | None:
        args: list[str | bytes] = [record.group, record.entry_id]
        for name, value in record.to_fields().items():
            args += [name, value]
        result = await self._script(keys=[record.stream, dlq, retry_hash], args=args)
        return result.decode() if result else None
