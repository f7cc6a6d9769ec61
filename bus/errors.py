"""Exceptions raised by hookbus.

    HookbusError
    ├── ConfigError          a setting is missing or malformed (raised at start-up)
    ├── EnvelopeError        bytes on a stream are not a valid event envelope (dead-lettered, never retried)
    └── HandlerError         raised by a handler to steer the worker
        ├── RetryLater       transient: leave the entry pending and retry after ``delay`` seconds (or the backoff)
        │   └── NotReady     "not yet known": something this event depends on has not arrived yet (out-of-order
        │                    delivery); retry after a short fixed ``delay``, logged at INFO, not as a failure
        └── PermanentError   retrying cannot help: dead-letter the entry now with this reason

Any other exception from a handler counts as a transient failure and is retried.
"""

from __future__ import annotations


class HookbusError(Exception):
    """Base class of every hookbus exception."""


class ConfigError(HookbusError, ValueError):
    """A setting is missing or malformed."""


class EnvelopeError(HookbusError, ValueError):
    """A stream entry does not hold a valid event envelope."""


class HandlerError(HookbusError):
    """Base class for exceptions a handler raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class RetryLater(HandlerError):
    """Transient failure. ``delay`` (seconds, from a ``Retry-After`` for instance) is the earliest next attempt."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class NotReady(RetryLater):
    """The event cannot be applied *yet* (a cancellation before its booking, a refund before its payment).

    The entry is retried after ``delay`` seconds (default 2) regardless of the failure backoff; it still counts as a
    delivery, so an event whose predecessor never arrives ends in the dead-letter stream instead of waiting forever.
    """

    def __init__(self, reason: str, *, delay: float = 2.0) -> None:
        super().__init__(reason, delay=delay)


class PermanentError(HandlerError):
    """Retrying cannot succeed (e.g. a downstream 400 validation error): the entry goes to the dead-letter stream."""
