"""Finding installed consumers through the ``hookbus.consumers`` entry-point group.

A package declares ``[project.entry-points."hookbus.consumers"] name = "module:consumer"``; bus/ loads it by name,
so it never imports consumers/ itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .consumer import Consumer
from .errors import ConfigError

GROUP = "hookbus.consumers"


def consumer_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_consumer(name: str) -> Consumer:
    """The consumer registered as ``name``, or at the import path ``module:attribute``.

    Raises :class:`ConfigError` if there is none.
    """
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            consumer = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import consumer {name!r}: {exc}") from exc
        if not isinstance(consumer, Consumer):
            raise ConfigError(f"{name!r} is not a bus.Consumer")
        return consumer
    matches = entry_points(group=GROUP, name=name)
    if not matches:
        raise ConfigError(f"no consumer named {name!r}; installed: {', '.join(consumer_names()) or 'none'}")
    consumer = next(iter(matches)).load()
    if not isinstance(consumer, Consumer):
        raise ConfigError(f"entry point {name!r} is not a bus.Consumer")
    return consumer


def load_consumers() -> list[Consumer]:
    return [load_consumer(name) for name in consumer_names()]
