"""Encoding ingest's envelopes: each event's ``Event.to_json()`` with ingest's own extension attributes added.

Ingest stamps every event with ``receivedtime``; building a second :class:`bus.envelope.Event` only to carry one more
attribute costs more than the encoding itself, so the attribute is appended to the encoded object instead. The bytes
are those of ``Event.to_json()`` for the event carrying the attribute (orjson writes a dict's keys in insertion order
and ``to_json`` adds extensions last), or that very call when appending could differ (an attribute the event already
has, or a core attribute's name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import orjson

from bus.envelope import Event

__all__ = ["envelope_json"]

#: The attributes ``Event.to_json()`` writes before the extensions.
_CORE = frozenset({"specversion", "id", "source", "type", "time", "datacontenttype", "data", "subject"})


def envelope_json(event: Event, extensions: Mapping[str, str]) -> bytes:
    """``event.to_json()`` for ``event`` with ``extensions`` merged over its own (the later wins): JSON bytes."""
    if not extensions:
        return event.to_json()
    if (event.extensions and not event.extensions.keys().isdisjoint(extensions)) or not _CORE.isdisjoint(extensions):
        return dataclasses.replace(event, extensions={**event.extensions, **extensions}).to_json()
    return event.to_json()[:-1] + b"," + orjson.dumps(extensions)[1:]
