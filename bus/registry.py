"""Finding installed consumers through the ``hookbus.consumers`` entry-point group.

A package declares ``[project.entry-points."hookbus.consumers"] name = "module:consumer"``; bus/ loads it by name,
so it never imports consumers/ itself.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from .consumer import Consumer
from .errors import ConfigError

GROUP = "hookbus.consumers"


def consumer_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_consumer(name: str) -> Consumer:
    """The consumer registered as ``name``. Raises :class:`ConfigError` if there is none."""
    matches = entry_points(group=GROUP, name=name)
    if not matches:
        raise ConfigError(f"no consumer named {name!r}; installed: {', '.join(consumer_names()) or 'none'}")
    consumer = next(iter(matches)).load()
    if not isinstance(consumer, Consumer):
        raise ConfigError(f"entry point {name!r} is not a bus.Consumer")
    return consumer


def load_consumers() -> list[Consumer]:
    return [load_consumer(name) for name in consumer_names()]
