"""hookbus's core library: event envelope, streams and groups, publisher, worker runtime."""

from __future__ import annotations

from .consumer import Consumer, Context
from .envelope import Event
from .errors import ConfigError, EnvelopeError, HandlerError, HookbusError, NotReady, PermanentError, RetryLater
from .naming import Names, idempotency_key
from .publisher import Publisher, PublishResult
from .retry import RetryPolicy
from .worker import Worker

__all__ = [
    "ConfigError",
    "Consumer",
    "Context",
    "EnvelopeError",
    "Event",
    "HandlerError",
    "HookbusError",
    "Names",
    "NotReady",
    "PermanentError",
    "PublishResult",
    "Publisher",
    "RetryLater",
    "RetryPolicy",
    "Worker",
    "idempotency_key",
]
