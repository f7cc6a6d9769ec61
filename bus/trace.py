"""An event's story, for ``hookbus trace EVENT_ID``: received, published, each group's attempts, downstream ids,
dead-lettered or done.

Every step appends one JSON record to ``{prefix}:trace:{source}:{event id}`` (a list that expires with the dedupe
TTL): ingest's publish script adds ``published`` / ``duplicate`` in the same round trip as the XADD, and workers add
``acked`` (with the handler's notes, e.g. the downstream object id) in the same script as the batch's XACK, and
``retry`` and ``dead_lettered`` in the same pipeline as their retry record or dead-letter move. Records:
``{"at": Unix ms, "step": …, "group"?, "consumer"?, "attempt"?, "error_type"?, "reason"?, "duration_s"?, "notes"?,
"entries"?}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from .naming import Names

#: Default lifetime (seconds) of a trace: the dedupe TTL's default.
TRACE_TTL_S = 7 * 24 * 3600


def record(step: str, at_ms: int, **fields: Any) -> bytes:
    return orjson.dumps({"at": at_ms, "step": step, **{k: v for k, v in fields.items() if v is not None}})


async def read(redis: aioredis.Redis, names: Names, event_id: str, source: str | None = None) -> dict[str, list[dict]]:
    """Every trace of ``event_id`` (one per source that has such an id), oldest record first."""
    if source:
        keys = [names.trace(source, event_id)]
    else:
        keys = [k.decode() async for k in redis.scan_iter(match=names.trace_pattern(event_id), count=1000)]
    traces = {}
    head, tail = f"{names.prefix}:trace:", f":{event_id}"
    for key in sorted(keys):
        if not (key.startswith(head) and key.endswith(tail)):
            continue
        rows = await redis.lrange(key, 0, -1)
        if rows:  # the source is what lies between (an event id may itself contain ':')
            traces[key[len(head) : -len(tail)]] = [orjson.loads(r) for r in rows]
    return traces


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(entry: Mapping[str, Any]) -> str:
    """One line for a trace record."""
    step, who = entry["step"], entry.get("group", "ingest")
    if step == "published":
        text = f"published as {entry['entries']}"
    elif step == "duplicate":
        text = f"duplicate delivery dropped (first published as {entry['entries']})"
    elif step == "acked":
        notes = " ".join(f"{k}={v}" for k, v in (entry.get("notes") or {}).items())
        text = f"attempt {entry.get('attempt')} succeeded in {entry.get('duration_s')} s" + (
            f"; {notes}" if notes else ""
        )
    elif step == "retry":
        text = (
            f"attempt {entry.get('attempt')} failed: {entry.get('error_type')}: {entry.get('reason')} "
            f"(retry in {entry.get('retry_in_s')} s)"
        )
    elif step == "dead_lettered":
        text = (
            f"attempt {entry.get('attempt')} gave up: {entry.get('error_type')}: {entry.get('reason')} "
            f"→ dead-letter entry {entry.get('dlq_entry_id')}"
        )
    else:
        text = orjson.dumps(entry).decode()
    return f"{_when(int(entry['at']))}  {who:<14} {text}"
