"""(d) FastStream's Redis Streams subscriber with a consumer group, as its documentation shows it: one message per
call (it XACKs each message in its own round trip) or ``batch=True`` (one XACK per batch). Reads 100 entries per
XREADGROUP in both modes; the handler does nothing. FastStream's own default logging (INFO) is left on.

    python -m bench.faststream_consume --url redis://… --stream S --group G [--batch]

Needs ``pip install -e '.[bench]'`` (the pinned ``faststream[redis]``). Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from typing import Any

from faststream.redis import RedisBroker, StreamSub


async def consume(url: str, stream: str, group: str, batch: bool) -> None:
    broker = RedisBroker(url)
    sub = StreamSub(
        stream,
        group=group,
        consumer=f"faststream-{socket.gethostname()}-{os.getpid()}",
        batch=batch,
        max_records=100,
        polling_interval=1000,
    )

    @broker.subscriber(stream=sub)
    async def handle(body: Any) -> None:
        return None

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with broker:
        await broker.start()
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faststream_consume")
    parser.add_argument("--url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--batch", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(consume(args.url, args.stream, args.group, args.batch))
    else:
        uvloop.run(consume(args.url, args.stream, args.group, args.batch))


if __name__ == "__main__":
    main()
