"""Stream, group and worker gauges read from Redis at scrape time, by one process (``hookbus exporter``).

Workers and ingest count what *they* do; the state of the streams (length, lag, pending, oldest pending age,
dead letters, live workers) is read here once per scrape, in two pipelined round trips, instead of by every worker.

Metrics (labels are stream keys, group and consumer names — bounded by the deployment, never event ids):

- ``hookbus_stream_length{stream}``, ``hookbus_group_lag{stream,group}`` (entries not yet delivered to the group),
  ``hookbus_group_pending{stream,group}`` (delivered, not acked), ``hookbus_group_consumers{stream,group}``,
  ``hookbus_group_oldest_pending_age_seconds{stream,group}`` (age of the oldest pending entry, from its id),
- ``hookbus_dlq_length{group}``, ``hookbus_workers{group}`` (workers with a fresh heartbeat; 0 for every consumer
  group on a stream that no live worker serves, also after the last one exited cleanly and deregistered),
- ``hookbus_exporter_redis_up`` (1/0) and ``hookbus_exporter_scrape_duration_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import orjson
import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import workers
from .naming import Names

log = logging.getLogger("hookbus.exporter")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamCollector(Collector):
    """A prometheus-client collector over a synchronous client (``collect`` is called synchronously)."""

    def __init__(self, client: redis.Redis, names: Names) -> None:
        self._redis = client
        self._names = names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        up = GaugeMetricFamily("hookbus_exporter_redis_up", "1 if the last scrape could read Redis.")
        try:
            families = self._read()
            up.add_metric([], 1)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            log.warning("scrape failed: redis unreachable", extra={"error": repr(exc)})
            families = []
            up.add_metric([], 0)
        yield from families
        yield up
        duration = GaugeMetricFamily(
            "hookbus_exporter_scrape_duration_seconds", "Time the last scrape took to read Redis."
        )
        duration.add_metric([], time.perf_counter() - started)
        yield duration

    def _read(self) -> list[GaugeMetricFamily]:
        now = time.time()
        length = GaugeMetricFamily("hookbus_stream_length", "Entries in the stream.", labels=["stream"])
        lag = GaugeMetricFamily(
            "hookbus_group_lag", "Entries not yet delivered to the consumer group.", labels=["stream", "group"]
        )
        pending = GaugeMetricFamily(
            "hookbus_group_pending", "Entries delivered to the group and not acked.", labels=["stream", "group"]
        )
        consumers = GaugeMetricFamily("hookbus_group_consumers", "Consumers in the group.", labels=["stream", "group"])
        oldest = GaugeMetricFamily(
            "hookbus_group_oldest_pending_age_seconds",
            "Age of the group's oldest pending entry (0 when nothing is pending).",
            labels=["stream", "group"],
        )
        dlq = GaugeMetricFamily("hookbus_dlq_length", "Entries in the group's dead-letter stream.", labels=["group"])
        alive = GaugeMetricFamily("hookbus_workers", "Workers with a fresh heartbeat.", labels=["group"])

        streams = sorted(
            _text(k) for k in self._redis.scan_iter(match=self._names.stream_pattern(), _type="stream", count=1000)
        )
        dlqs = sorted(
            _text(k) for k in self._redis.scan_iter(match=self._names.dlq_pattern(), _type="stream", count=1000)
        )
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        for key in dlqs:
            pipe.xlen(key)
        pipe.hgetall(workers.key(self._names.prefix))
        replies = pipe.execute()

        with_pending: list[tuple[str, str]] = []
        counts: dict[str, int] = {}  # live workers per group; 0 for a group nobody runs (the "worker down" alert)
        for i, stream in enumerate(streams):
            length.add_metric([stream], replies[2 * i])
            for info in replies[2 * i + 1]:
                group = _text(info["name"])
                counts.setdefault(group, 0)
                lag.add_metric([stream, group], float(info["lag"]) if info.get("lag") is not None else float("nan"))
                pending.add_metric([stream, group], info["pending"])
                consumers.add_metric([stream, group], info["consumers"])
                if info["pending"]:
                    with_pending.append((stream, group))
                else:
                    oldest.add_metric([stream, group], 0)
        for j, key in enumerate(dlqs):
            dlq.add_metric([self._names.group_of_dlq(key)], replies[2 * len(streams) + j])

        for raw in replies[-1].values():
            doc = orjson.loads(raw)
            counts.setdefault(doc["group"], 0)
            if now - doc["heartbeat"] < workers.STALE_AFTER_S:
                counts[doc["group"]] += 1
        for group, n in sorted(counts.items()):
            alive.add_metric([group], n)

        if with_pending:
            pipe = self._redis.pipeline(transaction=False)
            for stream, group in with_pending:
                pipe.xpending(stream, group)
            for (stream, group), summary in zip(with_pending, pipe.execute(), strict=True):
                first = summary.get("min")
                age = max(0.0, now - int(_text(first).split("-")[0]) / 1000) if first else 0.0
                oldest.add_metric([stream, group], age)
        return [length, lag, pending, consumers, oldest, dlq, alive]
