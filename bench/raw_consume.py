"""(c) The raw consume loop a user could write with redis-py alone: ``XREADGROUP COUNT 100 BLOCK`` and one XACK per
batch, nothing else (no envelope decoding, no retries, no metrics). The limit of Python + Redis for consuming.

    python -m bench.raw_consume --url redis://… --stream S --group G [--out FILE]

With ``--out`` it also decodes each entry's event id and records when it was processed (Unix seconds), written as
JSON ``{event id: time}`` at exit, for the latency benchmark. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis


async def consume(url: str, stream: str, group: str, out: str | None) -> None:
    redis = aioredis.Redis.from_url(url)
    name = f"raw-{socket.gethostname()}-{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    finished: dict[str, float] = {}
    while not stop.is_set():
        read = asyncio.ensure_future(redis.xreadgroup(group, name, {stream: ">"}, count=100, block=1000))
        await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not read.done():
            read.cancel()
            break
        for key, entries in read.result() or ():
            if out is not None:
                now = time.time()
                for _, fields in entries:
                    finished[orjson.loads(fields[b"event"])["id"]] = now
            await redis.xack(key, group, *(entry_id for entry_id, _ in entries))
    if out is not None:
        _write(out, finished)
    await redis.aclose()


def _write(out: str, finished: dict[str, float]) -> None:
    Path(out).write_bytes(orjson.dumps(finished))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_consume")
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(consume(args.url, args.stream, args.group, args.out))
    else:
        uvloop.run(consume(args.url, args.stream, args.group, args.out))


if __name__ == "__main__":
    main()
