"""Chaos: the promises hold while everything around the bus misbehaves at once.

Against the real Valkey (append-only file on), as separate processes: ingest (uvicorn), a downstream stand-in
(``tests.chaos_downstream``), three workers of the ``chaos`` group and two of the ``chaos_audit`` group
(``tests.chaos_consumer``). Meanwhile:

- a load generator posts ``EVENTS`` distinct signed Stripe events over HTTP, 20 at a time, plus about 20 % duplicate
  deliveries of them (re-signed; half of them concurrent with the original, half later), retrying like Stripe with a
  short backoff until it gets a 2xx;
- the ``chaos`` handler fails at random but deterministically per event (``tests.chaos_consumer.plan``): about 10 %
  transiently on their first one or two deliveries, about 2 % permanently;
- the stand-in answers 429 with ``Retry-After: 1`` to 5 % of the calls;
- every 2-3 s one ``chaos`` worker is SIGKILLed and a replacement (a new consumer name) started;
- Valkey is stopped once after 40 % of the events, for about 2 s, then started again on the same port and data; while
  it is down ingest answers 503.

At the end (after both groups drained, then a SIGTERM to every worker, which must exit 0):

- every accepted event (answered ``accepted`` or ``duplicate``) is on the stream exactly once, and has exactly one
  downstream effect or, for the permanently failing ones exactly, exactly one dead-letter entry: none lost, no duplicate
  effect;
- the ``chaos_audit`` group recorded exactly one record per accepted event, whatever the ``chaos`` group went through;
- both groups' pending entries lists are empty and their lag is 0, on the event stream and on their replay streams.

It also measures, per SIGKILL, how long until the killed consumer's pending entries were all processed elsewhere.
``HOOKBUS_CHAOS_EVENTS`` overrides the number of events (default 5000); the run takes about a minute on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bus.connection import REDIS_DOWN
from bus.deadletter import DeadLetter
from bus.envelope import Event
from bus.naming import Names, idempotency_key
from ingest.sources import stripe_samples
from ingest.sources.stripe import signature_header
from tests.chaos_consumer import DOWNSTREAM_ENV, is_permanent, plan

if TYPE_CHECKING:
    from tests.conftest import Valkey

pytestmark = pytest.mark.anyio

EVENTS = int(os.environ.get("HOOKBUS_CHAOS_EVENTS", "5000"))
DUPLICATE_RATE = 0.2  # extra posts of already-posted events, as a share of EVENTS
POST_CONCURRENCY = 20
CHAOS_WORKERS = 3
AUDIT_WORKERS = 2
KILL_EVERY_S = (2.0, 3.0)
MAX_KILLS = 25
RATE_429 = 0.05
OUTAGE_AFTER = 0.4  # share of the distinct events posted before Valkey is stopped
OUTAGE_S = 2.0
START_TIMEOUT_S = 60.0
POST_TIMEOUT_S = 90.0  # one delivery may retry (503, connection errors) for this long
DRAIN_TIMEOUT_S = 120.0

SECRET = "whsec_hookbusChaosTest00000000000001"
SOURCE = "stripe"
CHAOS, AUDIT = "chaos", "chaos_audit"
NAMES = Names("hookbus")
STREAM = NAMES.stream("payment.succeeded")
STREAMS_OF = {group: (STREAM, NAMES.replay(group)) for group in (CHAOS, AUDIT)}

_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """SIGTERM the child if pytest itself dies, so an aborted run leaves nothing behind (Linux)."""
    with contextlib.suppress(Exception):
        _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------------ child processes
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    @property
    def consumer_name(self) -> str:
        """The worker's consumer name, as ``bus.worker.default_consumer_name`` builds it in the child."""
        return f"{socket.gethostname()}-{self.popen.pid}"

    def tail(self, limit: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"


class Processes:
    """Every child of the test; :meth:`close` ends whatever is still running (SIGTERM, then SIGKILL)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self.count: Counter[str] = Counter()
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, kind: str, *args: str) -> Proc:
        self.count[kind] += 1
        name = f"{kind}-{self.count[kind]}"
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def worker(self, group: str) -> Proc:
        return self.start(group, "-m", "bus", "worker", f"tests.chaos_consumer:{'audit' if group == AUDIT else group}")

    def sigkill(self, proc: Proc) -> None:
        proc.killed = True
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=30)

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.killed and proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    def terminate(self, procs: list[Proc], timeout_s: float = 30.0) -> dict[str, int]:
        """SIGTERM ``procs`` and wait for them; returns each one's exit status (-9 when it had to be killed)."""
        for proc in procs:
            proc.killed = True
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=30)
        return {proc.name: proc.popen.returncode for proc in procs}

    def close(self) -> None:
        self.terminate([p for p in self.procs if p.popen.returncode is None], timeout_s=15.0)

    def dump_logs(self) -> None:
        for proc in self.procs:
            print(f"\n----- {proc.name} (pid {proc.popen.pid}, exit {proc.popen.returncode}) -----\n{proc.tail()}")


# ---------------------------------------------------------------------------------------------------- bookkeeping
@dataclass
class Kill:
    consumer: str
    at: float
    pending_at_kill: int | None = None
    reclaimed_after_s: float | None = None


@dataclass
class Report:
    statuses: dict[str, list[str]] = field(default_factory=dict)  # event id -> the 2xx statuses ingest answered
    posts: int = 0
    duplicates_posted: int = 0
    unavailable: int = 0  # 503 answers
    transport_errors: int = 0
    outage: dict[str, float] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)


async def owned_pending(redis: aioredis.Redis, consumer: str) -> int:
    """Entries of the ``chaos`` group pending under ``consumer`` (XPENDING summary form)."""
    summary = await redis.xpending(STREAM, CHAOS)
    for row in summary["consumers"] or ():
        name = row["name"].decode() if isinstance(row["name"], bytes) else row["name"]
        if name == consumer:
            return int(row["pending"])
    return 0


async def group_state(redis: aioredis.Redis) -> dict[tuple[str, str], tuple[int, int | None]]:
    """``(stream, group) -> (pending, lag)`` for both test groups on each of their streams."""
    state: dict[tuple[str, str], tuple[int, int | None]] = {}
    for group, streams in STREAMS_OF.items():
        for stream in streams:
            for info in await redis.xinfo_groups(stream):
                if info["name"].decode() == group:
                    state[(stream, group)] = (int(info["pending"]), info["lag"])
    return state


def settled(state: dict[tuple[str, str], tuple[int, int | None]]) -> bool:
    return len(state) == 2 * len(STREAMS_OF) and all(pending == 0 and lag == 0 for pending, lag in state.values())


async def wait_for(predicate: Any, *, timeout_s: float, what: str, procs: Processes, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        procs.check_alive()
        with contextlib.suppress(*REDIS_DOWN, httpx.TransportError):
            result = await predicate()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(interval_s)


# ------------------------------------------------------------------------------------------------------- the test
async def test_chaos(valkey: Valkey, redis: aioredis.Redis, subprocess_env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random()
    ingest_port, downstream_port = free_port(), free_port()
    ingest_url, downstream_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{downstream_port}"
    env = subprocess_env | {
        "STRIPE_WEBHOOK_SECRET": SECRET,
        DOWNSTREAM_ENV: downstream_url,
        "HOOKBUS_VISIBILITY_TIMEOUT_S": "2",
        "HOOKBUS_CLAIM_INTERVAL_S": "0.2",
        "HOOKBUS_BLOCK_MS": "500",
        "HOOKBUS_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    procs = Processes(env, tmp_path / "logs")
    report = Report()
    failed = True
    try:
        procs.start(
            "downstream", "-m", "tests.chaos_downstream", "--port", str(downstream_port), "--rate-429", str(RATE_429)
        )
        procs.start("ingest", "-m", "bus", "ingest", "--port", str(ingest_port))
        workers = {CHAOS: [procs.worker(CHAOS) for _ in range(CHAOS_WORKERS)]}
        workers[AUDIT] = [procs.worker(AUDIT) for _ in range(AUDIT_WORKERS)]

        async with httpx.AsyncClient(timeout=10) as http:

            async def answers(url: str) -> bool:
                return (await http.get(url)).status_code == 200

            await wait_for(
                lambda: answers(f"{downstream_url}/healthz"), timeout_s=START_TIMEOUT_S, what="downstream", procs=procs
            )
            await wait_for(
                lambda: answers(f"{ingest_url}/readyz"), timeout_s=START_TIMEOUT_S, what="ingest", procs=procs
            )

            async def all_reading() -> bool:  # a consumer exists once its worker has blocked in XREADGROUP
                for group, members in workers.items():
                    try:
                        consumers = await redis.xinfo_consumers(STREAM, group)
                    except ResponseError:  # no stream or group yet
                        return False
                    names = {c["name"].decode() for c in consumers}
                    if not {p.consumer_name for p in members} <= names:
                        return False
                return True

            await wait_for(all_reading, timeout_s=START_TIMEOUT_S, what="every worker to read its group", procs=procs)

            # -- load, kills and the Valkey restart, all at once ---------------------------------------------
            events = []
            for i in range(EVENTS):
                amount = 1000 + i
                event_id = stripe_samples.new_id("evt")
                body = stripe_samples.payment_intent_succeeded(amount=amount, currency="usd", event_id=event_id)
                events.append((event_id, amount, body))
            # (order key, event index, concurrent copies): late duplicates follow their original within ~400 posts.
            copies = [1] * EVENTS
            jobs: list[tuple[float, int, int]] = []
            for _ in range(int(EVENTS * DUPLICATE_RATE)):
                i = rng.randrange(EVENTS)
                if rng.random() < 0.5:
                    copies[i] += 1
                else:
                    jobs.append((i + rng.randint(1, 400) + 0.5, i, 1))
            jobs += [(float(i), i, copies[i]) for i in range(EVENTS)]
            jobs.sort()
            queue: asyncio.Queue[tuple[float, int, int]] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)

            load_done = asyncio.Event()
            originals_done = 0
            outage_task: asyncio.Task[None] | None = None

            async def outage() -> None:
                t0 = time.monotonic()
                await asyncio.to_thread(valkey.stop)
                t1 = time.monotonic()
                await asyncio.sleep(OUTAGE_S)
                await asyncio.to_thread(valkey.start)
                t2 = time.monotonic()
                report.outage = {"at_s": t0 - started, "stop_s": t1 - t0, "down_s": t2 - t1}

            async def deliver(event_id: str, body: bytes) -> None:
                deadline = time.monotonic() + POST_TIMEOUT_S
                backoff = 0.05
                while True:
                    report.posts += 1
                    headers = {
                        "Stripe-Signature": signature_header(body, SECRET, int(time.time())),
                        "Content-Type": "application/json; charset=utf-8",
                    }
                    try:
                        response = await http.post(f"{ingest_url}/webhooks/stripe", content=body, headers=headers)
                    except httpx.TransportError:
                        report.transport_errors += 1
                    else:
                        if response.status_code == 200:
                            status = response.json()["status"]
                            assert status in ("accepted", "duplicate"), response.text
                            report.statuses.setdefault(event_id, []).append(status)
                            return
                        assert response.status_code == 503, f"{response.status_code} {response.text}"
                        report.unavailable += 1
                    assert time.monotonic() < deadline, f"{event_id}: no 2xx from ingest within {POST_TIMEOUT_S} s"
                    await asyncio.sleep(backoff * rng.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, 1.0)

            async def poster() -> None:
                nonlocal originals_done, outage_task
                while True:
                    try:
                        key, i, n = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    event_id, _, body = events[i]
                    original = key == float(i)
                    report.duplicates_posted += n - 1 if original else n
                    await asyncio.gather(*(deliver(event_id, body) for _ in range(n)))
                    if original:
                        originals_done += 1
                        if outage_task is None and originals_done >= EVENTS * OUTAGE_AFTER:
                            outage_task = asyncio.create_task(outage())

            async def kill_loop() -> None:
                while len(report.kills) < MAX_KILLS:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(load_done.wait(), rng.uniform(*KILL_EVERY_S))
                        return
                    victim = rng.choice(workers[CHAOS])
                    workers[CHAOS].remove(victim)
                    procs.sigkill(victim)
                    kill = Kill(victim.consumer_name, time.monotonic())
                    workers[CHAOS].append(procs.worker(CHAOS))
                    with contextlib.suppress(*REDIS_DOWN):
                        kill.pending_at_kill = await owned_pending(redis, kill.consumer)
                    report.kills.append(kill)

            async def reclaim_monitor() -> None:
                while True:
                    for kill in report.kills:
                        if kill.reclaimed_after_s is None:
                            with contextlib.suppress(*REDIS_DOWN):
                                if await owned_pending(redis, kill.consumer) == 0:
                                    kill.reclaimed_after_s = time.monotonic() - kill.at
                    await asyncio.sleep(0.05)

            killer = asyncio.create_task(kill_loop())
            monitor = asyncio.create_task(reclaim_monitor())
            try:
                load_started = time.monotonic()
                await asyncio.gather(*(poster() for _ in range(POST_CONCURRENCY)))
                load_s = time.monotonic() - load_started
                load_done.set()
                await killer
                assert outage_task is not None
                await outage_task

                # -- drain: both groups with nothing pending and no lag ---------------------------------------
                drain_started = time.monotonic()

                async def drained() -> bool:
                    return settled(await group_state(redis))

                try:
                    await wait_for(drained, timeout_s=DRAIN_TIMEOUT_S, what="both groups to drain", procs=procs)
                except AssertionError:
                    print("group state:", await group_state(redis))
                    raise
                drain_s = time.monotonic() - drain_started
                await wait_for(
                    lambda: _true(all(k.reclaimed_after_s is not None for k in report.kills)),
                    timeout_s=10,
                    what="the reclaim monitor",
                    procs=procs,
                )
            finally:
                load_done.set()
                for task in (killer, monitor):
                    task.cancel()
                await asyncio.gather(killer, monitor, return_exceptions=True)

            # -- SIGTERM: every live worker exits 0; nothing is left pending ------------------------------------
            live = [p for group in workers.values() for p in group]
            exits = procs.terminate(live)
            assert all(code == 0 for code in exits.values()), f"worker exit codes: {exits}"
            final_state = await group_state(redis)
            assert settled(final_state), final_state
            for (stream, group), _ in final_state.items():
                assert (await redis.xpending(stream, group))["pending"] == 0, (stream, group)
            downstream = (await http.get(f"{downstream_url}/effects")).json()

        # -- compare ---------------------------------------------------------------------------------------------
        assert report.outage, "Valkey was restarted"
        assert report.unavailable > 0, "ingest answered 503 while Valkey was down"
        assert len(report.kills) >= 3, f"only {len(report.kills)} SIGKILLs"
        amount_of = {event_id: amount for event_id, amount, _ in events}
        accepted = set(report.statuses)
        assert accepted == set(amount_of), "every event was eventually answered 2xx"
        twice = {e: s for e, s in report.statuses.items() if s.count("accepted") > 1}
        assert not twice, f"ingest accepted the same event more than once: {list(twice.items())[:5]}"

        on_stream = Counter(Event.from_fields(f).id for _, f in await redis.xrange(STREAM))
        assert set(on_stream) == accepted, f"lost at ingest: {len(accepted - set(on_stream))}"
        assert all(n == 1 for n in on_stream.values()), "a duplicate delivery was published twice"

        permanent = {e for e in accepted if is_permanent(amount_of[e])}
        expected_effects = accepted - permanent

        effects: dict[str, str] = downstream["effects"]
        effects_per_event = Counter(effects.values())
        lost = expected_effects - set(effects_per_event)
        duplicated = {e: n for e, n in effects_per_event.items() if n > 1}
        assert not lost, f"{len(lost)} accepted events without a downstream effect, e.g. {sorted(lost)[:5]}"
        assert not duplicated, f"duplicate downstream effects: {list(duplicated.items())[:5]}"
        assert set(effects_per_event) == expected_effects, "effects for permanently failing events"
        assert effects == {idempotency_key(CHAOS, SOURCE, e): e for e in expected_effects}
        assert downstream["conflicts"] == 0

        dead = [DeadLetter.from_fields(f) for _, f in await redis.xrange(NAMES.dlq(CHAOS))]
        dead_per_event = Counter(Event.from_json(d.event).id for d in dead)
        unexpected = [
            (d.error_type, d.reason, d.attempts) for d in dead if Event.from_json(d.event).id not in permanent
        ]
        assert set(dead_per_event) == permanent, (
            f"dead letters: missing {sorted(permanent - set(dead_per_event))[:5]}, unexpected {unexpected[:5]}"
        )
        assert all(n == 1 for n in dead_per_event.values()), "an event was dead-lettered twice"
        assert {d.error_type for d in dead} == {"PermanentError"}

        audit: dict[str, str] = downstream["audit"]
        assert Counter(audit.values()) == Counter(accepted), "the audit group saw each accepted event exactly once"
        assert audit == {idempotency_key(AUDIT, SOURCE, e): e for e in accepted}
        assert await redis.xlen(NAMES.dlq(AUDIT)) == 0

        counters = {
            group: {k.decode(): int(v) for k, v in (await redis.hgetall(NAMES.state(group, "counters"))).items()}
            for group in (CHAOS, AUDIT)
        }
        plans = Counter(plan(amount) for amount in amount_of.values())
        timed = [k for k in report.kills if k.pending_at_kill]
        reclaim_times = sorted(k.reclaimed_after_s for k in timed if k.reclaimed_after_s is not None)
        runtime = time.monotonic() - started
        print(
            f"\nchaos: accepted={len(accepted)} effects={len(effects)} dead_lettered={len(dead)} "
            f"duplicates_posted={report.duplicates_posted} kills={len(report.kills)} "
            f"reclaimed≈{counters[CHAOS].get('redeliveries', 0)}"
        )
        print(
            f"chaos: plans={dict(plans)} audit_records={len(audit)} posts={report.posts} "
            f"answers={dict(Counter(s for ss in report.statuses.values() for s in ss))} 503s={report.unavailable} "
            f"transport_errors={report.transport_errors} downstream_requests={downstream['requests']} "
            f"429s={downstream['rejected_429']} replays={downstream['replays']} "
            f"audit_replays={downstream['audit_replays']}"
        )
        print(f"chaos: counters={counters} outage={ {k: round(v, 2) for k, v in report.outage.items()} }")
        if reclaim_times:
            print(
                f"chaos: SIGKILL→pending reclaimed elsewhere, over {len(reclaim_times)} kills with entries pending: "
                f"min={reclaim_times[0]:.2f}s median={statistics.median(reclaim_times):.2f}s "
                f"max={reclaim_times[-1]:.2f}s "
                f"(pending at kill: {[k.pending_at_kill for k in timed]})"
            )
        print(f"chaos: load={load_s:.1f}s drain={drain_s:.1f}s runtime={runtime:.1f}s")
        assert timed, "no SIGKILL hit a worker with entries pending: the reclaim time was not measured"
        failed = False
    finally:
        procs.close()
        if not valkey.running:
            valkey.start()
        if failed:
            procs.dump_logs()


async def _true(value: bool) -> bool:
    return value
