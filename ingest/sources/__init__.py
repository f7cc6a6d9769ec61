"""Webhook sources: one module per provider (signature scheme + normalization into canonical events).

:func:`configured_sources` asks every source module for the sources its settings configure; a source without its
secret is simply absent (its route answers 404). Add a provider by writing its module with a ``from_env()`` that
returns its configured sources and listing it in ``FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .base import Source
from .calcom import from_env as calcom_sources
from .calendly import from_env as calendly_sources
from .forms import from_env as form_sources
from .generic import from_env as standard_sources
from .google_calendar import from_env as google_calendar_sources
from .inventory import from_env as inventory_sources
from .shopify import from_env as shopify_sources
from .stripe import from_env as stripe_sources

#: Each returns the sources it configures from the environment and the rules file (possibly none).
FACTORIES: list[Callable[[], Iterable[Source]]] = [
    stripe_sources,
    form_sources,
    shopify_sources,
    inventory_sources,
    standard_sources,
    calendly_sources,
    calcom_sources,
    google_calendar_sources,
]


def configured_sources() -> dict[str, Source]:
    """Every configured source by name (the route is ``POST /webhooks/{name}``; a name may contain ``/``)."""
    sources: dict[str, Source] = {}
    for factory in FACTORIES:
        for source in factory():
            if source.name in sources:
                raise ValueError(f"two sources are named {source.name!r}")
            sources[source.name] = source
    return sources
