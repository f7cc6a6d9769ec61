"""Load generators: wrk when installed (``apt-get install wrk``), else an httpx one; and a fixed-rate sender.

- :func:`saturate` keeps ``connections`` keep-alive connections busy for ``duration_s`` (closed loop) and reports
  requests per second and latency percentiles. wrk (C, one thread) costs the server machine far less CPU than any
  Python client; the httpx fallback is itself CPU-bound near 1,500 requests per second here (about 0.7 ms of CPU
  each), so its req/s ratios say little: the report names the generator, and the servers' CPU per request still
  compares them.
- :func:`fixed_rate` sends at a fixed rate whatever the answers (open loop), on raw keep-alive sockets so the time
  recorded for each POST is taken right before its bytes are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from . import webhooks
from .common import SECRET, percentile

WRK_SCRIPT = Path(__file__).with_name("wrk_stripe.lua")
WRK_HINT = "wrk not found: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`; using the httpx generator"


@dataclass
class LoadResult:
    generator: str
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.duration_s if self.duration_s else 0.0


def wrk_path() -> str | None:
    return None if os.environ.get("HOOKBUS_BENCH_NO_WRK") else shutil.which("wrk")


def saturate(port: int, *, duration_s: float, connections: int = 50, tag: str) -> LoadResult:
    """Post signed webhooks to ``127.0.0.1:port`` as fast as ``connections`` keep-alive connections allow."""
    if wrk_path():
        return _wrk(port, duration_s=duration_s, connections=connections, tag=tag)
    return _uvloop_run(_httpx_saturate(port, duration_s=duration_s, connections=connections, tag=tag))


def _wrk(port: int, *, duration_s: float, connections: int, tag: str) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="hookbus-wrk-") as tmp:
        prefix, suffix = Path(tmp, "prefix"), Path(tmp, "suffix")
        prefix.write_bytes(webhooks.PREFIX)
        suffix.write_bytes(webhooks.SUFFIX)
        env = dict(
            os.environ,
            BENCH_SECRET=SECRET,
            BENCH_PREFIX_FILE=str(prefix),
            BENCH_SUFFIX_FILE=str(suffix),
            BENCH_TAG=tag,
            BENCH_PATH=webhooks.PATH,
        )
        argv = [
            wrk_path() or "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration_s:g}s",
            "--timeout",
            "5s",
            "-s",
            str(WRK_SCRIPT),
            f"http://127.0.0.1:{port}{webhooks.PATH}",
        ]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration_s + 30, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    doc = orjson.loads(line.removeprefix("WRKJSON "))
    errors = sum(doc[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        generator="wrk",
        requests=doc["requests"],
        duration_s=doc["duration_us"] / 1e6,
        errors=errors,
        p50_ms=doc["p50_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
        max_ms=doc["max_us"] / 1000,
    )


def _uvloop_run(coro):  # type: ignore[no-untyped-def]
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def _httpx_saturate(port: int, *, duration_s: float, connections: int, tag: str) -> LoadResult:
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = 0
    url = f"http://127.0.0.1:{port}{webhooks.PATH}"
    # One client (one keep-alive connection) per loop: httpcore's pool scans every connection for every request,
    # which caps one 50-connection client far below what the servers can do. Plain HTTP: no CA bundle to load.
    clients = [
        httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=5.0, verify=False) for _ in range(connections)
    ]
    deadline = time.perf_counter() + duration_s

    async def loop(worker: int) -> None:
        nonlocal errors, counter
        async with clients[worker] as client:
            while time.perf_counter() < deadline:
                counter += 1
                payload = webhooks.body(webhooks.event_id_token(tag + chr(97 + worker % 26), counter))
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=payload, headers=webhooks.headers(payload))
                    ok = response.status_code < 300
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

    began = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(connections)))
    elapsed = time.perf_counter() - began
    return LoadResult(
        generator="httpx",
        requests=len(latencies),
        duration_s=elapsed,
        errors=errors,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=max(latencies, default=0.0) * 1000,
    )


# ------------------------------------------------------------------------------------------------------ fixed rate
@dataclass
class Sent:
    """What :func:`fixed_rate` did: the Unix time each event id's POST started, and the answers."""

    at: dict[str, float] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    late: int = 0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def _request(port: int, payload: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {webhooks.PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def fixed_rate(
    port: int, *, rate: float, duration_s: float, tag: str, on_sent: Callable[[str], None] | None = None
) -> Sent:
    """POST ``rate`` signed webhooks per second for ``duration_s`` (open loop: a slow answer does not delay the next
    POST; connections are opened as needed). Returns each event id's POST start time (Unix seconds)."""
    sent = Sent()
    idle: list[_Connection] = []
    tasks: set[asyncio.Task[None]] = set()

    async def post(event_id: str, request: bytes) -> None:
        for attempt in range(3):  # the server closes keep-alive connections idle for a while: retry on a new one
            if idle and not attempt:
                conn = idle.pop()
            else:
                conn = _Connection(*await asyncio.open_connection("127.0.0.1", port))
            sent.at[event_id] = time.time()
            try:
                status = await conn.exchange(request)
            except (OSError, asyncio.IncompleteReadError):
                conn.writer.close()
                continue
            sent.statuses[status] = sent.statuses.get(status, 0) + 1
            idle.append(conn)
            return
        sent.statuses[0] = sent.statuses.get(0, 0) + 1

    total = int(rate * duration_s)
    interval = 1.0 / rate
    start = time.perf_counter()
    for n in range(total):
        due = start + n * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            sent.late += 1
        token = webhooks.event_id_token(tag, n)
        payload = webhooks.body(token)
        task = asyncio.create_task(post("evt_" + token, _request(port, payload, webhooks.headers(payload))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if on_sent:
            on_sent(token)
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.writer.close()
    return sent
