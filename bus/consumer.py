"""Declaring a consumer: its name (which is also its consumer group), the event types it handles, its handlers.

    from bus import Consumer, Context, Event

    consumer = Consumer("accounting")

    @consumer.handler("payment.succeeded")
    async def book_payment(event: Event, ctx: Context) -> None:
        ...

A handler returns normally on success (the entry is acked), raises :class:`bus.errors.RetryLater` or any other
exception for a transient failure (the entry stays pending and is retried with backoff), or raises
:class:`bus.errors.PermanentError` to dead-letter the entry at once. A handler never acks by itself.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis

from .envelope import Event
from .naming import Names, idempotency_key
from .ordering import newer_or_same
from .ratelimit import Limiter
from .retry import RetryPolicy
from .steps import STEP_TTL_S, once

T = TypeVar("T")

StartFrom = Literal["new", "oldest"]


@dataclass(frozen=True, slots=True)
class Shared:
    """What every :class:`Context` of one worker shares: built once per worker, not per delivery."""

    group: str
    consumer: str
    redis: aioredis.Redis
    names: Names
    state: Mapping[str, Any]
    handler_log: logging.Logger


class Context:
    """What a handler gets besides the event.

    - ``group``: the consumer group (= the consumer's name); ``consumer``: this process's consumer name.
    - ``stream`` and ``entry_id``: where the event sits; ``delivery_count``: deliveries so far, this one included
      (from the pending entries list in Redis, so it survives restarts).
    - ``idempotency_key``: stable for (group, source, event id); pass it downstream so a retry cannot act twice.
    - ``redis``: the worker's client, for the consumer's own bookkeeping under ``names.state(group, ...)``.
    - ``state``: what the consumer's lifespan yielded (API clients, settings).
    - ``log``: a logger whose lines carry the event id, type, source, group, entry id and attempt.
    - ``notes``: facts the handler recorded with :meth:`note`, shown by ``hookbus trace``.

    One is made per delivery on the worker's hot path, so what a handler may not use (the idempotency key, the
    logger) is only built when first asked for.
    """

    __slots__ = ("_shared", "stream", "entry_id", "delivery_count", "_event", "_key", "_log", "_notes")

    def __init__(self, shared: Shared, stream: str, entry_id: str, delivery_count: int, event: Event) -> None:
        self._shared = shared
        self.stream = stream
        self.entry_id = entry_id
        self.delivery_count = delivery_count
        self._event = event
        self._key: str | None = None
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self._notes: dict[str, str] | None = None

    @property
    def group(self) -> str:
        return self._shared.group

    @property
    def consumer(self) -> str:
        return self._shared.consumer

    @property
    def redis(self) -> aioredis.Redis:
        return self._shared.redis

    @property
    def names(self) -> Names:
        return self._shared.names

    @property
    def state(self) -> Mapping[str, Any]:
        return self._shared.state

    @property
    def idempotency_key(self) -> str:
        if self._key is None:
            self._key = idempotency_key(self._shared.group, self._event.source, self._event.id)
        return self._key

    @property
    def log_fields(self) -> dict[str, Any]:
        """The fields every log line about this delivery carries."""
        return {
            "event_id": self._event.id,
            "event_type": self._event.type,
            "source": self._event.source,
            "group": self._shared.group,
            "entry_id": self.entry_id,
            "attempt": self.delivery_count,
        }

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        if self._log is None:
            self._log = logging.LoggerAdapter(self._shared.handler_log, self.log_fields)
        return self._log

    @property
    def notes(self) -> dict[str, str]:
        if self._notes is None:
            self._notes = {}
        return self._notes

    @notes.setter
    def notes(self, facts: dict[str, str]) -> None:
        self._notes = facts

    def note(self, **facts: object) -> None:
        """Record facts about this delivery for the event's trace, e.g. ``ctx.note(quickbooks_id="146")``.
        Values are shown as text; never pass secrets or whole payloads."""
        self.notes.update({k: str(v) for k, v in facts.items()})

    async def once(self, step: str, action: Callable[[], Awaitable[T]], *, ttl_s: int = STEP_TTL_S) -> T:
        """Run ``action`` once for this event in this group: a retry returns the recorded result instead of running
        it again (see :mod:`bus.steps`). The result must be JSON-serializable."""
        return await once(self.redis, self.names.step(self.group, self.idempotency_key, step), action, ttl_s=ttl_s)

    async def is_current(self, object_key: str, event_time: str) -> bool:
        """False if an event newer than ``event_time`` (RFC 3339) was already applied to ``object_key`` by this
        group; otherwise record ``event_time`` and return True (see :mod:`bus.ordering`)."""
        return await newer_or_same(self.redis, self.names.state(self.group, f"version:{object_key}"), event_time)

    def key_for(self, *parts: str, source: str = "", event_id: str = "") -> str:
        """An idempotency key for something other than the whole event, e.g. a business object several events
        share (a payment reached by three Stripe events) or one step of a multi-step handler."""
        return idempotency_key(self.group, source, event_id, *parts)


Handler = Callable[[Event, Context], Awaitable[None]]
#: A factory of the async context manager that yields the handlers' shared ``state``. It may take no argument, or
#: one: the worker's :class:`Resources` (its Redis client and the shared rate limiter).
Lifespan = Callable[..., contextlib.AbstractAsyncContextManager[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Resources:
    """What a worker shares with its consumer's lifespan: its Redis client, key names, and the rate limiter that
    every process shares (pass it to downstream clients, see :class:`bus.http.InstrumentedTransport`)."""

    redis: aioredis.Redis
    names: Names
    limiter: Limiter


def enter_lifespan(
    lifespan: Lifespan, resources: Resources
) -> contextlib.AbstractAsyncContextManager[Mapping[str, Any]]:
    """Call ``lifespan`` with ``resources`` if it takes a parameter, else with none."""
    takes_resources = bool(inspect.signature(lifespan).parameters)
    return lifespan(resources) if takes_resources else lifespan()


@contextlib.asynccontextmanager
async def _no_state() -> AsyncIterator[Mapping[str, Any]]:
    yield {}


@dataclass
class Consumer:
    """A consumer: one consumer group reading one stream per handled event type.

    - ``name``: the consumer group name, also used in metrics and dead-letter stream names.
    - ``lifespan``: an async context manager factory yielding the handlers' shared ``state`` (API clients);
      entered once per worker process, given the worker's :class:`Resources` if it takes a parameter.
    - ``start_from``: where a newly created group starts: ``"new"`` (only events published after its creation, the
      default) or ``"oldest"`` (every entry still retained in the streams).
    - ``retry``: the retry schedule for failed deliveries; ``handler(..., retry=...)`` overrides it per event type.
    """

    name: str
    lifespan: Lifespan = _no_state
    start_from: StartFrom = "new"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    handlers: dict[str, Handler] = field(default_factory=dict)
    retry_overrides: dict[str, RetryPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ": \t\n*"):
            raise ValueError(f"consumer name {self.name!r} must be non-empty without ':', '*' or whitespace")

    def handler(self, event_type: str, *, retry: RetryPolicy | None = None) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine function as the handler of ``event_type``. One handler per type."""

        def register(func: Handler) -> Handler:
            if event_type in self.handlers:
                raise ValueError(f"{self.name}: a handler for {event_type!r} is already registered")
            self.handlers[event_type] = func
            if retry is not None:
                self.retry_overrides[event_type] = retry
            return func

        return register

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(sorted(self.handlers))

    def retry_for(self, event_type: str) -> RetryPolicy:
        return self.retry_overrides.get(event_type, self.retry)
