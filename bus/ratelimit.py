"""One rate limiter shared by every worker process and replica, kept in Redis.

Each downstream API and account (a QuickBooks realm, a Twilio sending number, a Google Calendar user) has its own
key. The limit is a GCRA (generic cell rate algorithm, the "leaky bucket as a meter" of ITU-T I.371): ``rate``
requests per ``period_s`` seconds with up to ``burst`` requests at once. A Lua script does the check and the update
atomically with the *server's* clock (``TIME``), so processes on hosts with skewed clocks share one schedule.
An optional ``concurrency`` caps requests in flight per key (a sorted set of leases that expire, so a crashed
holder frees its slot).

A ``429`` (or a provider's quota error) with ``Retry-After`` pauses the key for every process until then
(:meth:`Limiter.pause`).

A handler asks before each call (:meth:`Limiter.acquire`, or automatically through :func:`event_hooks` on an
``httpx.AsyncClient``). Over the limit it waits up to ``max_wait_s``; beyond that it raises
:class:`bus.errors.RetryLater` with the time to wait, so the worker releases the entry for a later retry instead of
holding a slot while it sleeps.

Keys: ``{prefix}:ratelimit:{api}:{account}`` (GCRA theoretical arrival time, ms), ``…:pause`` (a key with a TTL),
``…:inflight`` (sorted set of leases).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from . import metrics
from .errors import RetryLater
from .naming import Names

# KEYS: 1 = GCRA state, 2 = pause key, 3 = in-flight leases. ARGV: 1 = emission interval (ms, float),
# 2 = burst tolerance (ms), 3 = concurrency (0 = unlimited), 4 = lease (ms), 5 = lease token.
# Returns {1, 0} when allowed (and, with a concurrency cap, the lease is taken), else {0, ms to wait}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused} end
local limit = tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= limit then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {0, math.max(1, math.min(50, tonumber(first[2]) - now))}
  end
end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tonumber(ARGV[2])
if now < allow_at then return {0, math.ceil(allow_at - now)} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
if limit > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[5])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]) * 2)
end
return {1, 0}
"""

# KEYS: 1 = pause key. ARGV: 1 = pause (ms). Only ever lengthens a pause.
_PAUSE = """
local current = redis.call('PTTL', KEYS[1])
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class Limit(BaseModel):
    """A downstream limit: ``rate`` requests per ``period_s`` seconds, ``burst`` at once, and at most
    ``concurrency`` in flight (0 = no cap). Rules-file section ``[ratelimits.<api>]``."""

    rate: float = Field(gt=0)
    period_s: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)
    concurrency: int = Field(default=0, ge=0)

    @property
    def interval_ms(self) -> float:
        return self.period_s * 1000 / self.rate


#: Published limits, the defaults when the rules file does not override them.
DEFAULT_LIMITS: dict[str, Limit] = {
    # QuickBooks Online: 500 requests per minute per realm, 10 concurrent requests per realm.
    # https://developer.intuit.com/app/developer/qbo/docs/learn/rest-api-features#limits-and-throttles
    "quickbooks": Limit(rate=500, period_s=60, burst=10, concurrency=10),
    # HubSpot private apps: 100 requests per 10 seconds (Free/Starter; 190 on Professional/Enterprise).
    # https://developers.hubspot.com/docs/api/usage-details#rate-limits
    "hubspot": Limit(rate=100, period_s=10, burst=10),
    # Twilio: a US long code sends 1 message segment per second; the key is the sending number.
    # https://help.twilio.com/articles/115002943027-Understanding-Twilio-Rate-Limits-and-Message-Queues
    "twilio": Limit(rate=1, period_s=1, burst=1),
    # Google Calendar API: 600 queries per minute per user (the default per-user quota).
    # https://developers.google.com/calendar/api/guides/quota
    "google_calendar": Limit(rate=600, period_s=60, burst=10),
}


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted request: release it when the response is in (frees a concurrency slot)."""

    api: str
    account: str
    token: str
    waited_s: float


class Limiter:
    """Acquire before each downstream request; ``limits`` maps an API name to its :class:`Limit`.

    ``max_wait_s`` (seconds) bounds how long :meth:`acquire` waits before giving up with ``RetryLater``;
    ``lease_s`` bounds how long a concurrency slot is held if its holder never releases it.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        names: Names,
        limits: Mapping[str, Limit] | None = None,
        *,
        max_wait_s: float = 5.0,
        lease_s: float = 60.0,
    ) -> None:
        self._redis = redis
        self._names = names
        self._limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._max_wait_s = max_wait_s
        self._lease_ms = int(lease_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)

    def limit(self, api: str) -> Limit | None:
        return self._limits.get(api)

    def _keys(self, api: str, account: str) -> list[str]:
        base = f"{self._names.prefix}:ratelimit:{api}:{account}"
        return [base, f"{base}:pause", f"{base}:inflight"]

    async def acquire(self, api: str, account: str) -> Lease:
        """Wait (up to ``max_wait_s``) for a request slot of ``api``/``account``.

        An API without a configured limit is not limited. Raises :class:`RetryLater` with the remaining wait when
        the slot is further away than the bound, or the key is paused longer than that.
        """
        token = secrets.token_hex(8)
        limit = self._limits.get(api)
        if limit is None:
            return Lease(api, account, token, 0.0)
        keys = self._keys(api, account)
        args = [limit.interval_ms, limit.interval_ms * (limit.burst - 1), limit.concurrency, self._lease_ms, token]
        started = time.monotonic()
        throttled = False
        while True:
            allowed, wait_ms = await self._acquire(keys=keys, args=args)
            waited = time.monotonic() - started
            if allowed:
                if throttled:
                    metrics.RATELIMIT_WAIT.labels(api).inc(waited)
                return Lease(api, account, token, waited)
            if not throttled:
                throttled = True
                metrics.RATELIMIT_THROTTLED.labels(api).inc()
            wait_s = int(wait_ms) / 1000
            if waited + wait_s > self._max_wait_s:
                metrics.RATELIMIT_WAIT.labels(api).inc(waited)
                metrics.RATELIMIT_RELEASED.labels(api).inc()
                raise RetryLater(f"{api} rate limit: next slot in {wait_s:.3f} s", delay=wait_s)
            await asyncio.sleep(wait_s)

    async def release(self, lease: Lease) -> None:
        """Free the lease's concurrency slot (no-op without a concurrency cap)."""
        limit = self._limits.get(lease.api)
        if limit is not None and limit.concurrency:
            await self._redis.zrem(self._keys(lease.api, lease.account)[2], lease.token)

    async def pause(self, api: str, account: str, seconds: float) -> None:
        """Stop every process from calling ``api``/``account`` for ``seconds`` (a ``Retry-After``)."""
        if seconds > 0:
            metrics.RATELIMIT_PAUSED.labels(api).inc()
            await self._pause(keys=[self._keys(api, account)[1]], args=[int(seconds * 1000)])


def configured_limits() -> dict[str, Limit]:
    """:data:`DEFAULT_LIMITS`, with the rules file's ``[ratelimits.<api>]`` sections applied on top.

    For a known API a section may change single fields (``rate = 400`` keeps the default ``period_s``); a new API
    needs at least ``rate`` and ``period_s``. Raises :class:`bus.errors.ConfigError` naming the section.
    """
    from pydantic import ValidationError

    from .errors import ConfigError
    from .rules import rules_path, section

    class Section(BaseModel):
        model_config = {"extra": "allow"}

    overrides = section("ratelimits", Section).model_extra or {}
    limits = dict(DEFAULT_LIMITS)
    for api, value in overrides.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{rules_path()}: [ratelimits.{api}] must be a table (rate = …, period_s = …)")
        try:
            base = limits[api].model_dump() if api in limits else {}
            limits[api] = Limit.model_validate(base | value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{rules_path()}: [ratelimits.{api}] {problems}") from exc
    return limits
