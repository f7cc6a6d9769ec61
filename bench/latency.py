"""Benchmark 3: end-to-end latency at a fixed rate, and producer → handler latency against the raw loop.

- Webhook POST → handler done: signed Stripe webhooks posted to ``python -m bus ingest`` at ``--rate`` (1,000/s) for
  ``--seconds`` (10), open loop (a slow answer does not delay the next POST), one hookbus worker whose handler
  records when it finished. Reported: p50, p99 and max of (handler done − POST start), measured by the benchmark
  itself, and the p99 of the worker's exported ``hookbus_event_latency_seconds`` histogram (webhook receipt at
  ingest → handler done, what a dashboard shows; bucket-interpolated like PromQL's ``histogram_quantile``).
- Producer → handler: events published at the same rate by ``Publisher.publish`` to a hookbus worker, against raw
  XADDs to the raw XREADGROUP loop (c); p99 of (handler done − publish call).

    python -m bench.latency [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bus.connection import connect
from bus.naming import Names
from bus.publisher import Publisher

from . import loadgen, webhooks
from .common import (
    PYTHON,
    Child,
    Valkey,
    child_env,
    children,
    emit,
    free_port,
    percentile,
    spawn,
    table,
    verdict,
    wait_http,
)
from .worker_rate import STREAM, envelopes

GROUP = "bench"


def _wait_group(valkey: Valkey, group: str, proc: Child, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if valkey.client.exists(STREAM) and any(
            g["name"].decode() == group for g in valkey.client.xinfo_groups(STREAM)
        ):
            return
        if not proc.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"the consumer's group did not appear:\n{proc.tail()}")


def _stop_and_collect(proc: Child, out: Path) -> dict[str, float]:
    """Stop the consumer (SIGTERM) and read when it finished each event."""
    proc.stop()
    return orjson.loads(out.read_bytes()) if out.exists() else {}


def _summary(sent: dict[str, float], done: dict[str, float]) -> dict[str, Any]:
    latencies = [(done[k] - t) * 1000 for k, t in sent.items() if k in done]
    return {
        "events": len(sent),
        "handled": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(max(latencies, default=float("nan")), 3),
    }


def histogram_quantile(q: float, text: str, name: str) -> float:
    """``histogram_quantile(q, name)`` over every series of ``name`` in a Prometheus exposition ``text``."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    if not buckets:
        return float("nan")
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-9)
        lower, below = bound, buckets[bound]
    return lower


async def _await_handled(valkey_url: str, group: str, expected: int, timeout_s: float) -> None:
    client = aioredis.Redis.from_url(valkey_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for info in await client.xinfo_groups(STREAM):
                if info["name"].decode() == group and info["entries-read"] - info["pending"] >= expected:
                    return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def webhook_to_handler(valkey: Valkey, *, rate: float, seconds: float) -> dict[str, Any]:
    with children() as procs, tempfile.TemporaryDirectory(prefix="hookbus-latency-") as tmp:
        out = Path(tmp, "done.json")
        metrics_port = free_port()
        worker_env = child_env(
            valkey.url, BENCH_GROUP=GROUP, BENCH_OUT=str(out), HOOKBUS_METRICS_PORT=str(metrics_port)
        )
        worker = spawn("latency-worker", [PYTHON, "-m", "bus", "worker", "bench.consumers:timed"], worker_env)
        procs.append(worker)
        port = free_port()
        ingest = spawn("latency-ingest", [PYTHON, "-m", "bus", "ingest", "--port", str(port)], child_env(valkey.url))
        procs.append(ingest)
        wait_http(ingest, port)
        _wait_group(valkey, GROUP, worker)
        sent = loadgen._uvloop_run(loadgen.fixed_rate(port, rate=rate, duration_s=seconds, tag=webhooks.nonce()))
        loadgen._uvloop_run(_await_handled(valkey.url, GROUP, len(sent.at), 15))
        exported = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        done = _stop_and_collect(worker, out)
    result = _summary(sent.at, done)
    result["exported_p99_ms"] = round(histogram_quantile(0.99, exported, "hookbus_event_latency_seconds") * 1000, 2)
    result["statuses"] = {str(k): v for k, v in sent.statuses.items()}
    result["late_sends"] = sent.late
    return result


async def _produce(
    publish: Callable[[int], Awaitable[object]], count: int, rate: float, ids: Sequence[str]
) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[ids[n]] = time.time()
        await publish(n)
    return sent


def producer_to_handler(valkey: Valkey, kind: str, *, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    payloads = envelopes(count)
    ids = [orjson.loads(p)["id"] for p in payloads]
    with children() as procs, tempfile.TemporaryDirectory(prefix="hookbus-latency-") as tmp:
        out = Path(tmp, "done.json")
        if kind == "hookbus":
            argv = [PYTHON, "-m", "bus", "worker", "bench.consumers:timed"]
        else:
            valkey.client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
            argv = [PYTHON, "-m", "bench.raw_consume", "--url", valkey.url, "--stream", STREAM, "--group", GROUP]
            argv += ["--out", str(out)]
        proc = spawn(f"latency-{kind}", argv, child_env(valkey.url, BENCH_GROUP=GROUP, BENCH_OUT=str(out)))
        procs.append(proc)
        _wait_group(valkey, GROUP, proc)
        time.sleep(0.5)  # the consumer is blocked in XREADGROUP by now

        async def run() -> dict[str, float]:
            client = connect(valkey.url, socket_timeout_s=5)
            try:
                if kind == "hookbus":
                    from bus.envelope import Event

                    publisher = Publisher(client, Names())
                    events = [Event.from_json(p) for p in payloads]

                    async def publish(n: int) -> object:
                        return await publisher.publish([events[n]])

                else:

                    async def publish(n: int) -> object:
                        return await client.xadd(STREAM, {"event": payloads[n]})

                sent = await _produce(publish, count, rate, ids)
                await _await_handled(valkey.url, GROUP, count, 15)
                return sent
            finally:
                await client.aclose()

        sent = loadgen._uvloop_run(run())
        done = _stop_and_collect(proc, out)
    return _summary(sent, done)


def measure(*, rate: float = 1000.0, seconds: float = 10.0, pair_seconds: float = 5.0) -> dict[str, Any]:
    with Valkey() as valkey:
        e2e = webhook_to_handler(valkey, rate=rate, seconds=seconds)
        valkey.reset()
        hookbus = producer_to_handler(valkey, "hookbus", rate=rate, seconds=pair_seconds)
        valkey.reset()
        raw = producer_to_handler(valkey, "raw", rate=rate, seconds=pair_seconds)
    return {
        "rate_per_s": rate,
        "webhook_to_handler": e2e,
        "producer_to_handler": {"hookbus": hookbus, "raw": raw},
        "ratios": {"hookbus/raw p99": round(hookbus["p99_ms"] / raw["p99_ms"], 3)},
    }


def report(result: dict[str, Any]) -> str:
    e2e, pair = result["webhook_to_handler"], result["producer_to_handler"]
    rows = [
        [
            "webhook POST → hookbus handler done",
            e2e["handled"],
            e2e["p50_ms"],
            e2e["p99_ms"],
            e2e["max_ms"],
        ],
        [
            "Publisher.publish → hookbus handler done",
            *(pair["hookbus"][k] for k in ("handled", "p50_ms", "p99_ms", "max_ms")),
        ],
        ["(c) raw XADD → raw loop", *(pair["raw"][k] for k in ("handled", "p50_ms", "p99_ms", "max_ms"))],
    ]
    ratio = result["ratios"]["hookbus/raw p99"]
    return "\n".join(
        [
            f"latency at {result['rate_per_s']:.0f} events/s",
            table(["path", "events", "p50 ms", "p99 ms", "max ms"], rows),
            f"exported hookbus_event_latency_seconds p99 (receipt → handler done): {e2e['exported_p99_ms']} ms",
            f"webhook → handler p99 = {e2e['p99_ms']} ms (target ≤ 5 ms: {verdict(e2e['p99_ms'], 5, at_most=True)})",
            f"producer → handler p99, hookbus/raw = {ratio:.2f}× (target ≤ 2: {verdict(ratio, 2, at_most=True)})",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = measure(rate=args.rate, seconds=args.seconds)
    print(report(result))
    emit("latency", result)


if __name__ == "__main__":
    main()
