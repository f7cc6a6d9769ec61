"""Benchmark 1: ingest throughput against (a) a bare Starlette endpoint and (b) a hand-written verify + parse + XADD.

Each server runs as its own process under the same uvicorn settings (one worker unless ``--workers``; uvloop,
httptools, no access log) against one private Valkey (AOF on, fsync every second). The load generator keeps 50
keep-alive connections busy posting signed ~1 KB Stripe ``payment_intent.succeeded`` webhooks, each with a new event
id and a fresh signature. The three servers are measured in turn, round after round (the order rotates), and Valkey
is emptied before every measurement; ratios are computed within a round.

hookbus runs as deployed: ``python -m bus ingest`` with the installed consumers, whose groups it creates at start-up
(no worker runs, so entries accumulate until the next flush, which also drops those groups), logging to a file at
``HOOKBUS_LOG_LEVEL=WARNING`` (the per-webhook success lines, INFO, are off, as the README's Performance section
states). It answers 200 only after the dedupe + XADD + trace script ran.

    python -m bench.ingest_rate [--rounds 3] [--duration 4] [--workers 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from . import loadgen, webhooks
from .common import (
    PYTHON,
    Series,
    Valkey,
    child_env,
    children,
    cpu_seconds,
    emit,
    free_port,
    spawn,
    table,
    verdict,
    wait_http,
)

SERVERS = ("bare", "naive", "hookbus")
LABELS = {
    "bare": "(a) bare Starlette endpoint",
    "naive": "(b) hand-written verify + orjson + XADD",
    "hookbus": "hookbus ingest",
}


def measure(
    *, rounds: int = 3, duration_s: float = 4.0, workers: int = 1, servers: Sequence[str] = SERVERS
) -> dict[str, Any]:
    rate = {name: Series() for name in servers}
    p99 = {name: Series() for name in servers}
    cpu_us = {name: Series() for name in servers}
    ratios: dict[str, Series] = {}
    generator = "wrk" if loadgen.wrk_path() else "httpx"
    with Valkey() as valkey, children() as procs:
        env = child_env(valkey.url, HOOKBUS_LOG_LEVEL="WARNING")
        ports = {}
        for name in servers:
            port = ports[name] = free_port()
            kind, _, count = name.partition("@")  # "hookbus@2": hookbus with 2 uvicorn workers
            processes = str(int(count or workers))
            if kind == "hookbus":
                argv = [PYTHON, "-m", "bus", "ingest", "--port", str(port), "--workers", processes]
            else:
                argv = [PYTHON, "-m", "bench.peers", kind, "--port", str(port), "--workers", processes]
            procs.append(spawn(f"ingest-{kind}-w{processes}", argv, env))
            wait_http(procs[-1], port)
        pids = {name: proc.popen.pid for name, proc in zip(servers, procs, strict=True)}
        for name in servers:  # warm-up: connections, caches, the first requests' imports
            loadgen.saturate(ports[name], duration_s=1, tag=webhooks.nonce())
        for r in range(rounds):
            order = list(servers[r % len(servers) :]) + list(servers[: r % len(servers)])
            this_round = {}
            for name in order:
                valkey.reset()
                before = cpu_seconds(pids[name])
                result = loadgen.saturate(ports[name], duration_s=duration_s, tag=webhooks.nonce())
                used = cpu_seconds(pids[name]) - before
                if result.errors:
                    print(f"warning: {name}: {result.errors} of {result.requests} requests failed")
                rate[name].add(result.rate)
                p99[name].add(result.p99_ms)
                cpu_us[name].add(used / max(1, result.requests - result.errors) * 1e6)
                this_round[name] = result.rate
                generator = result.generator
            if "hookbus" in this_round:
                for ref in ("bare", "naive"):
                    if ref in this_round:
                        ratios.setdefault(f"hookbus/{ref}", Series()).add(this_round["hookbus"] / this_round[ref])
    return {
        "workers": workers,
        "generator": generator,
        "connections": 50,
        "duration_s": duration_s,
        "rounds": rounds,
        "body_bytes": webhooks.SIZE,
        "req_per_s": {k: v.as_json(0) for k, v in rate.items()},
        "p99_ms": {k: v.as_json(2) for k, v in p99.items()},
        "server_cpu_us_per_req": {k: v.as_json(1) for k, v in cpu_us.items()},
        "ratios": {k: v.as_json(3) for k, v in ratios.items()},
        "_series": {"rate": rate, "p99": p99, "cpu": cpu_us, "ratios": ratios},
    }


def report(result: dict[str, Any]) -> str:
    series = result["_series"]
    rows = [
        [
            LABELS.get(name, name),
            f"{series['rate'][name].median:,.0f}",
            series["rate"][name].spread(),
            f"{series['p99'][name].median:.1f}",
            f"{series['cpu'][name].median:.0f}",
        ]
        for name in series["rate"]
    ]
    text = table(["server (1 KB signed Stripe webhook)", "req/s", "spread", "p99 ms", "server CPU µs/req"], rows)
    targets = {"hookbus/bare": 0.40, "hookbus/naive": 1.6}
    lines = []
    for key, ratio in series["ratios"].items():
        target = targets.get(key)
        mark = f" (target ≥ {target}: {verdict(ratio.median, target)})" if target and result["workers"] == 1 else ""
        lines.append(f"{key} = {ratio.median:.2f}× (rounds {ratio.spread(2)}){mark}")
    head = f"ingest, {result['workers']} uvicorn worker(s), generator {result['generator']}, 50 connections"
    if result["generator"] != "wrk":
        lines.append(
            "note: the httpx generator saturates before the servers do (about 1,500 req/s here), so the req/s ratios "
            "above measure the generator; compare the server CPU µs/req column, or install wrk"
        )
    return "\n".join([head, text, *lines])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_rate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes per server")
    args = parser.parse_args(argv)
    if not loadgen.wrk_path():
        print(loadgen.WRK_HINT)
    result = measure(rounds=args.rounds, duration_s=args.duration, workers=args.workers)
    print(report(result))
    emit("ingest", {k: v for k, v in result.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()
