"""Operator commands of "delivery guarantees" on a real Valkey: ``hookbus dlq list|show|replay|purge`` and
``hookbus replay GROUP --from TIME|ID``.

Two small consumers read ``payment.succeeded``: ``billing`` (dead-letters with a PermanentError while ``FAULT`` says
so, records what it handled otherwise) and ``audit`` (always succeeds and records). Replays must reach ``billing``
only; ``audit``, which already handled the events, must not see them again.

The CLI runs through click's CliRunner in a worker thread (each command calls ``asyncio.run``), while the workers keep
running in the test's event loop; one test runs ``python -m bus`` as a real subprocess.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass

import anyio
import click
import orjson
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner, Result

from bus.cli import main
from bus.cli_dlq import parse_duration, parse_start
from bus.consumer import Consumer, Context
from bus.deadletter import DeadLetter
from bus.dlq import position_before
from bus.envelope import Event, utc_now_rfc3339
from bus.errors import PermanentError
from bus.groups import ensure_groups
from bus.naming import Names
from bus.publisher import Publisher
from bus.retention import parse_id
from bus.retry import RetryPolicy

from .conftest import PYTHON
from .support import running_worker, wait_until

MAX_SEQ = 2**64 - 1
PAYMENT = "payment.succeeded"
REFUND = "payment.refunded"
UNREACHABLE = "redis://127.0.0.1:1/0"
SETTLE_S = 0.6  # several XREADGROUP BLOCK (200 ms) and reclaim (100 ms) rounds: time for an unwanted delivery


# -- test consumers ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handled:
    event_id: str
    stream: str
    entry_id: str


FAULT = {"billing": False}
HANDLED: dict[str, list[Handled]] = {"billing": [], "audit": []}

billing = Consumer("billing")
audit = Consumer("audit")


@billing.handler(PAYMENT)
async def bill(event: Event, ctx: Context) -> None:
    if FAULT["billing"]:
        raise PermanentError("bad customer")
    HANDLED["billing"].append(Handled(event.id, ctx.stream, ctx.entry_id))


@billing.handler(REFUND, retry=RetryPolicy(base_s=0.05, factor=1.0, cap_s=0.05, jitter=0.0, max_attempts=3))
async def refund(event: Event, ctx: Context) -> None:
    raise RuntimeError("ledger timeout")  # transient every time: dead-lettered after 3 attempts


@audit.handler(PAYMENT)
async def record(event: Event, ctx: Context) -> None:
    HANDLED["audit"].append(Handled(event.id, ctx.stream, ctx.entry_id))


def count(group: str, event_id: str) -> int:
    return sum(1 for h in HANDLED[group] if h.event_id == event_id)


@pytest.fixture(autouse=True)
def _reset_consumers() -> None:
    FAULT["billing"] = False
    for handled in HANDLED.values():
        handled.clear()


# -- helpers -----------------------------------------------------------------------------------------------------


def event(event_id: str, event_type: str = PAYMENT) -> Event:
    return Event(
        id=event_id,
        source="stripe",
        type=event_type,
        time=utc_now_rfc3339(),
        data={"amount": 1999, "currency": "usd"},
        subject=f"pi_{event_id}",
    )


async def publish(redis: aioredis.Redis, names: Names, *events: Event) -> list[str]:
    return list((await Publisher(redis, names).publish(list(events))).entry_ids)


async def prepare(redis: aioredis.Redis, names: Names) -> None:
    """Both groups exist before the first publish (they start at ``$``)."""
    await ensure_groups(redis, names, [billing, audit])


def invoke(url: str, args: list[str], input: str | None = None) -> Result:
    env = {"REDIS_URL": url, "HOOKBUS_KEY_PREFIX": "hookbus"}
    return CliRunner().invoke(main, args, env=env, input=input)


async def hookbus(url: str, *args: str, input: str | None = None) -> Result:
    """Run ``hookbus ARGS`` in a thread: the command runs its own event loop, the workers keep running in ours."""
    return await anyio.to_thread.run_sync(functools.partial(invoke, url, list(args), input))


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def failed(result: Result, code: int) -> str:
    """The output of a command that failed cleanly: ``code``, click's own exit (no uncaught exception)."""
    assert result.exit_code == code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.output


async def dead_letters(redis: aioredis.Redis, names: Names, group: str) -> list[tuple[str, DeadLetter]]:
    return [(i.decode(), DeadLetter.from_fields(f)) for i, f in await redis.xrange(names.dlq(group))]


async def wait_dlq(redis: aioredis.Redis, names: Names, group: str, length: int) -> None:
    async def check() -> bool:
        return await redis.xlen(names.dlq(group)) == length

    await wait_until(check, what=f"{length} dead letters in {group}")


async def wait_handled(group: str, total: int) -> None:
    async def check() -> bool:
        return len(HANDLED[group]) >= total

    await wait_until(check, what=f"{group} to handle {total} deliveries")


async def group_info(redis: aioredis.Redis, stream: str, group: str) -> dict:  # type: ignore[type-arg]
    for info in await redis.xinfo_groups(stream):
        if info["name"].decode() == group:
            return info
    raise AssertionError(f"no group {group} on {stream}")


def when(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def now_ms() -> int:
    return int(time.time() * 1000)


async def dead_letter_payments(redis: aioredis.Redis, names: Names, *event_ids: str) -> list[str]:
    """Publish ``event_ids`` while billing fails permanently; returns their dead-letter ids in the same order (a batch
    is handled concurrently, so the dead-letter stream's order may differ). Audit handles them all."""
    FAULT["billing"] = True
    before = await redis.xlen(names.dlq("billing"))
    audited = len(HANDLED["audit"])
    await publish(redis, names, *(event(i) for i in event_ids))
    await wait_dlq(redis, names, "billing", before + len(event_ids))
    await wait_handled("audit", audited + len(event_ids))
    by_event = {Event.from_json(d.event).id: i for i, d in await dead_letters(redis, names, "billing") if d.event}
    return [by_event[e] for e in event_ids]


# -- unit: argument parsing and positions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("12h", 43_200),
        ("1h", 3600),
        ("7d", 604_800),
        ("2w", 1_209_600),
        ("1.5h", 5400),
        ("0s", 0),
        (" 1h ", 3600),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "1 h", "1H", "1h30m", "one hour", ".5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(click.BadParameter, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [
        ("1767225600000-0", "1767225600000-0"),
        ("1767225600000-7", "1767225600000-7"),
        ("1767225600000", "1767225600000"),
        ("0", "0"),
        ("2026-01-01T00:00:00Z", "1767225600000-0"),
        ("2026-01-01T00:00:00+00:00", "1767225600000-0"),
        ("2026-01-01T01:00:00+01:00", "1767225600000-0"),
        ("2025-12-31T19:00:00-05:00", "1767225600000-0"),
        ("2026-01-01T00:00:00.250Z", "1767225600250-0"),
        ("2026-01-01T00:00:00.123456Z", "1767225600123-0"),
    ],
)
def test_parse_start(text: str, entry_id: str) -> None:
    assert parse_start(text) == entry_id


def test_parse_start_is_exact_to_the_millisecond() -> None:
    base = 1_767_225_600_000
    for ms in range(base, base + 2000, 7):
        text = when(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert parse_start(text) == f"{ms}-0", text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "neither an entry id nor an RFC 3339 time"),
        ("", "neither an entry id nor an RFC 3339 time"),
        ("1767225600000-", "neither an entry id nor an RFC 3339 time"),
        ("1-2-3", "neither an entry id nor an RFC 3339 time"),
        ("2026-13-01T00:00:00Z", "neither an entry id nor an RFC 3339 time"),
        ("2026-01-01T00:00:00", "needs an offset"),
        ("2026-01-01", "needs an offset"),
    ],
)
def test_parse_start_rejects(text: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        parse_start(text)


@pytest.mark.parametrize(
    ("start", "position"),
    [
        ("5-0", (4, MAX_SEQ)),
        ("5-3", (5, 2)),
        ("5-1", (5, 0)),
        ("0-0", (0, 0)),
        ("0-1", (0, 0)),
        ("0-5", (0, 4)),
        ("0", (0, 0)),
        ("5", (4, MAX_SEQ)),
        ("1767225600000-0", (1_767_225_599_999, MAX_SEQ)),
        ("1767225600000-12", (1_767_225_600_000, 11)),
    ],
)
def test_position_before(start: str, position: tuple[int, int]) -> None:
    assert position_before(start) == position


@pytest.mark.parametrize("start", ["5-0", "5-3", "1767225600000-0", "1767225600000-12", "0-1"])
def test_position_before_is_the_previous_id(start: str) -> None:
    """Nothing fits between the position and ``start``: the next read returns ``start`` itself first."""
    ms, seq = position_before(start)
    following = (ms, seq + 1) if seq < MAX_SEQ else (ms + 1, 0)
    assert following == parse_id(start)


# -- dead-lettering and inspection -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_permanent_failure_is_dead_lettered_and_listed(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    original = event("evt_dead_1")
    started = now_ms()
    async with running_worker(billing, redis, names) as billing_worker, running_worker(audit, redis, names):
        FAULT["billing"] = True
        [entry_id] = await publish(redis, names, original)
        await wait_dlq(redis, names, "billing", 1)
        await wait_handled("audit", 1)
    finished = now_ms()

    [(dlq_id, dead)] = await dead_letters(redis, names, "billing")
    assert dead.event == original.to_json()
    assert Event.from_json(dead.event) == original
    assert dead.stream == names.stream(PAYMENT)
    assert dead.entry_id == entry_id
    assert dead.group == "billing"
    assert dead.consumer == billing_worker.name
    assert dead.error_type == "PermanentError"
    assert dead.reason == "bad customer"
    assert dead.attempts == 1
    assert started <= dead.first_failure_ms <= dead.last_failure_ms <= finished
    # Dead-lettered atomically with its ack: nothing left pending, no retry record.
    assert (await group_info(redis, names.stream(PAYMENT), "billing"))["pending"] == 0
    assert not await redis.exists(names.retry("billing"))
    assert HANDLED["billing"] == []
    assert count("audit", "evt_dead_1") == 1

    # Another group's dead letter, so that `dlq list` without a group has two to show.
    other = DeadLetter(
        event=event("evt_crm_1", "lead.created").to_json(),
        stream=names.stream("lead.created"),
        entry_id="1767225600000-0",
        group="crm",
        consumer="host-1",
        error_type="PermanentError",
        reason="no such pipeline",
        attempts=1,
        first_failure_ms=started,
        last_failure_ms=started,
    )
    crm_id = (await redis.xadd(names.dlq("crm"), other.to_fields())).decode()  # type: ignore[arg-type]

    listed = ok(await hookbus(valkey.url, "dlq", "list", "billing"))
    [line] = listed.splitlines()
    assert line.startswith(f"{dlq_id}  billing  ")
    assert "event=evt_dead_1" in line
    assert "attempts=1" in line
    assert line.endswith("PermanentError: bad customer")
    assert "crm" not in listed

    everything = ok(await hookbus(valkey.url, "dlq", "list")).splitlines()
    assert len(everything) == 2
    assert any(row.startswith(f"{dlq_id}  billing  ") and "event=evt_dead_1" in row for row in everything)
    assert any(
        row.startswith(f"{crm_id}  crm  ") and "event=evt_crm_1" in row and row.endswith("no such pipeline")
        for row in everything
    )

    shown = orjson.loads(ok(await hookbus(valkey.url, "dlq", "show", dlq_id)))
    assert shown["dlq_id"] == dlq_id
    assert shown["event"] == orjson.loads(original.to_json())
    assert shown["group"] == "billing"
    assert shown["stream"] == names.stream(PAYMENT)
    assert shown["entry_id"] == entry_id
    assert shown["consumer"] == billing_worker.name
    assert shown["error_type"] == "PermanentError"
    assert shown["reason"] == "bad customer"
    assert shown["attempts"] == 1
    for key, ms in (("first_failure", dead.first_failure_ms), ("last_failure", dead.last_failure_ms)):
        assert shown[key].endswith("Z")
        moment = dt.datetime.fromisoformat(shown[key].replace("Z", "+00:00"))
        assert abs((moment - when(ms)).total_seconds()) < 1

    assert orjson.loads(ok(await hookbus(valkey.url, "dlq", "show", crm_id)))["group"] == "crm"
    # Inspecting changes nothing.
    assert await redis.xlen(names.dlq("billing")) == 1


@pytest.mark.anyio
async def test_exhausted_retries_record_attempts_and_failure_times(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    async with running_worker(billing, redis, names):
        [entry_id] = await publish(redis, names, event("evt_refund_1", REFUND))
        await wait_dlq(redis, names, "billing", 1)

    [(dlq_id, dead)] = await dead_letters(redis, names, "billing")
    assert dead.entry_id == entry_id
    assert dead.stream == names.stream(REFUND)
    assert dead.error_type == "RuntimeError"
    assert dead.reason == "ledger timeout"
    assert dead.attempts == 3
    assert dead.first_failure_ms < dead.last_failure_ms  # the first failure is kept across retries
    assert (await group_info(redis, names.stream(REFUND), "billing"))["pending"] == 0

    line = ok(await hookbus(valkey.url, "dlq", "list", "billing")).strip()
    assert line.startswith(f"{dlq_id}  billing  ")
    assert "event=evt_refund_1  attempts=3  RuntimeError: ledger timeout" in line


@pytest.mark.anyio
async def test_empty_and_unknown(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    assert ok(await hookbus(valkey.url, "dlq", "list")).strip() == "no dead letters"
    assert ok(await hookbus(valkey.url, "dlq", "list", "billing")).strip() == "no dead letters"
    assert "no dead-letter entry 1-0" in failed(await hookbus(valkey.url, "dlq", "show", "1-0"), 1)


# -- dlq replay --------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_replay_one_entry_reaches_its_group_only(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        [dlq_id, kept_id] = await dead_letter_payments(redis, names, "evt_replay_1", "evt_replay_2")
        audit_position = (await group_info(redis, names.stream(PAYMENT), "audit"))["last-delivered-id"]
        original = dict(await dead_letters(redis, names, "billing"))[dlq_id].event

        FAULT["billing"] = False  # the operator fixed the customer record
        assert ok(await hookbus(valkey.url, "dlq", "replay", "billing", dlq_id)).strip() == (
            "replayed 1 entry to billing"
        )
        await wait_handled("billing", 1)
        await anyio.sleep(SETTLE_S)

        assert count("billing", "evt_replay_1") == 1
        assert count("billing", "evt_replay_2") == 0  # not asked for: stays dead
        [handled] = HANDLED["billing"]
        assert handled.stream == names.replay("billing")
        # Audit had handled both events once and sees neither again.
        assert count("audit", "evt_replay_1") == 1
        assert count("audit", "evt_replay_2") == 1
        assert len(HANDLED["audit"]) == 2
        assert (await group_info(redis, names.stream(PAYMENT), "audit"))["last-delivered-id"] == audit_position
        assert [i["name"] for i in await redis.xinfo_groups(names.replay("billing"))] == [b"billing"]
        assert await redis.xlen(names.replay("audit")) == 0

        # The replayed entry carries the original envelope and where it came from; billing acked it.
        [(replay_entry, fields)] = await redis.xrange(names.replay("billing"))
        assert replay_entry.decode() == handled.entry_id
        assert fields[b"event"] == original
        assert fields[b"replay_of"].decode() == dlq_id
        assert fields[b"original_stream"].decode() == names.stream(PAYMENT)
        assert (await group_info(redis, names.replay("billing"), "billing"))["pending"] == 0

        # The dead-letter stream no longer holds it, and keeps the other one.
        assert [i for i, _ in await dead_letters(redis, names, "billing")] == [kept_id]
        listed = ok(await hookbus(valkey.url, "dlq", "list", "billing"))
        assert dlq_id not in listed and kept_id in listed

        # Replaying it a second time is refused: it is gone.
        again = failed(await hookbus(valkey.url, "dlq", "replay", "billing", dlq_id), 1)
        assert "replayed 0 entries to billing" in again
        assert f"not replayed (no such entry, or no event to replay): {dlq_id}" in again
        await anyio.sleep(SETTLE_S)
        assert count("billing", "evt_replay_1") == 1


@pytest.mark.anyio
async def test_replay_all(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    ids = ["evt_all_1", "evt_all_2", "evt_all_3"]
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        await dead_letter_payments(redis, names, *ids)
        FAULT["billing"] = False
        assert ok(await hookbus(valkey.url, "dlq", "replay", "billing", "--all")).strip() == (
            "replayed 3 entries to billing"
        )
        await wait_handled("billing", 3)
        await anyio.sleep(SETTLE_S)
        assert [count("billing", i) for i in ids] == [1, 1, 1]
        assert [count("audit", i) for i in ids] == [1, 1, 1]
        assert len(HANDLED["audit"]) == 3
        assert all(h.stream == names.replay("billing") for h in HANDLED["billing"])
        assert await redis.xlen(names.dlq("billing")) == 0
        assert ok(await hookbus(valkey.url, "dlq", "list")).strip() == "no dead letters"

        # Nothing left: --all replays nothing and succeeds.
        assert ok(await hookbus(valkey.url, "dlq", "replay", "billing", "--all")).strip() == (
            "replayed 0 entries to billing"
        )


@pytest.mark.anyio
async def test_replay_that_fails_again_goes_back_to_the_dead_letter_stream(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        [dlq_id] = await dead_letter_payments(redis, names, "evt_again_1")
        # The fault is still there: the replay is dead-lettered again, not lost.
        ok(await hookbus(valkey.url, "dlq", "replay", "billing", dlq_id))

        async def redead() -> bool:
            rows = await dead_letters(redis, names, "billing")
            return len(rows) == 1 and rows[0][0] != dlq_id

        await wait_until(redead, what="the replay to be dead-lettered again")
        [(_, dead)] = await dead_letters(redis, names, "billing")
        assert dead.stream == names.replay("billing")
        assert Event.from_json(dead.event).id == "evt_again_1"
        assert dead.reason == "bad customer"
        assert count("audit", "evt_again_1") == 1


@pytest.mark.anyio
async def test_replay_unknown_id_and_usage_errors(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        [dlq_id] = await dead_letter_payments(redis, names, "evt_unknown_1")

    out = failed(await hookbus(valkey.url, "dlq", "replay", "billing", "1-1"), 1)
    assert "not replayed (no such entry, or no event to replay): 1-1" in out
    # A known id together with an unknown one: the known one is replayed, the unknown one reported.
    out = failed(await hookbus(valkey.url, "dlq", "replay", "billing", dlq_id, "2-2"), 1)
    assert "replayed 1 entry to billing" in out
    assert "not replayed (no such entry, or no event to replay): 2-2" in out
    assert await redis.xlen(names.dlq("billing")) == 0
    assert await redis.xlen(names.replay("billing")) == 1
    # An id of another group's dead-letter stream is not replayed to this one.
    await redis.xadd(names.dlq("crm"), {"event": b"{}"}, id="3-3")
    out = failed(await hookbus(valkey.url, "dlq", "replay", "billing", "3-3"), 1)
    assert "not replayed" in out
    assert await redis.xlen(names.dlq("crm")) == 1

    assert "give dead-letter entry ids or --all" in failed(await hookbus(valkey.url, "dlq", "replay", "billing"), 2)
    both = await hookbus(valkey.url, "dlq", "replay", "billing", "--all", "4-4")
    assert "give dead-letter entry ids or --all" in failed(both, 2)
    assert "Missing argument 'GROUP'" in failed(await hookbus(valkey.url, "dlq", "replay"), 2)


@pytest.mark.anyio
async def test_deleted_before_processing_records_cannot_be_replayed(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    record = DeadLetter(
        event=b"",
        stream=names.stream(PAYMENT),
        entry_id="1767225600000-0",
        group="billing",
        consumer="host-1",
        error_type="EntryDeleted",
        reason="deleted_before_processing",
        attempts=0,
        first_failure_ms=now_ms(),
        last_failure_ms=now_ms(),
    )
    dlq_id = (await redis.xadd(names.dlq("billing"), record.to_fields())).decode()  # type: ignore[arg-type]
    assert "event=-" in ok(await hookbus(valkey.url, "dlq", "list", "billing"))
    assert orjson.loads(ok(await hookbus(valkey.url, "dlq", "show", dlq_id)))["event"] is None
    out = failed(await hookbus(valkey.url, "dlq", "replay", "billing", dlq_id), 1)
    assert f"not replayed (no such entry, or no event to replay): {dlq_id}" in out
    assert await redis.xlen(names.dlq("billing")) == 1  # kept, not lost
    assert ok(await hookbus(valkey.url, "dlq", "replay", "billing", "--all")).strip() == "replayed 0 entries to billing"
    assert await redis.xlen(names.dlq("billing")) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("args", [("dlq", "replay", "billing", "not-an-id"), ("dlq", "show", "not-an-id")])
async def test_malformed_dead_letter_id_is_a_clean_error(valkey, redis, names, args) -> None:  # type: ignore[no-untyped-def]
    await redis.xadd(names.dlq("billing"), {"event": b"{}"}, id="1-1")
    result = await hookbus(valkey.url, *args)
    assert result.exit_code in (1, 2)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "not-an-id" in result.output


# -- dlq purge ---------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_purge_older_than_keeps_recent_then_purge_all(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    two_hours_ago = now_ms() - 2 * 3600 * 1000
    old = DeadLetter(
        event=event("evt_purge_old").to_json(),
        stream=names.stream(PAYMENT),
        entry_id=f"{two_hours_ago}-0",
        group="billing",
        consumer="host-1",
        error_type="PermanentError",
        reason="bad customer",
        attempts=1,
        first_failure_ms=two_hours_ago,
        last_failure_ms=two_hours_ago,
    )
    old_id = (await redis.xadd(names.dlq("billing"), old.to_fields(), id=f"{two_hours_ago}-0")).decode()  # type: ignore[arg-type]
    await redis.xadd(names.dlq("crm"), old.to_fields(), id=f"{two_hours_ago}-0")  # type: ignore[arg-type]
    await prepare(redis, names)
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        recent = await dead_letter_payments(redis, names, "evt_purge_1", "evt_purge_2")
    assert await redis.xlen(names.dlq("billing")) == 3

    # Without --yes the command asks; answering no deletes nothing.
    declined = await hookbus(valkey.url, "dlq", "purge", "billing", input="n\n")
    assert declined.exit_code == 1
    assert "Delete all dead letters of billing?" in declined.output
    assert "Aborted" in declined.output
    assert await redis.xlen(names.dlq("billing")) == 3

    assert "not a duration" in failed(await hookbus(valkey.url, "dlq", "purge", "billing", "--older-than", "1y"), 2)
    assert await redis.xlen(names.dlq("billing")) == 3

    out = ok(await hookbus(valkey.url, "dlq", "purge", "billing", "--older-than", "1h", "--yes"))
    assert out.strip() == "deleted 1 dead letters of billing older than 1h"
    remaining = [i for i, _ in await dead_letters(redis, names, "billing")]
    assert sorted(remaining) == sorted(recent)
    assert old_id not in remaining
    assert await redis.xlen(names.dlq("crm")) == 1  # other groups untouched

    out = ok(await hookbus(valkey.url, "dlq", "purge", "billing", "--older-than", "1h", "--yes"))
    assert out.strip() == "deleted 0 dead letters of billing older than 1h"

    out = ok(await hookbus(valkey.url, "dlq", "purge", "billing", "--yes"))
    assert out.strip() == "deleted 2 dead letters of billing"
    assert await redis.xlen(names.dlq("billing")) == 0
    assert await redis.xlen(names.dlq("crm")) == 1
    listed = ok(await hookbus(valkey.url, "dlq", "list"))
    assert "billing" not in listed and "crm" in listed

    # Confirming interactively works too.
    out = ok(await hookbus(valkey.url, "dlq", "purge", "crm", input="y\n"))
    assert "deleted 1 dead letters of crm" in out
    assert ok(await hookbus(valkey.url, "dlq", "list")).strip() == "no dead letters"


# -- replay GROUP --from -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_replay_history_to_one_group(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    stream = names.stream(PAYMENT)
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        [id_a] = await publish(redis, names, event("evt_hist_a"))
        await anyio.sleep(0.05)  # a later millisecond for b and c
        id_b, id_c = await publish(redis, names, event("evt_hist_b"), event("evt_hist_c"))
        await wait_handled("billing", 3)
        await wait_handled("audit", 3)
        assert parse_id(id_a)[0] < parse_id(id_b)[0]
        audit_position = (await group_info(redis, stream, "audit"))["last-delivered-id"]

        # From an entry id: c only (one sequence number back when b and c share a millisecond).
        out = ok(await hookbus(valkey.url, "replay", "billing", "--from", id_c))
        position = "-".join(map(str, position_before(id_c)))
        assert out.splitlines() == [f"{stream}: billing rewound to {position}"]
        await wait_handled("billing", 4)
        await anyio.sleep(SETTLE_S)
        assert [count("billing", e) for e in ("evt_hist_a", "evt_hist_b", "evt_hist_c")] == [1, 1, 2]
        assert HANDLED["billing"][-1] == Handled("evt_hist_c", stream, id_c)

        # From an RFC 3339 time (with an offset): b's millisecond, so b and c.
        moment = when(parse_id(id_b)[0]).astimezone(dt.timezone(dt.timedelta(hours=2)))
        start = moment.isoformat(timespec="milliseconds")
        assert start.endswith("+02:00")
        ok(await hookbus(valkey.url, "replay", "billing", "--from", start))
        await wait_handled("billing", 6)
        await anyio.sleep(SETTLE_S)
        assert [count("billing", e) for e in ("evt_hist_a", "evt_hist_b", "evt_hist_c")] == [1, 2, 3]

        # From a time before everything, in Z form: all three again.
        start = when(parse_id(id_a)[0] - 1000).isoformat(timespec="seconds").replace("+00:00", "Z")
        ok(await hookbus(valkey.url, "replay", "billing", "--from", start))
        await wait_handled("billing", 9)
        await anyio.sleep(SETTLE_S)
        assert [count("billing", e) for e in ("evt_hist_a", "evt_hist_b", "evt_hist_c")] == [2, 3, 4]
        assert all(h.stream == stream for h in HANDLED["billing"])
        assert (await group_info(redis, stream, "billing"))["pending"] == 0

        # Audit, which already handled everything, got nothing again and did not move.
        assert [count("audit", e) for e in ("evt_hist_a", "evt_hist_b", "evt_hist_c")] == [1, 1, 1]
        assert (await group_info(redis, stream, "audit"))["last-delivered-id"] == audit_position

        # A position after what billing has read never moves it forward (that would skip entries).
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(timespec="seconds")
        out = ok(await hookbus(valkey.url, "replay", "billing", "--from", future))
        assert "already at or before that position" in out
        assert (await group_info(redis, stream, "billing"))["last-delivered-id"].decode() == id_c

        # An unknown group is a typo, not a no-op.
        assert "no consumer group named 'nobody'" in failed(
            await hookbus(valkey.url, "replay", "nobody", "--from", "0"), 1
        )
        assert "no consumer group named 'nobdy'" in failed(
            await hookbus(valkey.url, "dlq", "replay", "nobdy", "--all"), 1
        )
        await anyio.sleep(SETTLE_S)
        assert len(HANDLED["billing"]) == 9


@pytest.mark.anyio
async def test_replay_history_backfills_a_group_from_a_point_in_time(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    """A consumer added today (its group created at ``$``) backfills what was published before it existed."""
    await ensure_groups(redis, names, [audit])
    async with running_worker(audit, redis, names):
        [id_old] = await publish(redis, names, event("evt_week_old"))
        await anyio.sleep(0.05)
        [id_new] = await publish(redis, names, event("evt_week_new"))
        await wait_handled("audit", 2)
        async with running_worker(billing, redis, names):  # created now, at "$": sees none of it
            await anyio.sleep(SETTLE_S)
            assert HANDLED["billing"] == []
            start = when(parse_id(id_new)[0]).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            ok(await hookbus(valkey.url, "replay", "billing", "--from", start))
            await wait_handled("billing", 1)
            await anyio.sleep(SETTLE_S)
            assert [h.entry_id for h in HANDLED["billing"]] == [id_new]
            ok(await hookbus(valkey.url, "replay", "billing", "--from", id_old))
            await wait_handled("billing", 3)
            await anyio.sleep(SETTLE_S)
            assert [h.entry_id for h in HANDLED["billing"]] == [id_new, id_old, id_new]
    assert [count("audit", e) for e in ("evt_week_old", "evt_week_new")] == [1, 1]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("yesterday", "neither an entry id nor an RFC 3339 time"),
        ("2026-11-23T00:00:00", "needs an offset"),
        ("1-2-3", "neither an entry id nor an RFC 3339 time"),
        ("", "neither an entry id nor an RFC 3339 time"),
    ],
)
async def test_replay_bad_from_is_a_usage_error(valkey, redis, names, start, message) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    await publish(redis, names, event("evt_bad_from"))
    before = (await group_info(redis, names.stream(PAYMENT), "billing"))["last-delivered-id"]
    out = failed(await hookbus(valkey.url, "replay", "billing", "--from", start), 2)
    assert "Usage:" in out
    assert message in out
    assert (await group_info(redis, names.stream(PAYMENT), "billing"))["last-delivered-id"] == before


@pytest.mark.anyio
async def test_replay_without_from_is_a_usage_error(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    assert "Missing option '--from'" in failed(await hookbus(valkey.url, "replay", "billing"), 2)


@pytest.mark.anyio
async def test_replay_out_of_range_entry_id_is_a_usage_error(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    [entry_id] = await publish(redis, names, event("evt_range"))
    await redis.xgroup_setid(names.stream(PAYMENT), "billing", entry_id)
    failed(await hookbus(valkey.url, "replay", "billing", "--from", f"5-{2**64 + 1}"), 2)


# -- unreachable Redis and the real entry point ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "list"],
        ["dlq", "list", "billing"],
        ["dlq", "show", "1-0"],
        ["dlq", "replay", "billing", "1-0"],
        ["dlq", "replay", "billing", "--all"],
        ["dlq", "purge", "billing", "--yes"],
        ["dlq", "purge", "billing", "--older-than", "1h", "--yes"],
        ["replay", "billing", "--from", "0"],
        ["replay", "billing", "--from", "2026-11-23T00:00:00Z"],
    ],
)
def test_unreachable_redis_is_a_clean_error(args: list[str]) -> None:
    result = invoke(UNREACHABLE, args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"Error: cannot reach Redis at {UNREACHABLE}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.anyio
async def test_entry_point_in_a_subprocess(valkey, redis, names, subprocess_env) -> None:  # type: ignore[no-untyped-def]
    await prepare(redis, names)
    async with running_worker(billing, redis, names), running_worker(audit, redis, names):
        [dlq_id] = await dead_letter_payments(redis, names, "evt_proc_1")

    done = await anyio.run_process([PYTHON, "-m", "bus", "dlq", "list"], env=subprocess_env, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr
    [line] = stdout.splitlines()
    assert line.startswith(f"{dlq_id}  billing  ")
    assert line.endswith("event=evt_proc_1  attempts=1  PermanentError: bad customer")

    down = await anyio.run_process(
        [PYTHON, "-m", "bus", "dlq", "list"], env=subprocess_env | {"REDIS_URL": UNREACHABLE}, check=False
    )
    assert down.returncode == 1
    assert f"Error: cannot reach Redis at {UNREACHABLE}" in down.stderr.decode()
    assert "Traceback" not in down.stderr.decode()
    assert down.stdout == b""


@pytest.mark.anyio
async def test_show_asks_for_a_group_when_an_id_is_in_several_dead_letter_streams(valkey, redis, names) -> None:  # type: ignore[no-untyped-def]
    record = DeadLetter(event("evt_twice").to_json(), names.stream(PAYMENT), "9-0", "billing", "c", "E", "r", 1, 1, 1)
    for group in ("audit", "billing"):
        await redis.xadd(names.dlq(group), record.to_fields(), id="9-0")  # type: ignore[arg-type]
    message = failed(await hookbus(valkey.url, "dlq", "show", "9-0"), 1)
    assert "audit, billing" in message and "--group" in message
    shown = ok(await hookbus(valkey.url, "dlq", "show", "9-0", "--group", "billing"))
    assert '"evt_twice"' in shown
