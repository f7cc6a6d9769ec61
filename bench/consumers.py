"""The hookbus consumers the benchmarks run (``python -m bus worker bench.consumers:noop``).

- ``noop``: a handler that does nothing, so the worker's own cost is what is measured. Its group is
  ``$BENCH_GROUP`` (default ``bench``), so runs can read the same pre-filled stream through fresh groups.
- ``timed``: records when each event's handler finished (Unix seconds) and writes ``{event id: time}`` as JSON to
  ``$BENCH_OUT`` when the worker stops, for the latency benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from bus import Consumer, Context, Event

EVENT_TYPE = "payment.succeeded"

noop = Consumer(os.environ.get("BENCH_GROUP", "bench"))


@noop.handler(EVENT_TYPE)
async def nothing(event: Event, ctx: Context) -> None:
    return None


_finished: dict[str, float] = {}


def _write_finished() -> None:
    if out := os.environ.get("BENCH_OUT"):
        Path(out).write_bytes(orjson.dumps(_finished))


@contextlib.asynccontextmanager
async def _record() -> AsyncIterator[Mapping[str, Any]]:
    try:
        yield {}
    finally:
        _write_finished()


timed = Consumer(os.environ.get("BENCH_GROUP", "bench"), lifespan=_record)


@timed.handler(EVENT_TYPE)
async def finished(event: Event, ctx: Context) -> None:
    _finished[event.id] = time.time()
