"""The registry of running workers: ``{prefix}:workers``, a hash of consumer name → JSON.

Each worker writes ``{"group", "host", "pid", "metrics_port", "started", "heartbeat"}`` when it starts and on every
reclaim round (its heartbeat), and removes itself on a clean exit. ``hookbus status`` lists them with their metrics
endpoints; the exporter counts live workers per group for the "worker down" alert.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

#: A worker whose heartbeat is older than this (seconds) counts as down.
STALE_AFTER_S = 30.0
#: Entries older than this (seconds) are removed from the registry by readers.
FORGET_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    consumer: str
    group: str
    host: str
    pid: int
    metrics_port: int | None
    started: float
    heartbeat: float

    def alive(self, now: float) -> bool:
        return now - self.heartbeat < STALE_AFTER_S


def key(prefix: str) -> str:
    return f"{prefix}:workers"


def record(consumer: str, group: str, metrics_port: int | None, started: float, now: float) -> bytes:
    return orjson.dumps(
        {
            "group": group,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "metrics_port": metrics_port,
            "started": started,
            "heartbeat": now,
        }
    )


def parse(consumer: str, raw: bytes) -> WorkerInfo:
    doc = orjson.loads(raw)
    return WorkerInfo(
        consumer, doc["group"], doc["host"], doc["pid"], doc["metrics_port"], doc["started"], doc["heartbeat"]
    )


async def list_workers(redis: aioredis.Redis, prefix: str, *, now: float | None = None) -> list[WorkerInfo]:
    """Registered workers, forgetting those silent for more than an hour."""
    now = time.time() if now is None else now
    found = []
    for name, raw in (await redis.hgetall(key(prefix))).items():
        info = parse(name.decode(), raw)
        if now - info.heartbeat > FORGET_AFTER_S:
            await redis.hdel(key(prefix), name)
            continue
        found.append(info)
    return sorted(found, key=lambda w: (w.group, w.consumer))
