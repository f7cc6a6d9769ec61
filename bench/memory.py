"""Benchmark 5: Redis memory per retained event (INFO memory ``used_memory``), dedupe keys and traces included.

``--events`` (20,000) events whose ``data`` is 1 KB of JSON are published the way ingest publishes a webhook
(``Publisher.publish`` with a dedupe id: stream entry + dedupe key + trace record, in one script), then a hookbus
worker with a no-op handler consumes and acks all of them (its trace record is appended, its pending entries list
empties). Reported: bytes of ``used_memory`` per event after publishing and after the ack, and what each key type
holds (``MEMORY USAGE`` of the stream, and of a sample of dedupe and trace keys).

    python -m bench.memory [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Sequence
from typing import Any

import orjson

from bus import workers
from bus.connection import connect
from bus.envelope import Event
from bus.naming import Names
from bus.publisher import Publisher
from bus.worker import Worker

from . import loadgen, webhooks
from .common import Valkey, emit, table, verdict
from .consumers import noop

NAMES = Names()
PAYLOAD_BYTES = 1024


def _events(count: int) -> list[Event]:
    tag = webhooks.nonce()
    filler = "x" * (PAYLOAD_BYTES - len(orjson.dumps({"amount": 1999, "currency": "USD", "note": ""})))
    data = {"amount": 1999, "currency": "USD", "note": filler}
    assert len(orjson.dumps(data)) == PAYLOAD_BYTES
    return [
        Event(
            id="evt_" + webhooks.event_id_token(tag, n),
            source="stripe",
            type="payment.succeeded",
            time="2026-01-01T00:00:00.000Z",
            data=data,
            subject=f"pi_{n:024d}",
            extensions={"receivedtime": "2026-01-01T00:00:00.000Z"},
        )
        for n in range(count)
    ]


async def _run(valkey: Valkey, count: int) -> dict[str, Any]:
    client = connect(valkey.url, socket_timeout_s=10)
    try:
        worker = Worker(noop, client, NAMES, block_ms=100)
        await worker._ensure_groups()  # the group exists before publishing, as ingest creates it at start-up
        events = _events(count)
        base = valkey.client.info("memory")["used_memory"]
        publisher = Publisher(client, NAMES)
        for start in range(0, count, 200):
            await publisher.publish_many([([e], ("stripe", e.id)) for e in events[start : start + 200]])
        published = valkey.client.info("memory")["used_memory"] - base
        running = asyncio.create_task(worker.run())
        stream = NAMES.stream("payment.succeeded")
        while True:
            group = next(g for g in valkey.client.xinfo_groups(stream) if g["name"].decode() == noop.name)
            if group["entries-read"] == count and group["pending"] == 0:
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await running
        await client.hdel(workers.key(NAMES.prefix), worker.name)
        acked = valkey.client.info("memory")["used_memory"] - base
        sample = events[:: max(1, count // 200)]
        dedupe = statistics.mean(valkey.client.memory_usage(NAMES.dedupe("stripe", e.id)) or 0 for e in sample)
        traced = statistics.mean(valkey.client.memory_usage(NAMES.trace("stripe", e.id)) or 0 for e in sample)
        return {
            "events": count,
            "envelope_bytes": len(events[0].to_json()),
            "payload_bytes": PAYLOAD_BYTES,
            "bytes_per_event_published": round(published / count),
            "bytes_per_event_acked": round(acked / count),
            "stream_bytes_per_event": round((valkey.client.memory_usage(stream, samples=0) or 0) / count),
            "dedupe_key_bytes": round(dedupe),
            "trace_key_bytes": round(traced),
        }
    finally:
        await client.aclose()


def measure(*, events: int = 20_000) -> dict[str, Any]:
    with Valkey() as valkey:
        return loadgen._uvloop_run(_run(valkey, events))


def report(result: dict[str, Any]) -> str:
    rows = [
        ["used_memory per event, after publishing", result["bytes_per_event_published"]],
        ["used_memory per event, after the worker acked it", result["bytes_per_event_acked"]],
        ["  of which the stream entry (MEMORY USAGE / events)", result["stream_bytes_per_event"]],
        ["  a dedupe key (MEMORY USAGE)", result["dedupe_key_bytes"]],
        ["  a trace (published + acked records)", result["trace_key_bytes"]],
    ]
    per_event = result["bytes_per_event_acked"]
    return "\n".join(
        [
            f"Redis memory, {result['events']:,} events, {result['payload_bytes']} B payload "
            f"({result['envelope_bytes']} B envelope)",
            table(["what", "bytes"], rows),
            f"per retained event: {per_event} B (target ≤ 2048: {verdict(per_event, 2048, at_most=True)})",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    result = measure(events=args.events)
    print(report(result))
    emit("memory", result)


if __name__ == "__main__":
    main()
