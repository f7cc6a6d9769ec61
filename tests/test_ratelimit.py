"""The shared rate limiter on a real Valkey: GCRA bounds, pauses, concurrency caps, and 4 processes sharing it."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus import Event, Publisher, RetryLater
from bus.envelope import utc_now_rfc3339
from bus.groups import ensure_groups
from bus.ratelimit import Limit, Limiter

from .conftest import REPO


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The largest number of calls inside any window of ``window_s`` seconds (sliding, both ends inclusive)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_max_in_window() -> None:
    assert max_in_window([0, 0.1, 0.2, 1.05, 1.1, 2.5]) == 4
    assert max_in_window([]) == 0


@pytest.mark.anyio
async def test_gcra_allows_rate_plus_burst_in_any_window(redis, names) -> None:  # type: ignore[no-untyped-def]
    limiter = Limiter(redis, names, {"api": Limit(rate=10, period_s=1, burst=3)}, max_wait_s=30)
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire("api", "acct")
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(25)))
    assert len(stamps) == 25
    assert max_in_window(stamps) <= 10 + 3
    assert stamps and max(stamps) - min(stamps) >= (25 - 3) / 10 * 0.9  # it really spread them out


@pytest.mark.anyio
async def test_over_the_wait_bound_the_entry_is_released(redis, names) -> None:  # type: ignore[no-untyped-def]
    limiter = Limiter(redis, names, {"api": Limit(rate=1, period_s=10)}, max_wait_s=0.5)
    await limiter.acquire("api", "acct")
    with pytest.raises(RetryLater) as caught:
        await limiter.acquire("api", "acct")
    assert 9 <= (caught.value.delay or 0) <= 10
    await limiter.acquire("api", "other-account")  # keys are per account


@pytest.mark.anyio
async def test_a_pause_holds_every_caller_until_it_ends(redis, names) -> None:  # type: ignore[no-untyped-def]
    limiter = Limiter(redis, names, {"api": Limit(rate=1000, period_s=1, burst=100)}, max_wait_s=5)
    other = Limiter(redis, names, {"api": Limit(rate=1000, period_s=1, burst=100)}, max_wait_s=5)
    await limiter.pause("api", "acct", 0.6)
    started = time.monotonic()
    lease = await other.acquire("api", "acct")  # another "process" is paused too
    assert time.monotonic() - started >= 0.5
    assert lease.waited_s >= 0.5


@pytest.mark.anyio
async def test_concurrency_cap_bounds_requests_in_flight(redis, names) -> None:  # type: ignore[no-untyped-def]
    limiter = Limiter(redis, names, {"api": Limit(rate=1000, period_s=1, burst=100, concurrency=2)}, max_wait_s=10)
    in_flight, peak = 0, 0

    async def one() -> None:
        nonlocal in_flight, peak
        lease = await limiter.acquire("api", "acct")
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        await limiter.release(lease)

    await asyncio.gather(*(one() for _ in range(10)))
    assert peak == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_sum(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def _prepare(url: str, events: int) -> None:
    from bus.connection import connect
    from bus.naming import Names

    from . import ratelimit_consumer

    redis = connect(url, socket_timeout_s=10)
    try:
        await redis.flushall()
        names = Names("hookbus")
        await ensure_groups(redis, names, [ratelimit_consumer.consumer])
        publisher = Publisher(redis, names)
        for n in range(events):
            await publisher.publish([Event(f"evt_{n}", "test", "payment.succeeded", utc_now_rfc3339(), {"n": n})])
    finally:
        await redis.aclose()


def test_four_worker_processes_share_one_limit_of_20_per_second(valkey, subprocess_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """4 processes, 20 requests/second (burst 1), 200 calls (~10 s): no 1-second window sees more than 21."""
    rules = tmp_path / "hookbus.toml"
    rules.write_text("[ratelimits.standin]\nrate = 20\nperiod_s = 1\nburst = 1\n")
    standin_port = free_port()
    metrics_ports = [free_port() for _ in range(4)]
    env = subprocess_env | {
        "HOOKBUS_CONFIG": str(rules),
        "STANDIN_URL": f"http://127.0.0.1:{standin_port}",
        "HOOKBUS_BLOCK_MS": "500",
        "HOOKBUS_CLAIM_INTERVAL_S": "0.2",
        "HOOKBUS_LOG_LEVEL": "WARNING",
    }
    events = 200
    asyncio.run(_prepare(valkey.url, events))
    standin = [sys.executable, "-m", "uvicorn", "tests.ratelimit_downstream:app", "--port", str(standin_port)]
    worker = [sys.executable, "-m", "bus", "worker", "tests.ratelimit_consumer:consumer", "--metrics-port"]
    with open(tmp_path / "children.log", "wb") as log:
        procs = [subprocess.Popen([*standin, "--log-level", "warning"], cwd=REPO, env=env, stdout=log, stderr=log)]
        try:
            for port in metrics_ports:
                procs.append(subprocess.Popen([*worker, str(port)], cwd=REPO, env=env, stdout=log, stderr=log))
            deadline = time.monotonic() + 60
            calls: list[float] = []
            while time.monotonic() < deadline and len(calls) < events:
                time.sleep(0.5)
                try:
                    calls = httpx.get(f"http://127.0.0.1:{standin_port}/calls", timeout=5).json()["calls"]
                except httpx.HTTPError:
                    continue
            assert len(calls) == events, f"only {len(calls)} of {events} calls arrived"
            busiest = max_in_window(calls)
            span = max(calls) - min(calls)
            throttled = sum(scrape_sum(p, "hookbus_ratelimit_throttled_total", api="standin") for p in metrics_ports)
            print(
                f"\nrate limit: {events} calls from 4 processes in {span:.1f} s; busiest 1-s window {busiest} "
                f"(limit 20 + burst 1); throttled {throttled:.0f}"
            )
            # The limiter grants at most 20 + burst 1 per second; arrivals at the stand-in also carry each sender's
            # scheduling delay (ms, more on a loaded machine), which can shift one request into a neighbouring window.
            assert busiest <= 21 + 1
            assert (events - 1) / span <= 20 * 1.02  # and over the whole run, the limit sets the pace
            assert throttled > 0
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_rules_file_overrides_single_fields_and_names_mistakes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bus import rules
    from bus.errors import ConfigError
    from bus.ratelimit import DEFAULT_LIMITS, configured_limits

    path = tmp_path / "hookbus.toml"
    monkeypatch.setenv("HOOKBUS_CONFIG", str(path))
    path.write_text("[ratelimits.quickbooks]\nrate = 400\n[ratelimits.supplier]\nrate = 2\nperiod_s = 1\n")
    rules.reload()
    limits = configured_limits()
    assert limits["quickbooks"] == DEFAULT_LIMITS["quickbooks"].model_copy(update={"rate": 400})
    assert limits["supplier"] == Limit(rate=2, period_s=1)
    path.write_text("[ratelimits.new_api]\nrate = 5\n")
    rules.reload()
    with pytest.raises(ConfigError, match=r"\[ratelimits.new_api\] period_s: Field required"):
        configured_limits()
    rules.reload()
