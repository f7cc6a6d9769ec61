"""Creating Redis clients with timeouts that suit each role.

redis-py's own exceptions (``redis.exceptions.ConnectionError``, ``TimeoutError``) are not subclasses of the
builtin ones, so code that must survive an outage catches :data:`REDIS_DOWN` (see shared case 030).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

#: Exceptions meaning "the server cannot be reached right now"; retry later, never crash.
REDIS_DOWN: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (it comes with ``uvicorn[standard]``), else on asyncio's loop:
    a worker spends much of its time in the event loop, and uvloop's is several times cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def connect(url: str, *, socket_timeout_s: float, connect_timeout_s: float = 1.0) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` that returns bytes.

    ``socket_timeout_s`` bounds every command. A worker blocking in ``XREADGROUP BLOCK <ms>`` must pass a value
    larger than the BLOCK time, or an idle stream looks like an outage (shared case 029).

    A command is retried once, at once, on a connection error: that replaces a pooled connection that went stale
    when the server restarted. Longer outages are the caller's to handle (ingest answers 503, workers back off).
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
        health_check_interval=30,
        decode_responses=False,
    )


#: Error replies meaning "the server cannot take this write now" (out of memory, a long script, a replica, a failed
#: save, a failover), not "this command is wrong": ingest answers 503 and workers back off, as for an outage.
UNAVAILABLE_REPLIES = ("OOM", "BUSY", "READONLY", "MISCONF", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def is_unavailable(exc: BaseException) -> bool:
    """True for an outage (:data:`REDIS_DOWN`) or an error reply in :data:`UNAVAILABLE_REPLIES`.

    redis-py turns some of those replies into their own exception classes and drops the code from the message
    (``OOM command not allowed…`` becomes ``OutOfMemoryError("command not allowed…")``, with the code in
    ``status_code``); error replies it passes on as they are (inside a script's reply, for one) keep it in the text."""
    if isinstance(exc, REDIS_DOWN):
        return True
    if not isinstance(exc, ResponseError):
        return False
    code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
    return code in UNAVAILABLE_REPLIES or isinstance(exc, OutOfMemoryError | ReadOnlyError)
