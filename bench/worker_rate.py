"""Benchmark 2: worker throughput against (c) a raw redis-py consume loop and (d) FastStream's stream subscriber.

One stream is pre-filled with ``--events`` (200,000) envelopes, each the event ingest makes of the benchmark's
signed Stripe webhook (about 600 bytes, a distinct event id each), published as ingest publishes them (with their
dedupe keys and trace records). Every contender then reads that same stream
through a fresh consumer group created at ``0``, as its own process(es), with a handler that does nothing:

- hookbus: ``python -m bus worker bench.consumers:noop`` with its defaults (batch 100, concurrency 16, INFO logs
  to a file), acking only after the handler returned, with its trace record per event;
- (c) ``bench.raw_consume``: XREADGROUP COUNT 100 BLOCK, one XACK per batch;
- (d) ``bench.faststream_consume``: FastStream's subscriber per message and with ``batch=True``.

Throughput is read from outside, polling the group's ``entries-read`` and pending count (XINFO GROUPS): acked
entries per second from the first ack until the stream is drained or ``--seconds`` passed (start-up is not
counted). hookbus and (c) run with hiredis and with redis-py's pure-Python parser (``bench.launch --no-hiredis``).

    python -m bench.worker_rate [--events 200000] [--seconds 3] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import redis

from bus.connection import connect
from bus.envelope import Event
from bus.naming import Names
from bus.publisher import Publisher
from ingest.sources.stripe import StripeSource

from . import webhooks
from .common import (
    PYTHON,
    SECRET,
    Child,
    Series,
    Valkey,
    child_env,
    children,
    cpu_seconds,
    emit,
    package_version,
    spawn,
    table,
    verdict,
)

STREAM = Names().stream("payment.succeeded")


def envelopes(count: int) -> list[bytes]:
    """``count`` envelopes as ingest writes them for the benchmark webhook, each with its own event id."""
    tag = webhooks.nonce()
    delivery = StripeSource([SECRET]).parse(webhooks.body(webhooks.event_id_token(tag, 0)))
    event = dataclasses.replace(delivery.events[0], extensions={"receivedtime": "2026-01-01T00:00:00.000Z"})
    return [dataclasses.replace(event, id="evt_" + webhooks.event_id_token(tag, n)).to_json() for n in range(count)]


def prefill(client: redis.Redis, count: int) -> int:
    """Publish ``count`` envelopes to :data:`STREAM` as ingest does (``Publisher.publish_many``: each with its dedupe
    key and the trace record hookbus's acks append to); returns the envelope size in bytes."""
    payloads = envelopes(count)
    url = "redis://{host}:{port}/{db}".format(**client.connection_pool.connection_kwargs)
    asyncio.run(_publish(url, [Event.from_json(p) for p in payloads]))
    return len(payloads[0])


async def _publish(url: str, events: list[Event]) -> None:
    client = connect(url, socket_timeout_s=30)
    publisher = Publisher(client, Names())
    try:
        for start in range(0, len(events), 500):
            await publisher.publish_many([([e], (e.source, e.id)) for e in events[start : start + 500]])
    finally:
        await client.aclose()


def _group(client: redis.Redis, name: str) -> dict[str, Any]:
    for group in client.xinfo_groups(STREAM):
        if group["name"].decode() == name:
            return group
    return {}


def drain_rate(
    client: redis.Redis, group: str, procs: Sequence[Child], *, total: int, seconds: float
) -> tuple[float, float, float]:
    """Acked entries per second of ``group``, from its first ack until ``total`` are acked or ``seconds`` passed,
    and the consumer processes' and the Redis server's CPU time per acked entry (µs) over the same window."""

    def acked() -> int:
        info = _group(client, group)
        return int(info.get("entries-read") or 0) - int(info.get("pending") or 0)

    deadline = time.monotonic() + 60
    while (first := acked()) <= 0:
        if time.monotonic() > deadline or not all(p.alive() for p in procs):
            raise RuntimeError(f"{group}: no progress:\n" + "\n".join(p.tail() for p in procs))
        time.sleep(0.005)
    began = time.monotonic()
    cpu_before = sum(cpu_seconds(p.popen.pid) for p in procs)
    redis_before = redis_cpu_seconds(client)
    count = first
    while count < total and time.monotonic() - began < seconds:
        time.sleep(0.01)
        count = acked()
    elapsed = time.monotonic() - began
    cpu = sum(cpu_seconds(p.popen.pid) for p in procs) - cpu_before
    redis_cpu = redis_cpu_seconds(client) - redis_before
    acked_n = max(1, count - first)
    return (count - first) / elapsed, cpu / acked_n * 1e6, redis_cpu / acked_n * 1e6


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU time the Redis server has used (user + system, from INFO cpu), in seconds."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def argv_for(kind: str, url: str, group: str, *, hiredis: bool = True) -> list[str]:
    launch = [PYTHON, "-m", "bench.launch", *([] if hiredis else ["--no-hiredis"])]
    if kind == "hookbus":
        return [*launch, "bus", "worker", "bench.consumers:noop"]
    if kind == "raw":
        return [*launch, "bench.raw_consume", "--url", url, "--stream", STREAM, "--group", group]
    if kind in ("faststream", "faststream_batch"):
        batch = ["--batch"] if kind == "faststream_batch" else []
        return [PYTHON, "-m", "bench.faststream_consume", "--url", url, "--stream", STREAM, "--group", group, *batch]
    raise ValueError(kind)


_runs = 0


def run_one(
    valkey: Valkey, kind: str, *, procs: int = 1, hiredis: bool = True, total: int, seconds: float, **env: str
) -> tuple[float, float, float]:
    """One contender's throughput (events/s) through a fresh group on the pre-filled stream, and its and the Redis
    server's CPU µs/event."""
    global _runs
    _runs += 1
    group = f"{kind}_{_runs}"
    valkey.client.xgroup_create(STREAM, group, id="0")
    child_environment = child_env(valkey.url, BENCH_GROUP=group, HOOKBUS_LOG_LEVEL="WARNING", **env)
    try:
        with children() as started:
            for n in range(procs):
                argv = argv_for(kind, valkey.url, group, hiredis=hiredis)
                started.append(spawn(f"worker-{group}-{n}", argv, child_environment))
            return drain_rate(valkey.client, group, started, total=total, seconds=seconds)
    finally:
        valkey.client.xgroup_destroy(STREAM, group)


CONTENDERS: dict[str, dict[str, Any]] = {
    "hookbus": {"kind": "hookbus"},
    "raw": {"kind": "raw"},
    "hookbus_pure": {"kind": "hookbus", "hiredis": False},
    "raw_pure": {"kind": "raw", "hiredis": False},
    "faststream_batch": {"kind": "faststream_batch"},
    "faststream": {"kind": "faststream"},
    "hookbus_x2": {"kind": "hookbus", "procs": 2},
    "raw_x2": {"kind": "raw", "procs": 2},
}
LABELS = {
    "hookbus": "hookbus worker (hiredis)",
    "raw": "(c) raw XREADGROUP + XACK loop (hiredis)",
    "hookbus_pure": "hookbus worker (pure-Python parser)",
    "raw_pure": "(c) raw loop (pure-Python parser)",
    "faststream_batch": "(d) FastStream batch=True",
    "faststream": "(d) FastStream per message",
    "hookbus_x2": "hookbus, 2 worker processes",
    "raw_x2": "(c) raw loop, 2 processes",
}
RATIOS = {
    "hookbus/raw (hiredis)": ("hookbus", "raw", 0.8),
    "hookbus/raw (pure-Python parser)": ("hookbus_pure", "raw_pure", 0.8),
    "hookbus/faststream_batch": ("hookbus", "faststream_batch", 1.3),
    "hookbus/faststream": ("hookbus", "faststream", 10.0),
    "hookbus x2/raw x2": ("hookbus_x2", "raw_x2", None),
    "hiredis gain (hookbus)": ("hookbus", "hookbus_pure", None),
}


def measure(
    *, events: int = 200_000, seconds: float = 3.0, rounds: int = 1, contenders: Sequence[str] = tuple(CONTENDERS)
) -> dict[str, Any]:
    if package_version("faststream") is None:
        print("faststream is not installed (pip install -e '.[bench]'): skipping (d)")
        contenders = [c for c in contenders if not c.startswith("faststream")]
    rates = {name: Series() for name in contenders}
    cpu = {name: Series() for name in contenders}
    redis_cpu = {name: Series() for name in contenders}
    ratios: dict[str, Series] = {}
    with Valkey() as valkey:
        prefilled = time.monotonic()
        size = prefill(valkey.client, events)
        prefill_s = time.monotonic() - prefilled
        for r in range(rounds):
            this_round = {}
            order = list(contenders[r % len(contenders) :]) + list(contenders[: r % len(contenders)])
            for name in order:
                # FastStream per message is slow: a shorter window is enough for a steady rate.
                this_round[name], cpu_us, redis_us = run_one(valkey, total=events, seconds=seconds, **CONTENDERS[name])
                rates[name].add(this_round[name])
                cpu[name].add(cpu_us)
                redis_cpu[name].add(redis_us)
            for label, (num, den, _) in RATIOS.items():
                if num in this_round and den in this_round:
                    ratios.setdefault(label, Series()).add(this_round[num] / this_round[den])
    return {
        "events": events,
        "envelope_bytes": size,
        "prefill_s": round(prefill_s, 2),
        "window_s": seconds,
        "rounds": rounds,
        "events_per_s": {k: v.as_json(0) for k, v in rates.items()},
        "consumer_cpu_us_per_event": {k: v.as_json(1) for k, v in cpu.items()},
        "redis_cpu_us_per_event": {k: v.as_json(1) for k, v in redis_cpu.items()},
        "ratios": {k: v.as_json(3) for k, v in ratios.items()},
        "_series": {"rates": rates, "cpu": cpu, "redis_cpu": redis_cpu, "ratios": ratios},
    }


def report(result: dict[str, Any]) -> str:
    rates, cpu, redis_cpu, ratios = (result["_series"][k] for k in ("rates", "cpu", "redis_cpu", "ratios"))
    rows = [
        [LABELS[k], f"{v.median:,.0f}", v.spread(), f"{cpu[k].median:.1f}", f"{redis_cpu[k].median:.1f}"]
        for k, v in rates.items()
    ]
    lines = [
        f"worker throughput, {result['events']:,} pre-filled events of {result['envelope_bytes']} B, no-op handler",
        table(["consumer", "events/s", "spread", "consumer CPU µs/event", "Redis CPU µs/event"], rows),
    ]
    for label, series in ratios.items():
        target = RATIOS[label][2]
        mark = f" (target ≥ {target}: {verdict(series.median, target)})" if target else ""
        lines.append(f"{label} = {series.median:.2f}× (rounds {series.spread(2)}){mark}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_rate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="longest measurement window per contender")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=list(CONTENDERS), help="measure only these contenders")
    args = parser.parse_args(argv)
    result = measure(
        events=args.events, seconds=args.seconds, rounds=args.rounds, contenders=args.only or tuple(CONTENDERS)
    )
    print(report(result))
    emit("worker", {k: v for k, v in result.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()
