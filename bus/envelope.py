"""The event envelope: what travels on every hookbus stream.

Attribute names follow CloudEvents 1.0 (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md):
``id``, ``source``, ``type``, ``subject``, ``time``, ``data`` plus ``specversion``. ``id`` is the provider's own
event id (unique per ``source``), which is what makes deduplication and idempotency keys stable.

On a stream an event is one entry with a single field ``event`` holding the orjson-encoded envelope, so an entry
is read and written in one piece and the format can grow without new fields.
"""

from __future__ import annotations

import datetime as dt
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import EnvelopeError

SPECVERSION = "1.0"
FIELD = b"event"


_second: list[Any] = [None, ""]  # the last whole second formatted by utc_now_rfc3339, and its text


def utc_now_rfc3339() -> str:
    """The current time as RFC 3339 with an explicit ``Z`` offset, millisecond precision.

    Ingest stamps every webhook with it, so the text of the current second is formatted once and reused."""
    now = _time.time()
    second = int(now)
    if _second[0] != second:
        _second[0], _second[1] = second, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


_parsed_second: list[Any] = [None, 0.0]  # the last whole second parsed by utc_rfc3339_to_unix_s, and its Unix time


def utc_rfc3339_to_unix_s(text: str) -> float:
    """Unix time in seconds of an RFC 3339 time with an offset, e.g. ``receivedtime``. Raises ValueError.

    The worker reads every event's ``receivedtime`` for its latency metric, so the format
    :func:`utc_now_rfc3339` writes (``2026-01-01T00:00:00.123Z``) reuses the parse of the last whole second."""
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit():
        prefix = text[:19]
        if _parsed_second[0] != prefix:
            moment = dt.datetime.fromisoformat(prefix + "+00:00")
            _parsed_second[0], _parsed_second[1] = prefix, moment.timestamp()
        return _parsed_second[1] + int(text[20:23]) / 1000
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no offset")
    return moment.timestamp()


def rfc3339(moment: dt.datetime) -> str:
    """Format an aware datetime as RFC 3339 (``2026-01-01T00:00:00.000Z`` for UTC)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: an RFC 3339 time needs an offset")
    text = moment.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def from_unix(seconds: int | float) -> str:
    """RFC 3339 UTC time of a Unix timestamp in seconds (Stripe's ``created``). Raises ValueError for a time the
    platform cannot represent (before year 1 or after 9999, or beyond what its C library takes)."""
    try:
        return rfc3339(dt.datetime.fromtimestamp(seconds, dt.UTC))
    except (OverflowError, OSError) as exc:  # OSError: EOVERFLOW from the C library for some huge values
        raise ValueError(f"Unix time {seconds!r} is out of range") from exc


@dataclass(frozen=True, slots=True)
class Event:
    """One canonical event.

    - ``id``: the source's event id (``evt_…`` for Stripe); with ``source`` it identifies the event.
    - ``source``: the provider name, e.g. ``"stripe"``.
    - ``type``: a canonical type such as ``"payment.succeeded"`` (see ARCHITECTURE.md).
    - ``subject``: the business object the event is about (a payment intent id, a booking uid), or ``None``.
    - ``time``: RFC 3339 time at which the event happened at the source.
    - ``data``: JSON-serializable payload. Money is an integer in minor units plus an ISO 4217 ``currency``.
    - ``extensions``: CloudEvents extension attributes (lower-case alphanumeric names), e.g. ``receivedtime``.
    """

    id: str
    source: str
    type: str
    time: str
    data: Mapping[str, Any]
    subject: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.subject is not None:
            doc["subject"] = self.subject
        doc.update(self.extensions)
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Decode an envelope. Raises :class:`bus.errors.EnvelopeError` if it is not a valid hookbus event."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"envelope is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise EnvelopeError("envelope is not a JSON object")
        try:
            if doc.pop("specversion") != SPECVERSION:
                raise EnvelopeError("unsupported specversion")
            doc.pop("datacontenttype", None)
            # Popped one by one, not in a loop: this runs once per delivery on the worker's hot path.
            event_id, source, event_type, time, data = (
                doc.pop("id"),
                doc.pop("source"),
                doc.pop("type"),
                doc.pop("time"),
                doc.pop("data"),
            )
            subject = doc.pop("subject", None)
        except KeyError as exc:
            raise EnvelopeError(f"envelope lacks required attribute {exc.args[0]!r}") from exc
        for value in (event_id, source, event_type, time):
            if not (type(value) is str and value):
                raise EnvelopeError("envelope attributes id, source, type and time must be non-empty strings")
        if type(data) is not dict:
            raise EnvelopeError("envelope data must be a JSON object")
        # What is left are the extension attributes, as text (CloudEvents' canonical string form).
        for name, value in doc.items():
            if type(value) is not str:
                doc[name] = str(value)
        return _new_event(event_id, source, event_type, time, data, subject, doc)

    def to_fields(self) -> dict[bytes, bytes]:
        """The stream entry fields for XADD."""
        return {FIELD: self.to_json()}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> Event:
        """Decode a stream entry's fields. Raises :class:`bus.errors.EnvelopeError`."""
        raw = fields.get(FIELD)
        if raw is None:
            raise EnvelopeError("stream entry has no 'event' field")
        return cls.from_json(raw)


_set_id, _set_source, _set_type, _set_time, _set_data, _set_subject, _set_extensions = (
    Event.__dict__[name].__set__ for name in ("id", "source", "type", "time", "data", "subject", "extensions")
)


def _new_event(
    event_id: str, source: str, event_type: str, time: str, data: Any, subject: str | None, extensions: Any
) -> Event:
    """An :class:`Event` of already validated values, made without the frozen dataclass's ``__init__`` (which calls
    ``object.__setattr__`` once per field): this runs once per delivery on the worker's hot path."""
    event = object.__new__(Event)
    _set_id(event, event_id)
    _set_source(event, source)
    _set_type(event, event_type)
    _set_time(event, time)
    _set_data(event, data)
    _set_subject(event, subject)
    _set_extensions(event, extensions)
    return event
