"""The worker runtime on a real Valkey: retries through the PEL, dead letters, reclaim, restarts, shutdown.

Shared cases 024 (deleted while pending), 026 (NOGROUP), 027 (delivery counts and poison messages),
029 (idle BLOCK vs socket timeout), 030 (Redis restarts), 016/017 (out-of-order delivery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest

from bus import Consumer, Context, Event, NotReady, PermanentError, Publisher, RetryLater, RetryPolicy
from bus.connection import connect
from bus.deadletter import DeadLetter
from bus.envelope import utc_now_rfc3339
from bus.groups import ensure_groups
from bus.worker import Worker

from .conftest import Valkey
from .support import running_worker, wait_until

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(base_s=0.1, factor=2, cap_s=1, jitter=0, max_attempts=5)


def event(n: int | str, event_type: str = "payment.succeeded", **data: object) -> Event:
    return Event(id=f"evt_{n}", source="test", type=event_type, time=utc_now_rfc3339(), data={"n": n, **data})


class Recorder:
    """A consumer whose handler behaviour is set per test; records every call."""

    def __init__(
        self, name: str = "work", *, retry: RetryPolicy = FAST, types: tuple[str, ...] = ("payment.succeeded",)
    ):
        self.calls: list[tuple[str, int, float]] = []  # (event id, delivery count, monotonic time)
        self.behaviour: Callable[[Event, Context], Awaitable[None]] | None = None
        self.consumer = Consumer(name, retry=retry)
        for event_type in types:
            self.consumer.handler(event_type)(self._handle)

    async def _handle(self, event: Event, ctx: Context) -> None:
        self.calls.append((event.id, ctx.delivery_count, time.monotonic()))
        if self.behaviour is not None:
            await self.behaviour(event, ctx)

    def ids(self) -> list[str]:
        return [c[0] for c in self.calls]


async def pending_count(redis, stream: str, group: str) -> int:  # type: ignore[no-untyped-def]
    return int((await redis.xpending(stream, group))["pending"])


async def settled(redis, names, group: str, event_type: str = "payment.succeeded") -> None:  # type: ignore[no-untyped-def]
    stream = names.stream(event_type)

    async def check() -> bool:
        info = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
        return info[group]["pending"] == 0 and info[group]["lag"] == 0

    await wait_until(check, what=f"{group} to settle on {stream}")


async def test_failed_entry_stays_pending_and_is_retried_with_backoff(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()

    async def fail_twice(event: Event, ctx: Context) -> None:
        if ctx.delivery_count <= 2:
            assert await pending_count(redis, ctx.stream, ctx.group) == 1
            raise RuntimeError("downstream hiccup")

    rec.behaviour = fail_twice
    await ensure_groups(redis, names, [rec.consumer])
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.02) as worker:
        await Publisher(redis, names).publish([event(1)])
        await settled(redis, names, "work")
    counts = [c[1] for c in rec.calls]
    gaps = [b[2] - a[2] for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
    assert counts == [1, 2, 3]  # the delivery count comes from Redis
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # base 0.1 s, factor 2, no jitter
    assert worker.counts["retry"] == 2 and worker.counts["acked"] == 1
    assert await redis.hlen(names.retry("work")) == 0


async def test_retry_after_delays_the_next_attempt(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()

    async def throttled(event: Event, ctx: Context) -> None:
        if ctx.delivery_count == 1:
            raise RetryLater("429 Too Many Requests", delay=1.0)

    rec.behaviour = throttled
    await ensure_groups(redis, names, [rec.consumer])
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.02):
        await Publisher(redis, names).publish([event(1)])
        await settled(redis, names, "work")
    assert rec.calls[1][2] - rec.calls[0][2] >= 1.0


async def test_permanent_error_moves_to_dead_letter_stream_atomically(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()

    async def invalid(event: Event, ctx: Context) -> None:
        raise PermanentError("400 ValidationFault: customer ref not found")

    rec.behaviour = invalid
    await ensure_groups(redis, names, [rec.consumer])
    async with running_worker(rec.consumer, redis, names, consumer_name="w1"):
        result = await Publisher(redis, names).publish([event(7)])
        await settled(redis, names, "work")
    (dlq_id, fields), *rest = await redis.xrange(names.dlq("work"))
    assert rest == []
    record = DeadLetter.from_fields(fields)
    assert record.entry_id == result.entry_ids[0]
    assert record.stream == names.stream("payment.succeeded")
    assert (record.group, record.consumer, record.attempts) == ("work", "w1", 1)
    assert (record.error_type, record.reason) == ("PermanentError", "400 ValidationFault: customer ref not found")
    assert Event.from_json(record.event).id == "evt_7"
    assert record.first_failure_ms <= record.last_failure_ms
    assert len(rec.calls) == 1


async def test_case_027_poison_message_dead_lettered_after_max_attempts(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(retry=RetryPolicy(base_s=0.05, factor=1, cap_s=0.05, jitter=0, max_attempts=5))

    async def poison(event: Event, ctx: Context) -> None:
        if event.data["n"] == "v1":
            raise ValueError("customer ref not found")

    rec.behaviour = poison
    await ensure_groups(redis, names, [rec.consumer])
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.02):
        await Publisher(redis, names).publish([event("v1")])
        await Publisher(redis, names).publish([event("v3")])
        await settled(redis, names, "work")
    assert rec.ids().count("evt_v1") == 5
    assert rec.ids().count("evt_v3") == 1
    (_, fields), *rest = await redis.xrange(names.dlq("work"))
    record = DeadLetter.from_fields(fields)
    assert rest == [] and record.attempts == 5
    assert (record.error_type, record.reason) == ("ValueError", "customer ref not found")


async def test_case_027_delivery_counts_raised_elsewhere_are_respected(redis, names) -> None:  # type: ignore[no-untyped-def]
    """The case's command sequence raises 1-0 to 4 deliveries and 3-0 to 3 before the worker sees them."""
    rec = Recorder(retry=RetryPolicy(base_s=0.05, factor=1, cap_s=0.05, jitter=0, max_attempts=5))

    async def poison(event: Event, ctx: Context) -> None:
        if event.data["n"] == "v1":
            raise ValueError("customer ref not found")

    rec.behaviour = poison
    s = names.stream("payment.succeeded")
    await redis.xadd(s, event("v1").to_fields(), id="1-0")
    await redis.xadd(s, event("v3").to_fields(), id="3-0")
    await redis.xgroup_create(s, "work", id="0")
    await redis.xreadgroup("work", "alice", {s: ">"})
    await redis.xautoclaim(s, "work", "bob", 0, "0-0")
    await redis.xreadgroup("work", "bob", {s: "0"})
    await redis.xclaim(s, "work", "carol", 0, ["1-0"])
    await redis.xautoclaim(s, "work", "dave", 0, "0-0", justid=True)
    counts = {r["message_id"]: r["times_delivered"] for r in await redis.xpending_range(s, "work", "-", "+", 10)}
    assert counts == {b"1-0": 4, b"3-0": 3}
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.02, visibility_timeout_s=0.2):
        await settled(redis, names, "work")
    assert rec.ids().count("evt_v1") == 1  # the fifth delivery is the last one allowed
    assert rec.ids().count("evt_v3") == 1
    (_, fields), *_ = await redis.xrange(names.dlq("work"))
    assert DeadLetter.from_fields(fields).attempts == 5


async def test_crashing_poison_message_is_not_run_again_after_max_deliveries(redis, names) -> None:  # type: ignore[no-untyped-def]
    """An entry whose deliveries never report an outcome (its handler kills the process) is given up on."""
    rec = Recorder(retry=RetryPolicy(base_s=0.05, jitter=0, max_attempts=3))
    s = names.stream("payment.succeeded")
    await ensure_groups(redis, names, [rec.consumer])
    await Publisher(redis, names).publish([event("crash")])
    for ghost in ("ghost1", "ghost2", "ghost3"):  # three crashed deliveries
        await redis.xautoclaim(s, "work", ghost, 0, "0-0") if ghost != "ghost1" else await redis.xreadgroup(
            "work", ghost, {s: ">"}
        )
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.02, visibility_timeout_s=0.2):
        await settled(redis, names, "work")
    assert rec.calls == []
    (_, fields), *_ = await redis.xrange(names.dlq("work"))
    record = DeadLetter.from_fields(fields)
    assert (record.error_type, record.attempts) == ("AttemptsExhausted", 3)


async def test_case_024_entries_deleted_while_pending(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    s = names.stream("payment.succeeded")
    for n in (1, 2, 3):
        await redis.xadd(s, event(f"v{n}").to_fields(), id=f"{n}-0")
    await redis.xgroup_create(s, "work", id="0")
    await redis.xreadgroup("work", "alice", {s: ">"}, count=3)
    await redis.xdel(s, "2-0")
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.02, visibility_timeout_s=0.2) as worker:
        await settled(redis, names, "work")
    assert sorted(rec.ids()) == ["evt_v1", "evt_v3"]
    assert worker.counts["deleted"] == 1
    (_, fields), *rest = await redis.xrange(names.dlq("work"))
    record = DeadLetter.from_fields(fields)
    assert rest == []
    assert (record.entry_id, record.reason, record.stream) == ("2-0", "deleted_before_processing", s)


async def test_case_026_nogroup_after_the_stream_vanished(redis, names, caplog) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    s = names.stream("payment.succeeded")
    await ensure_groups(redis, names, [rec.consumer])
    await ensure_groups(redis, names, [rec.consumer])  # BUSYGROUP is success
    caplog.set_level(logging.WARNING, logger="hookbus.worker")
    async with running_worker(rec.consumer, redis, names, block_ms=200):
        await asyncio.sleep(0.3)
        await redis.delete(s)
        await redis.xadd(s, event(100).to_fields(), id="100-0")
        await redis.xadd(s, event(101).to_fields(), id="101-0")
        await wait_until(lambda: _async(len(rec.calls) >= 2), what="both events after NOGROUP")
        await settled(redis, names, "work")
        await asyncio.sleep(0.5)
    assert rec.ids() == ["evt_100", "evt_101"]
    nogroup_logs = [r for r in caplog.records if "NOGROUP" in r.getMessage()]
    assert 1 <= len(nogroup_logs) <= 5


async def _async(value: bool) -> bool:
    return value


async def test_case_029_idle_blocking_reads_are_not_an_outage(redis, names, valkey: Valkey, caplog) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    client = connect(valkey.url, socket_timeout_s=0.3 + 1)
    caplog.set_level(logging.WARNING)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            Worker(rec.consumer, connect(valkey.url, socket_timeout_s=0.3), names, block_ms=300)
        async with running_worker(rec.consumer, client, names, block_ms=300) as worker:
            await asyncio.sleep(2.0)
            beat = worker.heartbeat
            assert time.time() - beat < 1.0
    finally:
        await client.aclose()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("hookbus")] == []


async def test_case_030_worker_survives_a_redis_restart(redis, names, valkey: Valkey) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    await ensure_groups(redis, names, [rec.consumer])
    client = connect(valkey.url, socket_timeout_s=2)
    try:
        async with running_worker(rec.consumer, client, names, block_ms=500):
            await Publisher(redis, names).publish([event(1)])
            await wait_until(lambda: _async(len(rec.calls) == 1), what="the first event")
            valkey.stop()
            await asyncio.sleep(1.5)
            valkey.start()
            fresh = connect(valkey.url, socket_timeout_s=5)
            await Publisher(fresh, names).publish([event(3)])
            await wait_until(lambda: _async(len(rec.calls) == 2), timeout_s=15, what="the event after the restart")
            await fresh.aclose()
    finally:
        await client.aclose()
    assert rec.ids() == ["evt_1", "evt_3"]


async def test_case_030_worker_started_while_redis_is_down(redis, names, valkey: Valkey) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    valkey.stop()
    client = connect(valkey.url, socket_timeout_s=2)
    try:
        async with running_worker(rec.consumer, client, names, block_ms=500):
            await asyncio.sleep(1.0)  # the worker is up, retrying with backoff
            valkey.start()
            fresh = connect(valkey.url, socket_timeout_s=5)
            await wait_until(lambda: _groups_exist(fresh, names), timeout_s=10, what="groups created after start")
            up = time.monotonic()
            await Publisher(fresh, names).publish([event(1)])
            await wait_until(lambda: _async(len(rec.calls) == 1), timeout_s=10, what="the event")
            assert time.monotonic() - up < 5
            await fresh.aclose()
    finally:
        await client.aclose()


async def _groups_exist(redis, names) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(await redis.xinfo_groups(names.stream("payment.succeeded")))
    except Exception:
        return False


async def test_crashed_consumers_entries_are_reclaimed(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    s = names.stream("payment.succeeded")
    await ensure_groups(redis, names, [rec.consumer])
    await Publisher(redis, names).publish([event(1)])
    await redis.xreadgroup("work", "crashed-worker", {s: ">"})  # delivered, then the process died
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.05, visibility_timeout_s=0.5):
        await settled(redis, names, "work")
    assert [(c[0], c[1]) for c in rec.calls] == [("evt_1", 2)]


async def test_long_handler_extends_its_lease(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()

    async def slow(event: Event, ctx: Context) -> None:
        await asyncio.sleep(1.5)

    rec.behaviour = slow
    await ensure_groups(redis, names, [rec.consumer])
    options = {"claim_interval_s": 0.05, "visibility_timeout_s": 0.6}
    async with running_worker(rec.consumer, redis, names, consumer_name="a", **options):
        await Publisher(redis, names).publish([event(1)])
        await wait_until(lambda: _async(len(rec.calls) == 1), what="the first worker to start")
        async with running_worker(rec.consumer, redis, names, consumer_name="b", **options):
            await settled(redis, names, "work")
    assert len(rec.calls) == 1


async def test_idle_consumers_owning_nothing_are_removed(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    s = names.stream("payment.succeeded")
    await ensure_groups(redis, names, [rec.consumer])
    await redis.xreadgroup("work", "gone-idle", {s: ">"})  # read nothing: owns nothing
    await Publisher(redis, names).publish([event(1)])
    await redis.xreadgroup("work", "gone-with-work", {s: ">"})  # owns one pending entry
    await asyncio.sleep(0.3)
    options = {"housekeeping_interval_s": 0.05, "consumer_timeout_s": 0.2, "visibility_timeout_s": 30}
    async with running_worker(rec.consumer, redis, names, consumer_name="me", **options):

        async def gone() -> bool:
            names_left = {c["name"].decode() for c in await redis.xinfo_consumers(s, "work")}
            return "gone-idle" not in names_left

        await wait_until(gone, what="the idle consumer to be removed")
        left = {c["name"].decode() for c in await redis.xinfo_consumers(s, "work")}
    assert left == {"me", "gone-with-work"}  # never delete a consumer that still owns pending entries
    assert await pending_count(redis, s, "work") == 1


async def test_trimming_never_removes_entries_a_group_still_needs(redis, names) -> None:  # type: ignore[no-untyped-def]
    fast, slow = Recorder("fast"), Recorder("slow")
    s = names.stream("payment.succeeded")
    await ensure_groups(redis, names, [fast.consumer, slow.consumer])
    for n in range(5):
        await Publisher(redis, names).publish([event(n)])
    options = {"housekeeping_interval_s": 0.05, "retention_s": 0.001}
    async with running_worker(fast.consumer, redis, names, **options):
        await settled(redis, names, "fast")
        await asyncio.sleep(0.3)
        assert await redis.xlen(s) == 5  # "slow" has not read them yet
        async with running_worker(slow.consumer, redis, names, **options):
            await settled(redis, names, "slow")

            async def trimmed() -> bool:
                return await redis.xlen(s) <= 1  # the last delivered entry is kept as the groups' position

            await wait_until(trimmed, what="trimming once both groups are done")
    assert len(slow.calls) == 5


async def test_clean_shutdown_acks_finished_work_and_leaves_the_rest_pending(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    finished: list[str] = []

    async def timed(event: Event, ctx: Context) -> None:
        await asyncio.sleep(0.3 if event.data["n"] == "quick" else 5.0)
        finished.append(event.id)

    rec.behaviour = timed
    await ensure_groups(redis, names, [rec.consumer])
    await Publisher(redis, names).publish([event("quick")])
    await Publisher(redis, names).publish([event("slow")])
    worker = Worker(rec.consumer, redis, names, block_ms=200, grace_s=1.0)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: _async(len(rec.calls) == 2), what="both handlers to start")
    worker.stop()
    await asyncio.wait_for(task, timeout=5)
    s = names.stream("payment.succeeded")
    pending = await redis.xpending_range(s, "work", "-", "+", 10)
    assert finished == ["evt_quick"]
    assert len(pending) == 1  # the unfinished one stays pending, to be reclaimed
    assert worker.counts == worker.counts | {"acked": 1, "cancelled": 1}


async def test_not_ready_lets_a_cancellation_that_arrives_first_win(redis, names) -> None:  # type: ignore[no-untyped-def]
    """Out of order (cases 016/017): a cancellation before its booking is retried shortly, not failed."""
    state: dict[str, str] = {}
    consumer = Consumer("bookings", retry=FAST)

    @consumer.handler("booking.created")
    async def created(event: Event, ctx: Context) -> None:
        state.setdefault(event.subject or "", "confirmed")

    @consumer.handler("booking.cancelled")
    async def cancelled(event: Event, ctx: Context) -> None:
        if event.subject not in state:
            raise NotReady("booking not known yet", delay=0.2)
        state[event.subject or ""] = "cancelled"

    await ensure_groups(redis, names, [consumer])
    cancel = Event("evt_c", "test", "booking.cancelled", utc_now_rfc3339(), {}, subject="bk_1")
    create = Event("evt_a", "test", "booking.created", utc_now_rfc3339(), {}, subject="bk_1")
    async with running_worker(consumer, redis, names, claim_interval_s=0.02) as worker:
        await Publisher(redis, names).publish([cancel])
        await asyncio.sleep(0.3)
        await Publisher(redis, names).publish([create])
        await settled(redis, names, "bookings", "booking.cancelled")
        await settled(redis, names, "bookings", "booking.created")
    assert state == {"bk_1": "cancelled"}
    assert worker.counts["retry"] >= 1 and worker.counts["dead_lettered"] == 0


async def test_case_016_an_older_snapshot_does_not_overwrite_a_newer_one(redis, names) -> None:  # type: ignore[no-untyped-def]
    status: dict[str, str] = {}
    consumer = Consumer("subscriptions")

    @consumer.handler("subscription.changed")
    async def apply(event: Event, ctx: Context) -> None:
        if await ctx.is_current(event.subject or "", event.time):
            status[event.subject or ""] = event.data["status"]

    def snapshot(event_id: str, created: str, value: str) -> Event:
        return Event(event_id, "stripe", "subscription.changed", created, {"status": value}, subject="sub_hb_1")

    await ensure_groups(redis, names, [consumer])
    async with running_worker(consumer, redis, names, concurrency=1):
        await Publisher(redis, names).publish([snapshot("evt_B", "2026-01-01T00:00:01Z", "active")])
        await Publisher(redis, names).publish([snapshot("evt_A", "2026-01-01T00:00:00Z", "incomplete")])
        await settled(redis, names, "subscriptions", "subscription.changed")
    assert status == {"sub_hb_1": "active"}


async def test_steps_resume_after_the_last_completed_one(redis, names) -> None:  # type: ignore[no-untyped-def]
    calls: dict[str, int] = defaultdict(int)
    consumer = Consumer("booking-flow", retry=FAST)

    @consumer.handler("booking.created")
    async def flow(event: Event, ctx: Context) -> None:
        async def create_calendar_event() -> dict[str, str]:
            calls["calendar"] += 1
            return {"calendar_event_id": "hb123"}

        async def send_sms() -> str:
            calls["sms"] += 1
            if calls["sms"] == 1:
                raise RetryLater("Twilio 503", delay=0.1)
            return "SM1"

        created = await ctx.once("calendar", create_calendar_event)
        assert created == {"calendar_event_id": "hb123"}
        await ctx.once("sms", send_sms)

    await ensure_groups(redis, names, [consumer])
    async with running_worker(consumer, redis, names, claim_interval_s=0.02):
        await Publisher(redis, names).publish([Event("evt_s", "test", "booking.created", utc_now_rfc3339(), {})])
        await settled(redis, names, "booking-flow", "booking.created")
    assert dict(calls) == {"calendar": 1, "sms": 2}


async def test_undecodable_entries_are_dead_lettered_not_retried(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    s = names.stream("payment.succeeded")
    await ensure_groups(redis, names, [rec.consumer])
    await redis.xadd(s, {"event": b"{not json"})
    await redis.xadd(s, {"something": b"else"})
    async with running_worker(rec.consumer, redis, names):
        await settled(redis, names, "work")
    records = [DeadLetter.from_fields(f) for _, f in await redis.xrange(names.dlq("work"))]
    assert [r.error_type for r in records] == ["EnvelopeError", "EnvelopeError"]
    events = sorted(r.event for r in records)  # a batch is handled concurrently: any order
    assert events[0] == b'{"something":"else"}'  # the fields of an entry without an envelope, kept as JSON
    assert events[1] == b"{not json"
    assert rec.calls == []


async def test_a_retry_in_progress_is_not_claimed_again_by_another_worker(redis, names) -> None:  # type: ignore[no-untyped-def]
    """Once a due retry is claimed, its retry record must not make it look due to the other workers."""
    rec = Recorder(retry=RetryPolicy(base_s=0.1, factor=1, cap_s=0.1, jitter=0, max_attempts=10))

    async def fail_then_slow(event: Event, ctx: Context) -> None:
        if ctx.delivery_count == 1:
            raise RuntimeError("first delivery fails")
        await asyncio.sleep(1.0)  # a slow downstream call on the retry

    rec.behaviour = fail_then_slow
    await ensure_groups(redis, names, [rec.consumer])
    options = {"claim_interval_s": 0.05, "visibility_timeout_s": 30}
    async with running_worker(rec.consumer, redis, names, consumer_name="a", **options):
        async with running_worker(rec.consumer, redis, names, consumer_name="b", **options):
            await Publisher(redis, names).publish([event(1)])
            await asyncio.sleep(0.5)
            await settled(redis, names, "work")
    assert [c[1] for c in rec.calls] == [1, 2]


async def test_entries_waiting_for_a_slot_or_for_the_ack_keep_their_lease(redis, names) -> None:  # type: ignore[no-untyped-def]
    """A batch larger than the concurrency: the last entries wait longer than the visibility timeout to start."""
    rec = Recorder()

    async def slow(event: Event, ctx: Context) -> None:
        await asyncio.sleep(0.3)

    rec.behaviour = slow
    await ensure_groups(redis, names, [rec.consumer])
    for n in range(6):
        await Publisher(redis, names).publish([event(n)])
    options = {"batch_size": 6, "concurrency": 1, "claim_interval_s": 0.05, "visibility_timeout_s": 0.6}
    async with running_worker(rec.consumer, redis, names, **options) as worker:
        await settled(redis, names, "work")
    assert sorted(rec.ids()) == [f"evt_{n}" for n in range(6)]
    assert {c[1] for c in rec.calls} == {1}
    assert worker.counts["reclaimed"] == 0


async def test_a_retry_after_longer_than_the_visibility_timeout_is_honoured(redis, names) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()

    async def throttled(event: Event, ctx: Context) -> None:
        if ctx.delivery_count == 1:
            raise RetryLater("429", delay=1.5)

    rec.behaviour = throttled
    await ensure_groups(redis, names, [rec.consumer])
    async with running_worker(rec.consumer, redis, names, claim_interval_s=0.05, visibility_timeout_s=0.5):
        await Publisher(redis, names).publish([event(1)])
        await settled(redis, names, "work")
    assert [c[1] for c in rec.calls] == [1, 2]
    assert rec.calls[1][2] - rec.calls[0][2] >= 1.5
