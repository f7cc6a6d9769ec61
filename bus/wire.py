"""Pipelined commands on one pooled connection, for the hot paths (ingest's publish, the worker's ack + read).

redis-py spends tens of microseconds of CPU on every command it sends alone (pool checkout, retry wrapper, timeout
task, per-argument encoding); the hot paths instead send several commands in one write and read the replies one at a
time, in order, on a connection of the client's own pool (so the URL's options, auth, timeouts and health checks are
the client's):

- :func:`pack` encodes commands to RESP in one pass;
- :func:`lease` checks a connection out of the pool and throws it away, rather than returning it, if anything fails
  mid-exchange (an unread reply would desynchronise the next user);
- :func:`read` reads the next reply, returning a server error reply as a :class:`redis.exceptions.ResponseError`
  value instead of raising it, so a batch's other replies are still read;
- :func:`exchange` sends commands in one write and reads their replies; :class:`KeptConnections` does the same on
  connections a hot path keeps checked out, for paths making one round trip per call;
- :class:`ScriptCalls` runs one batch-taking Lua script for many concurrent callers: calls made while a round trip
  is in flight go out together in the next single script call (which runs without interleaving, so every call stays
  atomic) and each caller awaits its own reply. The coalescing adds no delay: a lone call is sent at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

Arg = bytes | str | int | float
Command = Sequence[Arg]


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int | float) and not isinstance(arg, bool):
        return repr(arg).encode()
    raise TypeError(f"cannot send {type(arg).__name__} to Redis")


def pack(commands: Iterable[Command]) -> bytes:
    """The RESP encoding of ``commands``, to send in one write (one join; large values are not copied twice)."""
    parts: list[bytes] = []
    append = parts.append
    for command in commands:
        append(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is bytes:
                data = arg
            elif kind is str:
                data = arg.encode()
            else:
                data = b"%d" % arg if kind is int else _encode(arg)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(parts)


def bulk(data: bytes) -> bytes:
    """One argument as a RESP bulk string, for callers that encode arguments as they make them (see
    :func:`pack_bulks`)."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_bulks(bulks: Sequence[bytes]) -> bytes:
    """The RESP encoding of one command whose arguments are already :func:`bulk` strings."""
    return b"*%d\r\n%b" % (len(bulks), b"".join(bulks))


@contextlib.asynccontextmanager
async def lease(redis: aioredis.Redis) -> AsyncIterator[AbstractConnection]:
    """A connection of ``redis``'s pool for one exchange; disconnected if the exchange does not complete."""
    pool = redis.connection_pool
    conn = await pool.get_connection()
    try:
        yield conn
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


async def read(conn: AbstractConnection) -> Any:
    """The next reply on ``conn``; an error reply is returned as a ResponseError, not raised."""
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc


async def exchange(redis: aioredis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` in one write and return their replies (error replies as ResponseError values).

    Retried once on a fresh connection after a connection error, as redis-py retries a single command: a pooled
    connection goes stale when the server restarts. Only for commands that are safe to repeat.
    """
    return await exchange_packed(redis, pack(commands), len(commands))


class KeptConnections:
    """Connections of ``redis``'s pool kept checked out by one hot path and reused call after call.

    redis-py's pool checkout and release (a lock, connection-count bookkeeping for its observability hooks) cost
    more than packing and parsing a small command, so a path that makes one round trip per call (a publish) keeps
    its connections: as many as it has round trips in flight at once, usually one or two. A connection that fails
    mid-exchange is disconnected and given back to the pool, with every other kept one (after a server restart they
    are all stale), and the exchange is retried once on a fresh connection from the pool, as :func:`exchange` does.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool = redis.connection_pool
        self._idle: list[AbstractConnection] = []

    async def exchange(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` commands RESP-encoded in ``payload`` in one write; their replies (error replies as
        ResponseError values). Only for commands that are safe to repeat after a connection error."""
        for attempt in (1, 2):
            conn = self._idle.pop() if self._idle and attempt == 1 else await self._pool.get_connection()
            try:
                await conn.send_packed_command(payload)
                replies = [await read(conn) for _ in range(count)]
            except BaseException as exc:
                await self._drop([conn, *self._idle])
                self._idle = []
                if attempt == 2 or not isinstance(exc, RedisConnectionError):
                    raise
                continue
            self._idle.append(conn)
            return replies
        raise AssertionError("unreachable")

    async def _drop(self, connections: list[AbstractConnection]) -> None:
        for conn in connections:
            await conn.disconnect(nowait=True)
            await self._pool.release(conn)


async def exchange_packed(redis: aioredis.Redis, payload: bytes, count: int) -> list[Any]:
    """:func:`exchange` for ``count`` commands already RESP-encoded in ``payload``."""
    pool = redis.connection_pool
    for attempt in (1, 2):
        conn = await pool.get_connection()  # as lease(), spelled out: this runs once per publish
        try:
            await conn.send_packed_command(payload)
            replies = [await read(conn) for _ in range(count)]
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            if attempt == 2 or not isinstance(exc, RedisConnectionError):
                raise
            continue
        finally:
            await pool.release(conn)
        return replies
    raise AssertionError("unreachable")


class ScriptCalls:
    """Calls of one batch-taking Lua script, coalesced across concurrent callers (see the module doc).

    The script's KEYS are the calls' keys one after the other, its ARGV the ``shared`` arguments followed by the calls'
    arguments one after the other, and it returns one reply per call, in order (it must be able to tell where one
    call's keys and arguments end, e.g. from a count among them). One script call runs without interleaving, so each
    call is atomic.

    A call made while no round trip of this script is in flight goes out at once, from the caller's own task. Calls
    made while one is in flight wait for the next write, which a sender task makes as soon as it runs (in the next
    turn of the event loop) with every call queued by then, up to ``max_calls`` per script call; it keeps sending
    while calls keep coming.
    """

    def __init__(self, redis: aioredis.Redis, script: str, *, shared: Sequence[Arg] = (), max_calls: int = 500) -> None:
        self._redis = redis
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._shared = [_encode(arg) for arg in shared]
        self._connections = KeptConnections(redis)
        self._max_calls = max_calls
        self._queue: list[tuple[Sequence[Arg], Sequence[Arg], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._in_flight = 0

    async def __call__(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run the script for one call; its reply. Raises an error reply as ResponseError."""
        if not self._in_flight:  # alone: no future, no task
            self._in_flight += 1
            try:
                (reply,) = await self.many([(keys, args)])
            finally:
                self._in_flight -= 1
        else:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((keys, args, future))
            if self._sender is None:
                self._sender = asyncio.get_running_loop().create_task(self._send_queued())
            reply = await future
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def many(self, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        """Run the script for ``calls`` (each ``(keys, args)``) in one round trip; one reply per call, error replies
        as values."""
        commands: list[Command] = []
        sizes: list[int] = []
        for start in range(0, len(calls), self._max_calls):
            chunk = calls[start : start + self._max_calls]
            keys = [key for call_keys, _ in chunk for key in call_keys]
            args = [arg for _, call_args in chunk for arg in call_args]
            commands.append(["EVALSHA", self._sha, len(keys), *keys, *self._shared, *args])
            sizes.append(len(chunk))
        replies: list[Any] = []
        for size, reply in zip(sizes, await self._run(commands), strict=True):
            if isinstance(reply, Exception) or not isinstance(reply, list) or len(reply) != size:
                replies.extend([reply if isinstance(reply, Exception) else ResponseError(repr(reply))] * size)
            else:
                replies.extend(reply)
        return replies

    async def _run(self, commands: Sequence[Command]) -> list[Any]:
        """Send EVALSHA ``commands`` of this script in one write (loading the script if the server lacks it)."""
        replies = await self._connections.exchange(pack(commands), len(commands))
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # first use, or the server restarted / flushed its scripts: nothing of those calls ran
            await self._redis.script_load(self._script)
            again = [commands[i] for i in missing]
            for i, reply in zip(missing, await self._connections.exchange(pack(again), len(again)), strict=True):
                replies[i] = reply
        return replies

    async def _send_queued(self) -> None:
        self._in_flight += 1
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    replies = await self.many([(keys, args) for keys, args, _ in batch])
                except Exception as exc:  # e.g. Redis unreachable: every caller of this batch gets the error
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for _, _, future in batch:
                        future.cancel()
                    raise
                for (_, _, future), reply in zip(batch, replies, strict=True):
                    if not future.done():  # done: its caller went away (cancelled)
                        future.set_result(reply)
        finally:
            self._in_flight -= 1
            self._sender = None
            for _, _, future in self._queue:  # only left here if this task itself was cancelled
                future.cancel()
            self._queue = []
