"""Every Redis key hookbus uses, in one place.

All keys start with a configurable prefix (``hookbus`` by default):

- ``{prefix}:stream:{event type}`` — one stream per canonical event type, e.g. ``hookbus:stream:payment.succeeded``;
  each consumer reads it through its own consumer group, named after the consumer (``accounting``).
- ``{prefix}:dlq:{group}`` — the consumer group's dead-letter stream.
- ``{prefix}:replay:{group}`` — entries re-delivered to that group only (a replayed dead letter); read by the same
  group alongside its event streams.
- ``{prefix}:retry:{group}`` — hash of entry id → earliest next attempt (Unix ms) for entries that failed.
- ``{prefix}:dedupe:{source}:{event id}`` — provider event ids already published (expire after the dedupe TTL).
- ``{prefix}:state:{group}:{name}`` — a consumer's own keys (idempotency records, per-object bookkeeping).
- ``{prefix}:step:{group}:{idempotency key}:{step}`` — the recorded result of a completed handler step (TTL).
- ``{prefix}:trace:{source}:{event id}`` — the event's story, a list of JSON records (TTL; see bus/trace.py).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

# A fixed namespace so idempotency keys are the same on every host and after every restart.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("4f2d6c1e-8a57-4b1e-9f0e-6b1f9d3c2a10")
_NAMESPACE_BYTES = _IDEMPOTENCY_NAMESPACE.bytes


@dataclass(frozen=True, slots=True)
class Names:
    """Builds key names under one prefix."""

    prefix: str = "hookbus"

    def stream(self, event_type: str) -> str:
        return f"{self.prefix}:stream:{event_type}"

    def stream_pattern(self) -> str:
        return f"{self.prefix}:stream:*"

    def event_type_of(self, stream: str) -> str:
        return stream.removeprefix(f"{self.prefix}:stream:")

    def dlq(self, group: str) -> str:
        return f"{self.prefix}:dlq:{group}"

    def replay(self, group: str) -> str:
        return f"{self.prefix}:replay:{group}"

    def dlq_pattern(self) -> str:
        return f"{self.prefix}:dlq:*"

    def group_of_dlq(self, dlq: str) -> str:
        return dlq.removeprefix(f"{self.prefix}:dlq:")

    def step(self, group: str, key: str, step: str) -> str:
        return f"{self.prefix}:step:{group}:{key}:{step}"

    def trace(self, source: str, event_id: str) -> str:
        return f"{self.prefix}:trace:{source}:{event_id}"

    def trace_pattern(self, event_id: str) -> str:
        """A SCAN pattern for ``event_id``'s traces of any source (glob characters in the id are escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in event_id)
        return f"{self.prefix}:trace:*:{escaped}"

    def retry(self, group: str) -> str:
        return f"{self.prefix}:retry:{group}"

    def dedupe(self, source: str, event_id: str) -> str:
        return f"{self.prefix}:dedupe:{source}:{event_id}"

    def state(self, group: str, name: str) -> str:
        return f"{self.prefix}:state:{group}:{name}"


def idempotency_key(group: str, source: str, event_id: str, *parts: str) -> str:
    """A stable key for one group's handling of one event (a UUID string, 36 characters).

    The same (group, source, event id, parts) always gives the same key, in any process, so a retried or reclaimed
    delivery sends the same key downstream (QuickBooks ``requestid``, an ``Idempotency-Key`` header). ``parts``
    narrow it further, e.g. to one step of a handler or to a business object shared by several events.
    """
    # uuid.uuid5(_IDEMPOTENCY_NAMESPACE, name), spelled out: it runs once per delivery, and the UUID object costs
    # more than the hash. Version 5 in the high nibble of byte 6, the RFC 4122 variant in the top bits of byte 8.
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join((group, source, event_id, *parts)).encode()).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
