"""What ``hookbus status`` shows: every stream's length and, per consumer group, consumers, pending, lag and the
last delivered entry id (from XINFO STREAM / XINFO GROUPS; ``lag`` needs Redis 7 or Valkey)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from .naming import Names
from .workers import WorkerInfo


@dataclass(frozen=True, slots=True)
class GroupStatus:
    name: str
    consumers: int
    pending: int
    lag: int | None  # None when the server cannot tell (entries were deleted or trimmed mid-range)
    last_delivered_id: str


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream: str
    event_type: str
    length: int
    groups: tuple[GroupStatus, ...]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def streams_status(redis: aioredis.Redis, names: Names) -> list[StreamStatus]:
    """Status of every hookbus stream, sorted by name. Dead-letter streams are listed by :func:`dlq_lengths`."""
    result = []
    async for key in redis.scan_iter(match=names.stream_pattern(), _type="stream"):
        stream = _text(key)
        length = await redis.xlen(stream)
        groups = []
        for info in await redis.xinfo_groups(stream):
            g = {_text(k): v for k, v in info.items()}
            groups.append(
                GroupStatus(
                    name=_text(g["name"]),
                    consumers=int(g["consumers"]),
                    pending=int(g["pending"]),
                    lag=None if g.get("lag") is None else int(g["lag"]),
                    last_delivered_id=_text(g["last-delivered-id"]),
                )
            )
        groups.sort(key=lambda g: g.name)
        result.append(StreamStatus(stream, names.event_type_of(stream), length, tuple(groups)))
    return sorted(result, key=lambda s: s.stream)


async def dlq_lengths(redis: aioredis.Redis, names: Names) -> dict[str, int]:
    """Dead-letter stream length per group."""
    prefix = names.dlq("")
    out = {}
    async for key in redis.scan_iter(match=prefix + "*", _type="stream"):
        out[_text(key).removeprefix(prefix)] = await redis.xlen(key)
    return dict(sorted(out.items()))


def render(streams: list[StreamStatus], dlqs: dict[str, int]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"{'STREAM':<40} {'LENGTH':>8}   {'GROUP':<16} {'CONSUMERS':>9} {'PENDING':>8} {'LAG':>6}  LAST DELIVERED"]
    for s in streams:
        if not s.groups:
            lines.append(f"{s.stream:<40} {s.length:>8}   {'-':<16}")
        for i, g in enumerate(s.groups):
            head = f"{s.stream:<40} {s.length:>8}" if i == 0 else " " * 49
            lag = "?" if g.lag is None else str(g.lag)
            lines.append(f"{head}   {g.name:<16} {g.consumers:>9} {g.pending:>8} {lag:>6}  {g.last_delivered_id}")
    if not streams:
        lines.append("(no streams yet)")
    lines.append("")
    lines.append("DEAD-LETTER STREAMS: " + (", ".join(f"{g}={n}" for g, n in dlqs.items()) or "none"))
    return "\n".join(lines)


def render_workers(found: list[WorkerInfo], *, now: float | None = None) -> str:
    """Running workers with their metrics endpoints and heartbeat age."""
    now = time.time() if now is None else now
    if not found:
        return "WORKERS: none registered"
    lines = [f"{'WORKER':<32} {'GROUP':<16} {'METRICS':<24} HEARTBEAT"]
    for w in found:
        endpoint = f"http://{w.host}:{w.metrics_port}/metrics" if w.metrics_port else "-"
        state = f"{now - w.heartbeat:.0f} s ago" + ("" if w.alive(now) else " (down?)")
        lines.append(f"{w.consumer:<32} {w.group:<16} {endpoint:<24} {state}")
    return "\n".join(lines)
