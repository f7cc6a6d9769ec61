"""The worker runtime: read, dispatch, ack, retry through the pending entries list, reclaim, dead-letter.

One :class:`Worker` runs one :class:`bus.consumer.Consumer` in one process:

- It blocks in ``XREADGROUP ... BLOCK`` on every stream the consumer handles, plus the group's replay stream (no
  sleep loop), reading ahead of the batch in hand (up to ``read_ahead`` batches while batches are quick, one
  otherwise), runs the handlers of a batch concurrently (up to ``concurrency``) and acks the successful ones with
  one XACK per stream, once every handler of the batch has returned. The acks (with their trace records, in one
  script) go out right behind the next reads, on a second connection: no round trip of their own on the critical
  path, and Redis runs the ack script while the worker handles the next batch.
- A failed entry is *not* acked. Its next attempt time (backoff by delivery count, or a later ``Retry-After``) is
  recorded in the group's retry hash, and the reclaimer XCLAIMs it once due. The delivery count comes from the
  pending entries list (XPENDING), so it survives restarts.
- An entry pending with no retry record for longer than ``visibility_timeout_s`` belongs to a crashed consumer and
  is reclaimed the same way. Handlers running longer than a third of that extend their lease (``XCLAIM JUSTID`` to
  themselves, which does not raise the delivery count).
- After the last attempt, for a :class:`bus.errors.PermanentError`, or for bytes that are not an envelope, the entry
  moves to the dead-letter stream atomically with its XACK. Entries deleted from the stream while pending are
  removed from the PEL and recorded in the dead-letter stream with reason ``deleted_before_processing``.
- Housekeeping, on the same timer: trimming streams by retention (never past what a group still needs) and removing
  consumers that have been idle for ``consumer_timeout_s`` and own nothing.
- Redis outages are survived: the loops back off and reconnect; a vanished group is recreated at ``0`` (NOGROUP).
- ``stop()`` (SIGTERM/SIGINT): stop reading, give in-flight handlers ``grace_s`` to finish, ack those that did and
  leave the rest pending. Nothing is acked that did not finish.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from . import metrics, pel, retention, trace, wire, workers
from .connection import REDIS_DOWN, is_unavailable
from .consumer import Consumer, Context, Handler, Resources, Shared, enter_lifespan
from .deadletter import DeadLetter, DeadLetterMover
from .envelope import FIELD, Event, utc_rfc3339_to_unix_s
from .errors import ConfigError, EnvelopeError, NotReady, PermanentError, RetryLater
from .groups import ensure_groups, is_nogroup
from .naming import Names
from .ratelimit import Limiter

log = logging.getLogger("hookbus.worker")

#: A batch handled within this many seconds counts as quick: the worker then reads up to ``read_ahead`` batches
#: ahead (at most ``read_ahead`` × this long of extra wait for an entry read ahead).
QUICK_BATCH_S = 0.02


class Outcome(enum.Enum):
    ACKED = "acked"
    RETRY = "retry"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


class Delivery(NamedTuple):
    stream: str
    entry_id: str
    fields: Mapping[bytes, bytes]
    delivery_count: int


class _Acked(NamedTuple):
    """An entry whose handler succeeded, waiting for its XACK: where it is, and the trace record to append with it."""

    stream: str
    entry_id: str
    trace_key: str
    record: bytes


# NamedTuple's generated __new__ is Python code; tuple.__new__ builds the same object at half the cost, and these
# are made once per delivery.
_tuple_new = tuple.__new__


# Acks one stream's finished entries. KEYS[1] = stream, KEYS[2] = the group's retry hash, KEYS[3..] = trace keys;
# ARGV[1] = group, ARGV[2] = trace TTL (s), ARGV[3] = n, ARGV[4..3+n] = entry ids, ARGV[4+n..] = one trace record per
# trace key. XACK and HDEL in chunks (Lua's unpack has a stack limit), then each trace record is appended (a trace
# keeps the TTL its publication gave it; one created here gets the trace TTL): one command per batch instead of
# 2 + 2 per entry, atomic like the MULTI it replaces. Returns the number acked.
_ACK = """
local n = tonumber(ARGV[3])
local acked = 0
for first = 4, 3 + n, 500 do
  local last = math.min(first + 499, 3 + n)
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, first, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, first, last))
end
for k = 3, #KEYS do
  if redis.call('RPUSH', KEYS[k], ARGV[n + k + 1]) == 1 then redis.call('EXPIRE', KEYS[k], ARGV[2]) end
end
return acked
"""


def parse_read(reply: Any) -> list[Delivery]:
    """The deliveries in a raw XREADGROUP reply: RESP2 ``[[stream, entries]]`` or RESP3 ``{stream: entries}``."""
    if not reply:
        return []
    deliveries = []
    for stream, entries in reply.items() if isinstance(reply, dict) else reply:
        name = stream.decode()
        for entry_id, fields in entries:
            if type(fields) is list:  # RESP2; most entries hold the one field an envelope has: no zip for them
                if len(fields) == 2:
                    fields = {fields[0]: fields[1]}
                else:
                    fields = dict(zip(fields[::2], fields[1::2], strict=True))
            deliveries.append(_tuple_new(Delivery, (name, entry_id.decode(), fields or {}, 1)))
    return deliveries


def _being_cancelled() -> bool:
    """Whether the running task was asked to stop (``Task.cancel()``), as opposed to code it awaited raising
    CancelledError on its own."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def default_consumer_name() -> str:
    """``host-pid``: unique per process, so a restarted process never inherits a dead one's entries by name."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Runs ``consumer`` against ``redis``.

    Times are in seconds except ``block_ms`` (the XREADGROUP BLOCK argument, milliseconds). The client's socket
    timeout must exceed ``block_ms`` (see :func:`bus.connection.connect`). ``retention_s`` / ``maxlen`` bound the
    streams this worker reads (None: no limit); trimming never removes what a group still needs. ``on_started`` is
    called once the consumer's lifespan is entered and its groups exist, before the first read. ``read_ahead`` is how
    many batches the worker reads ahead of the one it handles while batches are handled within
    :data:`QUICK_BATCH_S` (one otherwise).
    """

    def __init__(
        self,
        consumer: Consumer,
        redis: aioredis.Redis,
        names: Names,
        *,
        consumer_name: str | None = None,
        batch_size: int = 100,
        block_ms: int = 2000,
        concurrency: int = 16,
        claim_interval_s: float = 1.0,
        visibility_timeout_s: float = 60.0,
        grace_s: float = 10.0,
        housekeeping_interval_s: float = 60.0,
        consumer_timeout_s: float = 3600.0,
        retention_s: float | None = 7 * 24 * 3600,
        maxlen: int | None = None,
        metrics_port: int | None = None,
        limiter: Limiter | None = None,
        trace_ttl_s: int = trace.TRACE_TTL_S,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_started: Callable[[], None] | None = None,
        read_ahead: int = 3,
    ) -> None:
        if not consumer.handlers:
            raise ConfigError(f"consumer {consumer.name!r} has no handlers")
        if claim_interval_s <= 0 or visibility_timeout_s <= claim_interval_s:
            raise ConfigError("HOOKBUS_VISIBILITY_TIMEOUT_S must exceed HOOKBUS_CLAIM_INTERVAL_S, both positive")
        if batch_size < 1 or concurrency < 1 or block_ms < 1 or grace_s < 0:
            raise ConfigError("HOOKBUS_BATCH_SIZE, HOOKBUS_CONCURRENCY and HOOKBUS_BLOCK_MS must be at least 1")
        if read_ahead < 1:
            raise ConfigError("HOOKBUS_READ_AHEAD must be at least 1")
        socket_timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        if socket_timeout is not None and socket_timeout <= block_ms / 1000:
            # Otherwise every idle XREADGROUP BLOCK ends in a socket timeout that looks like an outage (case 029).
            raise ConfigError(f"the client's socket_timeout ({socket_timeout} s) must exceed block_ms ({block_ms} ms)")
        self.consumer = consumer
        self.group = consumer.name
        self.name = consumer_name or default_consumer_name()
        self._redis = redis
        self._names = names
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._concurrency = asyncio.Semaphore(concurrency)
        self._lanes = concurrency
        self._claim_interval_s = claim_interval_s
        self._visibility_ms = int(visibility_timeout_s * 1000)
        self._grace_s = grace_s
        self._housekeeping_interval_s = housekeeping_interval_s
        self._consumer_timeout_ms = int(consumer_timeout_s * 1000)
        self._retention_ms = None if retention_s is None else int(retention_s * 1000)
        self._maxlen = maxlen
        self._clock = clock
        self._rng = rng or random.Random()
        self._streams = [names.stream(t) for t in consumer.event_types] + [names.replay(self.group)]
        self._retry_hash = names.retry(self.group)
        self._dlq = names.dlq(self.group)
        self._mover = DeadLetterMover(redis)
        self._stopping = asyncio.Event()
        # Entries in flight (received, not yet acked or settled) by stream: entry id → Unix time received.
        self._inflight: dict[str, dict[str, float]] = {stream: {} for stream in self._streams}
        self._shared = Shared(self.group, self.name, redis, names, {}, logging.getLogger(f"hookbus.{self.group}"))
        self._last_housekeeping = 0.0
        self._metrics_port = metrics_port
        self._on_started = on_started
        self._read_ahead = read_ahead
        self._quick_batches = False  # whether the last batch was handled within QUICK_BATCH_S (see _read_loop)
        self._trace_ttl_s = trace_ttl_s
        # The "acked" trace record with this worker's constant fields encoded once: "at", "attempt" and
        # "duration_s" are filled in per delivery (see _succeeded).
        constant = b',"step":"acked","group":%b,"consumer":%b,' % (orjson.dumps(self.group), orjson.dumps(self.name))
        self._acked_template = b'{"at":%d' + constant.replace(b"%", b"%%") + b'"attempt":%d,"duration_s":%d.%06d}'
        # Entries whose handler succeeded, by stream, each with its trace key and record: sent by the ack task as
        # soon as it is free, at most one ack round trip in flight (see _queue_acks).
        self._unacked: dict[str, list[_Acked]] = {}
        self._ack_script = wire.bulk(_ACK.encode())
        self._retry_hash_bulk = wire.bulk(self._retry_hash.encode())
        self._group_bulk = wire.bulk(self.group.encode())
        self._trace_ttl_bulk = wire.bulk(b"%d" % trace_ttl_s)
        self._stop_deadline: float | None = None  # monotonic time the grace period ends, once stopping
        self._stop_signal: asyncio.Future[Any] | None = None  # done once stopping; made by run()
        self._acking: asyncio.Future[None] | None = None
        # Per event type: the handler's metric children (labels() looked up once, not per event).
        self._type_metrics: dict[str, tuple[Any, Any, Any]] = {}
        self._log_success = False  # whether "handled" lines are logged; read once per batch
        #: The rate limiter shared by every process (limits from the rules file's ``[ratelimits]``, or defaults).
        self.limiter = limiter or Limiter(redis, names)
        self._started = clock()
        #: Counts since start, for logs, tests and ``hookbus status``.
        self.counts: dict[str, int] = {o.value: 0 for o in Outcome} | {"reclaimed": 0, "deleted": 0}
        #: Unix time of the last completed read or reclaim round (a liveness heartbeat).
        self.heartbeat = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop: no new reads; in-flight handlers get ``grace_s`` seconds."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until :meth:`stop`. Enters the consumer's lifespan once for the whole run."""
        resources = Resources(self._redis, self._names, self.limiter)
        async with enter_lifespan(self.consumer.lifespan, resources) as state:
            self._shared = dataclasses.replace(self._shared, state=state)
            await self._retry_until_up(self._ensure_groups)
            metrics.initialize(groups={self.group: self.consumer.event_types})
            if self._on_started is not None:
                self._on_started()
            log.info("worker started", extra={"group": self.group, "consumer": self.name, "streams": self._streams})
            self._stop_signal = asyncio.ensure_future(self._stopping.wait())
            reclaimer = asyncio.create_task(self._reclaim_loop(), name=f"{self.group}-reclaimer")
            try:
                await self._read_loop()
            finally:
                # The reclaimer wakes on stop and lets its own batch finish within the grace period.
                self._stopping.set()
                await asyncio.gather(reclaimer, return_exceptions=True)
                await self._flush_acks()  # the reclaimer's last batch, if it finished after the read loop
                self._stop_signal.cancel()
                self._stop_signal = None
                with contextlib.suppress(*REDIS_DOWN):
                    await self._redis.hdel(workers.key(self._names.prefix), self.name)
            log.info("worker stopped", extra={"group": self.group, "consumer": self.name, **self.counts})

    async def _ensure_groups(self) -> None:
        await ensure_groups(self._redis, self._names, [self.consumer])

    async def _recreate_groups(self) -> None:
        """After NOGROUP: recreate at ``0``, so entries XADDed since the stream vanished are not skipped."""
        created = await ensure_groups(self._redis, self._names, [self.consumer], start_id="0")
        if created:
            metrics.GROUPS_RECREATED.labels(self.group).inc(created)

    async def _retry_until_up(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` until Redis answers, backing off (capped at 5 s, jittered) while it is down."""
        delay = 0.2
        while not self._stopping.is_set():
            try:
                await action()
                return
            except REDIS_DOWN as exc:
                log.warning("redis unreachable, retrying", extra={"group": self.group, "error": repr(exc)})
                await self._sleep(delay * self._rng.uniform(0.5, 1.0))
                delay = min(delay * 2, 5.0)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    # -- reading -----------------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        read_command = wire.pack([self._read_command()])
        outage = 0.2
        # Reads in flight, oldest first: the one whose batch is handled next and more behind it, so Redis prepares
        # the next batches while this one's handlers run. One more while batches take long (they wait here, leased,
        # instead of going to an idle worker), up to ``read_ahead`` while they are quick (where the round trips are
        # what limits the rate).
        # Each read is tagged with the number of read failures waited out before it was sent: reads sent before the
        # last failure fail the same way (an outage, NOGROUP) and are dropped without another wait.
        reads: collections.deque[tuple[int, asyncio.Future[list[Delivery]]]] = collections.deque()
        failures = 0
        try:
            while True:
                depth = self._read_ahead if self._quick_batches else 1
                while len(reads) <= depth and not self._stopping.is_set():
                    reads.append((failures, asyncio.ensure_future(self._read(read_command))))
                if not reads:
                    return
                # The last batch's acks go out right behind the new reads (tasks start in order), so Redis answers
                # those first and runs the ack script (the costlier half) while the next batch is handled.
                self._queue_acks({})
                sent_after, read = reads[0]
                if not read.done():
                    await asyncio.wait({read, self._stop_signal or read}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    # Stopping while blocked: entries Redis hands out after this point stay pending under our name
                    # and are reclaimed after the visibility timeout, so cancelling loses nothing. (A batch that
                    # was read before the stop is still handled, within what is left of the grace period.)
                    for _, pending in reads:
                        if not pending.done():
                            pending.cancel()
                    await asyncio.gather(*(pending for _, pending in reads), return_exceptions=True)
                    reads = collections.deque(r for r in reads if not r[1].cancelled() and r[1].exception() is None)
                    continue
                reads.popleft()
                try:
                    deliveries = read.result()
                except Exception as exc:
                    if not self._survivable(exc):
                        raise
                    if sent_after < failures:
                        continue  # sent before the failure just waited out: it failed the same way, no second wait
                    failures += 1
                    outage = await self._read_failed(exc, outage)
                    continue
                outage = 0.2
                self.heartbeat = self._clock()
                if deliveries:
                    started = time.monotonic()
                    await self._run_batch(deliveries, send_acks=False)
                    self._quick_batches = time.monotonic() - started <= QUICK_BATCH_S
        finally:
            for _, pending in reads:
                pending.cancel()
            await asyncio.gather(*(pending for _, pending in reads), return_exceptions=True)
            await self._flush_acks()

    @staticmethod
    def _survivable(exc: BaseException) -> bool:
        """A read failure the worker waits out: Redis unreachable, refusing (OOM, BUSY, LOADING…), or NOGROUP."""
        if isinstance(exc, ResponseError):
            return is_unavailable(exc) or is_nogroup(exc)
        return isinstance(exc, REDIS_DOWN)

    async def _read_failed(self, exc: BaseException, outage: float) -> float:
        """Wait out a read failure (see :meth:`_survivable`): back off ``outage`` seconds, jittered, after recreating
        the groups for NOGROUP. Returns the next back-off (doubled, capped at 5 s)."""
        if isinstance(exc, ResponseError) and is_nogroup(exc):
            log.warning("consumer group vanished (NOGROUP); recreating it at 0", extra={"group": self.group})
            await self._retry_until_up(self._recreate_groups)
            await self._sleep(outage)  # a group deleted again at once must not become a hot loop
        else:
            if isinstance(exc, ResponseError):
                log.warning("redis refused the read", extra={"group": self.group, "error": str(exc)[:200]})
            else:
                log.warning("redis unreachable while reading", extra={"group": self.group, "error": repr(exc)})
            await self._sleep(outage * self._rng.uniform(0.5, 1.0))
        return min(outage * 2, 5.0)

    def _read_command(self) -> list[wire.Arg]:
        return [
            "XREADGROUP",
            "GROUP",
            self.group,
            self.name,
            "COUNT",
            self._batch_size,
            "BLOCK",
            self._block_ms,
            "STREAMS",
            *self._streams,
            *[">"] * len(self._streams),
        ]

    async def _read(self, read_command: bytes) -> list[Delivery]:
        """The next batch (XREADGROUP, pre-packed), each entry in flight from its receipt: its lease is extended and
        this worker never reclaims it, even while it waits behind the batch before it."""
        async with wire.lease(self._redis) as conn:
            await conn.send_packed_command(read_command)
            deliveries = parse_read(await conn.read_response())
        received = self._clock()
        inflight = self._inflight
        for d in deliveries:
            inflight[d.stream][d.entry_id] = received
        return deliveries

    def _queue_acks(self, acks: Mapping[str, list[_Acked]], *, send: bool = True) -> None:
        """Queue ``acks`` and, with ``send``, make sure the ack task is sending what is queued: at once if it is idle,
        else right after its round trip (which then takes everything queued meanwhile). Acks go out on their own
        connection, so the read loop never waits for them."""
        for stream, items in acks.items():
            self._unacked.setdefault(stream, []).extend(items)
        if send and self._unacked and (self._acking is None or self._acking.done()):
            self._acking = asyncio.ensure_future(self._send_acks())

    async def _send_acks(self) -> None:
        while self._unacked:
            acks, self._unacked = self._unacked, {}
            if not await self._ack(acks, keep_on_outage=True):
                return  # Redis unreachable: kept queued for the read loop's next successful read

    async def _flush_acks(self) -> None:
        """Ack what finished but was not acked yet (on the way out)."""
        if self._acking is not None:
            await asyncio.gather(self._acking, return_exceptions=True)
        if self._unacked:
            acks, self._unacked = self._unacked, {}
            await self._ack(acks)

    # -- processing --------------------------------------------------------------------------------------------

    async def _run_batch(self, deliveries: list[Delivery], *, send_acks: bool = True) -> None:
        """Handle ``deliveries`` concurrently and queue the successes' acks (see :meth:`_queue_acks`): sent at once,
        or with ``send_acks=False`` by the read loop's next turn.

        Every entry counts as in flight from its receipt until it is acked (or its failure is recorded): entries
        waiting for a concurrency slot, or done and waiting for their XACK, keep their lease and are never reclaimed
        by this worker.
        """
        self._log_success = log.isEnabledFor(logging.INFO)
        try:
            acks = await self._run_tasks(deliveries)
        except BaseException:  # the worker itself is going down: nothing of this batch will be acked
            for d in deliveries:
                self._inflight[d.stream].pop(d.entry_id, None)
            raise
        self._queue_acks(acks, send=send_acks)

    async def _run_tasks(self, deliveries: list[Delivery]) -> dict[str, list[_Acked]]:
        """Run the handlers in up to ``concurrency`` lanes (tasks that take the batch's entries in turn, rather than a
        task per entry); returns the acked entries by stream. On stop, running handlers get what is left of
        ``grace_s``.

        Lanes are added one per turn of the event loop while entries are waiting: handlers that never wait (pure
        computation) are all run by the first lane without the cost of the others, handlers waiting on I/O get up to
        ``concurrency`` lanes within as many loop turns."""
        acked: list[_Acked] = []
        count = len(deliveries)
        outcomes: list[Outcome | None] = [None] * count
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        lanes: list[asyncio.Future[None]] = []
        next_turn = 0
        running = 0
        if self._stopping.is_set() and self._grace_left() <= 0:
            next_turn = count  # read before the stop, but no time is left: they stay pending

        async def lane() -> None:
            # A lane holds one of the worker's ``concurrency`` slots (shared with the reclaimer's batches) while it
            # takes its turns: at most ``concurrency`` handlers run at once, with one semaphore acquire per lane.
            nonlocal next_turn, running
            try:
                async with self._concurrency:
                    while next_turn < count:
                        i, next_turn = next_turn, next_turn + 1
                        delivery = deliveries[i]
                        try:
                            # The handler is awaited here and the steps around it are plain calls: no coroutine of
                            # the worker's own per event.
                            prepared = self._prepare(delivery)
                            if prepared is None:
                                outcomes[i] = await self._undeliverable(delivery)
                                continue
                            event, ctx, handler, children = prepared
                            started = time.perf_counter()
                            try:
                                await handler(event, ctx)
                            except (Exception, asyncio.CancelledError) as exc:
                                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                                    raise  # this lane is cancelled: the grace period is over
                                # A CancelledError of the handler's own (it awaited something someone else
                                # cancelled) is a failure like any other, retried later.
                                children[0].observe(time.perf_counter() - started)
                                outcomes[i] = await self._handler_failed(delivery, event, ctx, exc)
                                continue
                            outcomes[i] = self._succeeded(delivery, event, ctx, children, started, acked)
                        except Exception:  # a fault of the worker itself; handler failures are outcomes
                            outcomes[i] = Outcome.CANCELLED
                            log.error("worker error", exc_info=True, extra={"group": self.group})
            finally:
                running -= 1
                if next_turn < count:
                    loop.call_soon(add_lane)  # a lane that ended early (never a handler's doing) is replaced
                elif not running and not finished.done():
                    finished.set_result(None)

        def add_lane() -> None:
            nonlocal running
            if next_turn < count and running < self._lanes and not finished.done():
                running += 1
                lanes.append(asyncio.ensure_future(lane()))
                loop.call_soon(add_lane)  # runs after the new lane's first step: another only if it had to wait

        add_lane()
        if not lanes:
            finished.set_result(None)
        if not finished.done() and not self._stopping.is_set():
            await asyncio.wait({finished, self._stop_signal or finished}, return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():  # stopping: give running handlers the grace period, then cancel them
            await asyncio.wait({finished}, timeout=max(0.0, self._grace_left()))
            if not finished.done():
                finished.cancel()  # no more lanes
                for task in lanes:
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                log.warning(
                    "grace period over; unfinished entries stay pending",
                    extra={"group": self.group, "unfinished": outcomes.count(None)},
                )
        counts = self.counts
        for i, outcome in enumerate(outcomes):
            if outcome is None or outcome is Outcome.CANCELLED:  # not run, or not finished: it stays pending
                outcome = Outcome.CANCELLED
                self._inflight[deliveries[i].stream].pop(deliveries[i].entry_id, None)
            counts[outcome.value] += 1
        acks: dict[str, list[_Acked]] = {}
        for item in acked:
            acks.setdefault(item.stream, []).append(item)
        return acks

    def _grace_left(self) -> float:
        """Seconds left of the grace period, which starts when the worker first sees it is stopping."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self._grace_s
        return self._stop_deadline - time.monotonic()

    def _ack_command(self, stream: str, items: list[_Acked]) -> bytes:
        """The ack script call for ``items`` of ``stream``, RESP-encoded (per entry: its id, trace key and record)."""
        ids = [wire.bulk(a.entry_id.encode()) for a in items]
        keys = [wire.bulk(a.trace_key.encode()) for a in items]
        records = [wire.bulk(a.record) for a in items]
        head = [wire.bulk(b"EVAL"), self._ack_script, wire.bulk(b"%d" % (2 + len(keys)))]
        head += [wire.bulk(stream.encode()), self._retry_hash_bulk]
        args = [self._group_bulk, self._trace_ttl_bulk, wire.bulk(b"%d" % len(ids))]
        return wire.pack_bulks([*head, *keys, *args, *ids, *records])

    def _acked(self, stream: str, items: list[_Acked], reply: Any) -> None:
        """The ack script's ``reply`` for ``items`` arrived (an exception if it failed): they leave the lease."""
        if isinstance(reply, Exception):
            # Not acked means redelivered later; handlers are idempotent, so this costs a repeat, never a loss.
            log.warning("ack failed; entries will be redelivered", extra={"group": self.group, "error": repr(reply)})
        inflight = self._inflight[stream]
        for a in items:
            inflight.pop(a.entry_id, None)

    async def _ack(self, acks: Mapping[str, list[_Acked]], *, keep_on_outage: bool = False) -> bool:
        """Ack now (one script per stream, one round trip). With ``keep_on_outage``, acks that could not be sent
        because Redis is unreachable go back to the queue (keeping their lease) and False is returned."""
        batches = [(stream, items) for stream, items in acks.items() if items]
        try:
            replies = await wire.exchange_packed(
                self._redis, b"".join(self._ack_command(stream, items) for stream, items in batches), len(batches)
            )
        except Exception as exc:  # never leave an entry leased forever: it is acked later, or redelivered
            if keep_on_outage and isinstance(exc, REDIS_DOWN):
                for stream, items in acks.items():
                    self._unacked.setdefault(stream, []).extend(items)
                return False
            replies = [exc] * len(batches)
        for (stream, items), reply in zip(batches, replies, strict=True):
            self._acked(stream, items, reply)
        return True

    def _prepare(self, delivery: Delivery) -> tuple[Event, Context, Handler, tuple[Any, Any, Any]] | None:
        """The event of ``delivery``, its context, handler and metric children; None if it cannot be handled (see
        :meth:`_undeliverable`)."""
        try:
            event = Event.from_fields(delivery.fields)
        except EnvelopeError:
            return None
        handler = self.consumer.handlers.get(event.type)
        if handler is None:
            return None
        children = self._type_metrics.get(event.type) or self._metrics_for(event.type)
        ctx = Context(self._shared, delivery.stream, delivery.entry_id, delivery.delivery_count, event)
        return event, ctx, handler, children

    async def _undeliverable(self, delivery: Delivery) -> Outcome:
        """Dead-letter an entry that is not an envelope, or whose type has no handler (a replayed or misrouted
        entry)."""
        try:
            event = Event.from_fields(delivery.fields)
        except EnvelopeError as exc:
            return self._settled(
                delivery, await self._dead_letter(delivery, "unknown", "EnvelopeError", str(exc), None)
            )
        reason = f"no handler for {event.type!r}"
        return self._settled(delivery, await self._dead_letter(delivery, event.type, "NoHandler", reason, None))

    async def _handler_failed(self, delivery: Delivery, event: Event, ctx: Context, exc: BaseException) -> Outcome:
        """Dead-letter after a :class:`bus.errors.PermanentError`, else record when to retry (see :meth:`_failed`)."""
        fields = ctx.log_fields
        if isinstance(exc, PermanentError):
            outcome = await self._dead_letter(delivery, event.type, type(exc).__name__, exc.reason, None, fields)
        else:  # any other failure is transient: retried with backoff
            outcome = await self._failed(delivery, event.type, exc, fields)
        return self._settled(delivery, outcome)

    def _succeeded(
        self,
        delivery: Delivery,
        event: Event,
        ctx: Context,
        children: tuple[Any, Any, Any],
        started: float,
        acked: list[_Acked],
    ) -> Outcome:
        """Record a handler's success (``started``: its ``perf_counter`` start): metrics, the trace record to append
        with the XACK, the log line; ``delivery`` joins ``acked``."""
        elapsed = time.perf_counter() - started
        duration_metric, acked_metric, latency_metric = children
        duration_metric.observe(elapsed)
        acked_metric.inc()
        now = self._clock()
        micros = round(elapsed * 1_000_000)
        notes = ctx._notes  # not the property, which would make an empty dict for every event without notes
        if notes:
            record = trace.record(
                "acked",
                int(now * 1000),
                group=self.group,
                consumer=self.name,
                attempt=delivery.delivery_count,
                duration_s=micros / 1_000_000,
                notes=notes,
            )
        else:  # the same record, from the template (once per delivery): duration_s with 6 decimals
            record = self._acked_template % (int(now * 1000), delivery.delivery_count, *divmod(micros, 1_000_000))
        trace_key = self._names.trace(event.source, event.id)
        acked.append(_tuple_new(_Acked, (delivery.stream, delivery.entry_id, trace_key, record)))
        if received := event.extensions.get("receivedtime"):
            try:
                latency_metric.observe(now - utc_rfc3339_to_unix_s(received))
            except ValueError:
                pass  # not a time: no latency to record
        # One line per action at INFO. It costs ~15 µs per event: a deployment that wants every last event per
        # second can set HOOKBUS_LOG_LEVEL=WARNING and rely on the event's trace and the metrics instead.
        if self._log_success:
            duration = micros / 1_000_000
            log.info("handled", extra=ctx.log_fields | {"outcome": "acked", "duration_s": duration, **(notes or {})})
        return Outcome.ACKED

    def _settled(self, delivery: Delivery, outcome: Outcome) -> Outcome:
        """A delivery that will not be acked: its retry time is recorded (or it was dead-lettered), so any worker
        may take it when due; it leaves this worker's lease."""
        self._inflight[delivery.stream].pop(delivery.entry_id, None)
        return outcome

    def _metrics_for(self, event_type: str) -> tuple[Any, Any, Any]:
        """The handler-duration, acked and latency metric children of ``event_type`` (labels() looked up once)."""
        children = self._type_metrics.get(event_type)
        if children is None:
            children = self._type_metrics[event_type] = (
                metrics.HANDLER_DURATION.labels(self.group, event_type),
                metrics.MESSAGES_HANDLED.labels(self.group, event_type, Outcome.ACKED.value),
                metrics.EVENT_LATENCY.labels(self.group, event_type),
            )
        return children

    async def _failed(self, delivery: Delivery, event_type: str, exc: BaseException, extra: dict[str, Any]) -> Outcome:
        """Record when to retry, or dead-letter once the attempts are used up."""
        now_ms = int(self._clock() * 1000)
        previous = await self._failure_record(delivery.entry_id)
        first_ms = int(previous["first_failure_ms"]) if previous else now_ms
        reason = str(exc) or type(exc).__name__
        policy = self.consumer.retry_for(event_type)
        if policy.exhausted(delivery.delivery_count):
            return await self._dead_letter(delivery, event_type, type(exc).__name__, reason, first_ms, extra)
        retry_after_s = exc.delay if isinstance(exc, RetryLater) else None
        if isinstance(exc, NotReady) and retry_after_s is not None:
            delay_s = retry_after_s  # "not yet known": a short fixed wait, not the failure backoff
        else:
            delay_s = max(policy.delay_s(delivery.delivery_count, rng=self._rng), retry_after_s or 0.0)
        record = {
            "retry_at_ms": now_ms + int(delay_s * 1000),
            "first_failure_ms": first_ms,
            "error_type": type(exc).__name__,
            "reason": reason[:500],
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._retry_hash, delivery.entry_id, orjson.dumps(record))
                self._trace(
                    pipe,
                    extra,
                    "retry",
                    now_ms,
                    error_type=type(exc).__name__,
                    reason=reason[:500],
                    retry_in_s=round(delay_s, 3),
                )
                await pipe.execute()
        except REDIS_DOWN:
            pass  # without a record the entry is retried after the visibility timeout instead
        metrics.MESSAGES_HANDLED.labels(self.group, event_type, Outcome.RETRY.value).inc()
        level = logging.INFO if isinstance(exc, NotReady) else logging.WARNING
        log.log(
            level,
            "not ready; will retry" if isinstance(exc, NotReady) else "handler failed; will retry",
            exc_info=not isinstance(exc, RetryLater),
            extra=extra
            | {"outcome": "retry", "error_type": type(exc).__name__, "error": reason, "retry_in_s": round(delay_s, 3)},
        )
        return Outcome.RETRY

    def _trace(self, pipe: Any, extra: Mapping[str, Any], step: str, at_ms: int, **fields: Any) -> None:
        """Queue a trace record for the event described by ``extra`` (its log fields) on ``pipe``."""
        attempt = fields.pop("attempt_override", None) or extra.get("attempt")
        key = self._names.trace(extra["source"], extra["event_id"])
        pipe.rpush(key, trace.record(step, at_ms, group=self.group, consumer=self.name, attempt=attempt, **fields))
        pipe.expire(key, self._trace_ttl_s)

    async def _failure_record(self, entry_id: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.hget(self._retry_hash, entry_id)
        except REDIS_DOWN:
            return None
        return orjson.loads(raw) if raw else None

    async def _dead_letter(
        self,
        delivery: Delivery,
        event_type: str,
        error_type: str,
        reason: str,
        first_failure_ms: int | None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        now_ms = int(self._clock() * 1000)
        if first_failure_ms is None:
            previous = await self._failure_record(delivery.entry_id)
            first_failure_ms = int(previous["first_failure_ms"]) if previous else now_ms
        raw = delivery.fields.get(FIELD)
        if raw is None:  # keep whatever the entry held, so nothing is lost from the record
            raw = orjson.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in delivery.fields.items()}
            )
        record = DeadLetter(
            event=raw,
            stream=delivery.stream,
            entry_id=delivery.entry_id,
            group=self.group,
            consumer=self.name,
            error_type=error_type,
            reason=reason,
            attempts=delivery.delivery_count,
            first_failure_ms=first_failure_ms,
            last_failure_ms=now_ms,
        )
        try:
            dlq_id = await self._mover.move(record, dlq=self._dlq, retry_hash=self._retry_hash)
        except REDIS_DOWN:
            return Outcome.RETRY  # still pending; the reclaimer tries again
        if dlq_id is None:
            return Outcome.CANCELLED  # no longer pending: someone else acked or dead-lettered it meanwhile
        metrics.MESSAGES_HANDLED.labels(self.group, event_type, Outcome.DEAD_LETTERED.value).inc()
        if extra is not None:
            with contextlib.suppress(*REDIS_DOWN):
                async with self._redis.pipeline(transaction=False) as pipe:
                    self._trace(
                        pipe,
                        extra,
                        "dead_lettered",
                        now_ms,
                        error_type=error_type,
                        reason=reason,
                        dlq_entry_id=dlq_id,
                        attempt_override=delivery.delivery_count,
                    )
                    await pipe.execute()
        log.error(
            "dead-lettered",
            extra=(extra or {"group": self.group, "entry_id": delivery.entry_id, "event_type": event_type})
            | {
                "outcome": "dead_lettered",
                "error_type": error_type,
                "error": reason,
                "dlq_entry_id": dlq_id,
                "attempt": delivery.delivery_count,
            },
        )
        return Outcome.DEAD_LETTERED

    # -- reclaiming and housekeeping ---------------------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        """The only timer: extend leases, reclaim due retries and crashed consumers' entries, housekeeping."""
        while not self._stopping.is_set():
            await self._sleep(self._claim_interval_s)
            if self._stopping.is_set():
                return
            try:
                await self._extend_leases()
                for stream in self._streams:
                    await self._record_deleted(stream)
                    deliveries = await self._claim_due(stream)
                    if deliveries:
                        await self._run_batch(deliveries)
                self.heartbeat = self._clock()
                await self._redis.hset(
                    workers.key(self._names.prefix),
                    self.name,
                    workers.record(self.name, self.group, self._metrics_port, self._started, self.heartbeat),
                )
                if self._clock() - self._last_housekeeping >= self._housekeeping_interval_s:
                    self._last_housekeeping = self._clock()
                    await self._housekeeping()
            except REDIS_DOWN as exc:
                log.debug("reclaim skipped: redis unreachable", extra={"group": self.group, "error": repr(exc)})
            except ResponseError as exc:
                if is_unavailable(exc):
                    log.debug("reclaim skipped: redis refused", extra={"group": self.group, "error": str(exc)[:200]})
                    continue
                if not is_nogroup(exc):
                    log.exception("reclaim failed", extra={"group": self.group})
                    continue
                await self._retry_until_up(self._recreate_groups)

    async def _extend_leases(self) -> None:
        """Re-claim long-running entries to ourselves so nobody takes them over while their handler still runs."""
        limit = self._clock() - self._visibility_ms / 3000
        for stream, inflight in self._inflight.items():
            ids = [entry_id for entry_id, received in list(inflight.items()) if received < limit]
            if ids:
                await self._redis.xclaim(stream, self.group, self.name, min_idle_time=0, message_ids=ids, justid=True)

    async def _record_deleted(self, stream: str) -> None:
        """Entries deleted from the stream while pending can never be processed: record them, never crash."""
        for entry_id in await pel.sweep_deleted(self._redis, stream, self.group, self.name, count=self._batch_size):
            self.counts["deleted"] += 1
            metrics.LOST_MESSAGES.labels(self.group).inc()
            now_ms = int(self._clock() * 1000)
            record = DeadLetter(
                event=b"",
                stream=stream,
                entry_id=entry_id,
                group=self.group,
                consumer=self.name,
                error_type="EntryDeleted",
                reason="deleted_before_processing",
                attempts=0,
                first_failure_ms=now_ms,
                last_failure_ms=now_ms,
            )
            await self._redis.xadd(self._dlq, record.to_fields())  # type: ignore[arg-type]
            await self._redis.hdel(self._retry_hash, entry_id)
            log.error(
                "pending entry was deleted from its stream",
                extra={"group": self.group, "stream": stream, "entry_id": entry_id},
            )

    async def _claim_due(self, stream: str) -> list[Delivery]:
        pending = await pel.pending_entries(self._redis, stream, self.group, count=self._batch_size)
        if not pending:
            return []
        records = await self._redis.hmget(self._retry_hash, [p.entry_id for p in pending])
        now_ms = int(self._clock() * 1000)
        due: dict[str, pel.PendingEntry] = {}
        for entry, raw in zip(pending, records, strict=True):
            if entry.entry_id in self._inflight[stream]:
                continue
            ready = entry.idle_ms >= self._visibility_ms
            if raw is not None:
                # A recorded failure waits for its retry time, however long (a Retry-After may exceed the visibility
                # timeout). Once due, it is ready unless it was delivered again since (someone is retrying it now);
                # such a redelivery counts as in flight, reclaimed only after the visibility timeout.
                retry_at_ms = orjson.loads(raw)["retry_at_ms"]
                redelivered = now_ms - entry.idle_ms >= retry_at_ms
                ready = now_ms >= retry_at_ms and (not redelivered or ready)
            if ready:
                due[entry.entry_id] = entry
        if not due:
            return []
        # min-idle-time makes the claim atomic against other reclaimers: an entry someone claimed since our XPENDING
        # has a fresh idle time and is skipped.
        min_idle = max(1, min(e.idle_ms for e in due.values()))
        claimed = await self._redis.xclaim(stream, self.group, self.name, min_idle_time=min_idle, message_ids=list(due))
        deliveries = []
        for entry_id_raw, fields in claimed:
            entry_id = entry_id_raw.decode()
            previous = due[entry_id].delivery_count
            self.counts["reclaimed"] += 1
            metrics.MESSAGES_RECLAIMED.labels(self.group).inc()
            event_type = self._event_type(fields)
            if self.consumer.retry_for(event_type).exhausted(previous):
                # Delivered max_attempts times without a recorded outcome (e.g. it crashes its worker): give up
                # without running the handler again (shared case 027).
                given_up = Delivery(stream, entry_id, fields, previous)
                reason = f"no outcome after {previous} deliveries (the handler may crash its worker)"
                self.counts[
                    (await self._dead_letter(given_up, event_type, "AttemptsExhausted", reason, None)).value
                ] += 1
                continue
            deliveries.append(Delivery(stream, entry_id, fields, previous + 1))
        received = self._clock()
        for d in deliveries:  # in flight from their receipt, as read entries are
            self._inflight[stream][d.entry_id] = received
        if deliveries:
            log.info("reclaimed", extra={"group": self.group, "stream": stream, "count": len(deliveries)})
        return deliveries

    def _event_type(self, fields: Mapping[bytes, bytes]) -> str:
        try:
            return Event.from_fields(fields).type
        except EnvelopeError:
            return "unknown"

    async def _housekeeping(self) -> None:
        now_ms = int(self._clock() * 1000)
        for stream in self._streams:
            trimmed = await retention.trim(
                self._redis, stream, now_ms=now_ms, retention_ms=self._retention_ms, maxlen=self._maxlen
            )
            if trimmed:
                metrics.STREAM_ENTRIES_TRIMMED.labels(stream).inc(trimmed)
                log.info("trimmed stream", extra={"stream": stream, "entries": trimmed})
            removed = await pel.delete_idle_consumers(
                self._redis, stream, self.group, idle_ms=self._consumer_timeout_ms, keep=self.name
            )
            if removed:
                metrics.CONSUMERS_DELETED.labels(self.group).inc(len(removed))
                log.info("removed idle consumers", extra={"group": self.group, "stream": stream, "consumers": removed})
