"""The hot paths' building blocks (bus/wire.py, the coalescing publisher, the worker's batched acks) on a real Valkey,
and the hand-written encoders checked against the library code they replace."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import string
import time
import uuid

import pytest
from redis.exceptions import ResponseError

from bus import Consumer, Context, Event, Publisher
from bus import trace as traces
from bus.envelope import rfc3339, utc_now_rfc3339
from bus.groups import ensure_groups
from bus.naming import _IDEMPOTENCY_NAMESPACE, idempotency_key
from bus.wire import ScriptCalls, exchange, pack
from bus.worker import Delivery, parse_read

from .support import running_worker, wait_until

pytestmark = pytest.mark.anyio


def event(n: int, event_type: str = "payment.succeeded") -> Event:
    return Event(id=f"evt_{n}", source="test", type=event_type, time=utc_now_rfc3339(), data={"n": n})


# -- pure functions ----------------------------------------------------------------------------------------------


def test_idempotency_key_is_uuid5_of_the_joined_parts() -> None:
    rng = random.Random(5)
    alphabet = string.printable + "éß中😀"
    for _ in range(2000):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(3, 6))]
        assert idempotency_key(*parts) == str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, "\x1f".join(parts)))


def test_utc_now_matches_the_datetime_formatting() -> None:
    before = rfc3339(dt.datetime.now(dt.UTC))
    now = utc_now_rfc3339()
    after = rfc3339(dt.datetime.now(dt.UTC))
    assert before <= now <= after
    assert len(now) == len("2026-01-01T00:00:00.000Z") and now.endswith("Z")


def test_pack_encodes_resp_bulk_strings() -> None:
    assert pack([["SET", "k", b"v\r\n", 12], ["PING"]]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\n12\r\n*1\r\n$4\r\nPING\r\n"
    )
    assert pack([["ECHO", "é"]]) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        pack([["SET", "k", None]])  # type: ignore[list-item]


def test_parse_read_takes_resp2_and_resp3_shapes() -> None:
    entries = [[b"1-0", [b"event", b"{}"]], [b"1-1", [b"event", b"[]", b"extra", b"x"]]]
    expected = [
        Delivery("s", "1-0", {b"event": b"{}"}, 1),
        Delivery("s", "1-1", {b"event": b"[]", b"extra": b"x"}, 1),
    ]
    assert parse_read([[b"s", entries]]) == expected
    assert parse_read({b"s": entries}) == expected
    assert parse_read(None) == [] and parse_read({}) == []


def test_event_decoding_keeps_its_checks() -> None:
    good = event(1)
    assert Event.from_json(good.to_json()) == good
    with pytest.raises(Exception, match="non-empty strings"):
        Event.from_json(good.to_json().replace(b'"id":"evt_1"', b'"id":""'))
    with pytest.raises(Exception, match="lacks required attribute 'source'"):
        Event.from_json(good.to_json().replace(b'"source":"test",', b""))


# -- wire and the coalescing publisher ---------------------------------------------------------------------------


async def test_exchange_returns_error_replies_as_values(redis) -> None:  # type: ignore[no-untyped-def]
    await redis.set("str", "x")
    ok, error, after = await exchange(redis, [["SET", "a", 1], ["LPUSH", "str", "y"], ["GET", "a"]])
    assert ok in (b"OK", "OK", True) and isinstance(error, ResponseError) and after == b"1"


async def test_concurrent_publishes_each_get_their_own_result(redis, names) -> None:  # type: ignore[no-untyped-def]
    publisher = Publisher(redis, names)
    events = [event(n) for n in range(200)]
    results = await asyncio.gather(*(publisher.publish([e], dedupe_id=("test", e.id)) for e in events))
    assert not any(r.duplicate for r in results)
    entries = await redis.xrange(names.stream("payment.succeeded"))
    by_id = {entry_id.decode(): Event.from_fields(fields).id for entry_id, fields in entries}
    assert [by_id[r.entry_ids[0]] for r in results] == [e.id for e in events]  # each caller got its own entry


async def test_concurrent_duplicates_publish_once(redis, names) -> None:  # type: ignore[no-untyped-def]
    publisher = Publisher(redis, names)
    results = await asyncio.gather(*(publisher.publish([event(7)], dedupe_id=("test", "evt_7")) for _ in range(50)))
    assert sum(not r.duplicate for r in results) == 1
    assert {r.entry_ids for r in results} == {results[0].entry_ids}
    assert await redis.xlen(names.stream("payment.succeeded")) == 1


async def test_a_failed_xadd_fails_only_its_delivery(redis, names) -> None:  # type: ignore[no-untyped-def]
    await redis.set(names.stream("broken"), "not a stream")
    publisher = Publisher(redis, names)
    good, bad = event(1), event(2, "broken")
    results = await asyncio.gather(
        *(publisher.publish([e], dedupe_id=("test", e.id)) for e in (event(0), good, bad)), return_exceptions=True
    )
    assert not results[0].duplicate and not results[1].duplicate  # type: ignore[union-attr]
    assert isinstance(results[2], ResponseError) and "WRONGTYPE" in str(results[2])
    assert not await redis.exists(names.dedupe("test", bad.id))  # no dedupe key for what was not published
    assert (await publisher.publish([good], dedupe_id=("test", good.id))).duplicate


async def test_publish_reloads_the_script_after_a_script_flush(redis, names) -> None:  # type: ignore[no-untyped-def]
    publisher = Publisher(redis, names)
    await publisher.publish([event(1)])
    await redis.script_flush()
    assert not (await asyncio.gather(*(publisher.publish([event(n)]) for n in range(2, 12))))[0].duplicate
    await redis.script_flush()
    results = await publisher.publish_many([([event(20)], ("test", "evt_20")), ([event(20)], ("test", "evt_20"))])
    assert [r.duplicate for r in results] == [False, True]
    assert await redis.xlen(names.stream("payment.succeeded")) == 12


async def test_publisher_survives_its_kept_connections_being_killed(redis, names) -> None:  # type: ignore[no-untyped-def]
    # The publisher keeps its connections out of the pool; when the server drops them (a restart, CLIENT KILL) the
    # next publish still succeeds, on a fresh connection, and publishes once.
    publisher = Publisher(redis, names)
    await asyncio.gather(*(publisher.publish([event(n)]) for n in range(5)))  # a few kept connections
    await redis.client_kill_filter(_type="normal", skipme=True)
    result = await publisher.publish([event(99)])
    assert not result.duplicate and await redis.xlen(names.stream("payment.succeeded")) == 6


async def test_script_errors_reach_only_their_caller(redis) -> None:  # type: ignore[no-untyped-def]
    script = """
    local out = {}
    for i, a in ipairs(ARGV) do out[i] = a == 'bad' and redis.error_reply('nope') or a end
    return out
    """
    calls = ScriptCalls(redis, script)
    first = asyncio.ensure_future(calls([], ["a"]))  # alone
    rest = [asyncio.ensure_future(calls([], [arg])) for arg in ("b", "bad", "c")]  # one script call behind it
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[0] == b"a" and results[1] == b"b" and results[3] == b"c"
    assert isinstance(results[2], ResponseError) and "nope" in str(results[2])
    with pytest.raises(ResponseError, match="nope"):
        await calls([], ["bad"])


async def test_a_cancelled_caller_does_not_disturb_the_others(redis) -> None:  # type: ignore[no-untyped-def]
    calls = ScriptCalls(redis, "return ARGV")  # one reply per call: each call's single argument
    first = asyncio.ensure_future(calls([], ["1"]))  # goes out alone
    waiting = [asyncio.ensure_future(calls([], [str(n)])) for n in range(2, 6)]  # queued behind it
    await asyncio.sleep(0)
    waiting[0].cancel()
    assert await first == b"1"
    assert await asyncio.gather(*waiting[1:]) == [b"3", b"4", b"5"]


# -- the worker's acks -------------------------------------------------------------------------------------------


async def test_a_batch_is_acked_with_one_trace_record_per_event(redis, names) -> None:  # type: ignore[no-untyped-def]
    consumer = Consumer("fast")
    seen: list[str] = []

    @consumer.handler("payment.succeeded")
    async def handle(event: Event, ctx: Context) -> None:
        seen.append(ctx.idempotency_key)
        ctx.note(n=event.data["n"])

    publisher = Publisher(redis, names)
    await ensure_groups(redis, names, [consumer])
    async with running_worker(consumer, redis, names):
        await publisher.publish_many([([event(n)], None) for n in range(250)])  # more than one batch

        async def settled() -> bool:
            info = {g["name"].decode(): g for g in await redis.xinfo_groups(names.stream("payment.succeeded"))}
            return info["fast"]["pending"] == 0 and info["fast"]["lag"] == 0

        await wait_until(settled, what="every entry acked")
    assert len(seen) == 250 and seen[0] == idempotency_key("fast", "test", "evt_0")
    story = await traces.read(redis, names, "evt_42", "test")
    steps = story["test"]
    assert [s["step"] for s in steps] == ["published", "acked"]
    assert steps[1]["group"] == "fast" and steps[1]["notes"] == {"n": "42"} and steps[1]["attempt"] == 1
    assert 0 < await redis.ttl(names.trace("test", "evt_42")) <= 7 * 24 * 3600
    assert await redis.hlen(names.retry("fast")) == 0


async def test_an_acked_record_without_notes_is_the_same_json(redis, names) -> None:  # type: ignore[no-untyped-def]
    # Records without notes come from a pre-encoded template: names needing JSON escapes or holding a '%' must
    # still give the record trace.record would.
    consumer = Consumer('odd"%d%s\\name')

    @consumer.handler("payment.succeeded")
    async def handle(event: Event, ctx: Context) -> None:
        return None

    await ensure_groups(redis, names, [consumer])
    async with running_worker(consumer, redis, names, consumer_name='worker "%s" 1'):
        before_ms = int(time.time() * 1000)
        await Publisher(redis, names).publish_many([([event(n)], None) for n in range(3)])

        async def acked() -> bool:
            return len((await traces.read(redis, names, "evt_2", "test"))["test"]) == 2

        await wait_until(acked, what="the acked record")
    published, record = (await traces.read(redis, names, "evt_2", "test"))["test"]
    assert published["step"] == "published" and before_ms <= published["at"] <= record["at"]
    assert set(record) == {"at", "step", "group", "consumer", "attempt", "duration_s"}
    assert record["step"] == "acked" and record["attempt"] == 1
    assert record["group"] == 'odd"%d%s\\name' and record["consumer"] == 'worker "%s" 1'
    assert before_ms <= record["at"] <= int(time.time() * 1000)
    assert isinstance(record["duration_s"], float) and 0 <= record["duration_s"] < 1


async def test_slow_batches_are_read_only_one_ahead(redis, names) -> None:  # type: ignore[no-untyped-def]
    # Read-ahead keeps entries leased by this worker; with slow handlers that would starve other workers, so only
    # one batch waits behind the one being handled.
    consumer = Consumer("slow")
    handled: set[bytes] = set()

    @consumer.handler("payment.succeeded")
    async def handle(event: Event, ctx: Context) -> None:
        await asyncio.sleep(0.05)
        handled.add(ctx.entry_id.encode())

    await ensure_groups(redis, names, [consumer])
    await Publisher(redis, names).publish_many([([event(n)], None) for n in range(60)])
    waiting: list[int] = []  # entries delivered to the worker whose handler has not finished
    async with running_worker(consumer, redis, names, batch_size=5, concurrency=5, read_ahead=3):
        while len(handled) < 40:
            pending = await redis.xpending_range(names.stream("payment.succeeded"), "slow", "-", "+", 100)
            waiting.append(len({p["message_id"] for p in pending} - handled))
            await asyncio.sleep(0.01)
    assert max(waiting) <= 10  # the batch in hand and one read ahead (5 entries each), not three ahead (20)
    assert max(waiting) > 5  # it does read ahead


async def test_stopping_acks_what_finished(redis, names) -> None:  # type: ignore[no-untyped-def]
    consumer = Consumer("stopping")
    started = asyncio.Event()

    @consumer.handler("payment.succeeded")
    async def handle(event: Event, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.2)

    await ensure_groups(redis, names, [consumer])
    await Publisher(redis, names).publish_many([([event(n)], None) for n in range(30)])
    async with running_worker(consumer, redis, names, concurrency=30, block_ms=2000):
        await asyncio.wait_for(started.wait(), timeout=10)
    # stop() came while the batch ran: it finished within the grace period and its acks went out on the way out
    pending = await redis.xpending(names.stream("payment.succeeded"), "stopping")
    assert pending["pending"] == 0
