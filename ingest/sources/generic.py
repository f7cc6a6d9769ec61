"""Any sender that signs the Standard Webhooks way: ``POST /webhooks/{name}`` for each configured ``name``.

Configured in the rules file, one section per sender (the secret itself stays in the environment)::

    [sources.standard.acme-erp]
    secret_env = "ACME_ERP_WEBHOOK_SECRET"      # whsec_… (comma-separated during a rotation)
    [sources.standard.acme-erp.types]           # the sender's type → a canonical event type
    "invoice.settled" = "acme.invoice_settled"
    "customer.signed_up" = "lead.created"

Optional keys: ``secret_encoding`` (``"base64"``, or ``"raw-utf8"`` for senders that key the HMAC with the literal
secret string), ``tolerance_s`` (300), ``max_body_bytes`` (1 MiB), ``type_field`` (``"type"``), ``data_field``
(``"data"``; ``""`` publishes the whole payload), ``time_field`` (``"timestamp"``), ``subject_field`` (a dotted path
such as ``"data.id"``).

Signatures are checked by :mod:`ingest.sources.standard_webhooks` (spec:
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md); ``webhook-id`` is the
dedupe id. The payload must be a JSON object whose ``type_field`` names the sender's event type, as the spec
recommends (``{"type": "…", "timestamp": "…", "data": {…}}``). A mapped type is published with the sender's
``data`` object unchanged as the event data; an unmapped type is answered 200 ``ignored`` and counted. Map a sender
only to a canonical type whose consumers accept that data shape, or to a type of your own read by your own consumer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from bus import rules
from bus.envelope import Event, from_unix, rfc3339
from bus.errors import ConfigError

from .base import Delivery, PayloadError
from .env import secrets_from_env
from .standard_webhooks import SecretEncoding, StandardWebhooksVerifier

__all__ = [
    "StandardSource",
    "StandardSourceConfig",
    "StandardSourcesSection",
    "from_env",
    "load_object",
    "rfc3339_or_none",
]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)
_EVENT_TYPE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+", re.ASCII)


class StandardSourceConfig(BaseModel):
    """One ``[sources.standard.<name>]`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_env: str
    types: dict[str, str] = Field(default_factory=dict)
    secret_encoding: SecretEncoding = "base64"
    tolerance_s: int = Field(default=300, gt=0)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    type_field: str = "type"
    data_field: str = "data"
    time_field: str = "timestamp"
    subject_field: str | None = None

    @field_validator("types")
    @classmethod
    def _canonical(cls, value: dict[str, str]) -> dict[str, str]:
        for sender_type, event_type in value.items():
            if not _EVENT_TYPE.fullmatch(event_type):
                raise ValueError(
                    f"{sender_type!r} maps to {event_type!r}, which is not an event type like 'lead.created'"
                )
        return value


class StandardSourcesSection(RootModel[dict[str, StandardSourceConfig]]):
    """``[sources.standard]``: source name → its configuration."""

    @field_validator("root")
    @classmethod
    def _names(cls, value: dict[str, StandardSourceConfig]) -> dict[str, StandardSourceConfig]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"source name {name!r} must be 1-64 lower-case letters, digits, '-' or '_'")
        return value


def _path(payload: Mapping[str, Any], dotted: str) -> Any:
    value: Any = payload
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def rfc3339_or_none(value: Any) -> str | None:
    """RFC 3339 (offset kept) of an ISO 8601 time with an offset; None if absent, unreadable or without offset."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return rfc3339(moment) if moment.tzinfo is not None else None


class StandardSource:
    """A configured Standard Webhooks sender (see the module docstring)."""

    def __init__(self, name: str, config: StandardSourceConfig, secrets: tuple[str, ...]) -> None:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"source name {name!r} must be 1-64 lower-case letters, digits, '-' or '_'")
        self.name = name
        self.config = config
        self.max_body_bytes = config.max_body_bytes
        try:
            self.verifier = StandardWebhooksVerifier(
                secrets, encoding=config.secret_encoding, tolerance_s=config.tolerance_s
            )
        except ConfigError as exc:
            raise ConfigError(f"[sources.standard.{name}] (${config.secret_env}): {exc}") from None

    def __repr__(self) -> str:
        return f"StandardSource({self.name!r}, types={sorted(self.config.types)})"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        self.verifier.verify(headers, body, now)

    def signed_at(self, headers: Mapping[str, str]) -> float:
        return float(self.verifier.message(headers).timestamp)

    def parse(self, body: bytes) -> Delivery:
        raise PayloadError("Standard Webhooks deliveries need their headers (webhook-id)")

    def parse_request(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        message = self.verifier.message(headers)
        payload = load_object(body)
        sender_type = payload.get(self.config.type_field)
        if not isinstance(sender_type, str) or not sender_type:
            raise PayloadError(f"payload lacks a string {self.config.type_field!r}")
        event_type = self.config.types.get(sender_type)
        if event_type is None:
            return Delivery(event_id=message.msg_id, provider_type=sender_type)
        data = payload.get(self.config.data_field) if self.config.data_field else payload
        if not isinstance(data, dict):
            raise PayloadError(f"payload field {self.config.data_field!r} must be an object")
        subject = _path(payload, self.config.subject_field) if self.config.subject_field else None
        event = Event(
            id=message.msg_id,
            source=self.name,
            type=event_type,
            time=rfc3339_or_none(payload.get(self.config.time_field)) or from_unix(message.timestamp),
            data=data,
            subject=str(subject) if isinstance(subject, str | int) and not isinstance(subject, bool) else None,
        )
        return Delivery(event_id=message.msg_id, provider_type=sender_type, events=(event,))


def load_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a verified body. Raises :class:`PayloadError`."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadError("body is not a JSON object")
    return payload


def from_env() -> list[StandardSource]:
    """One source per ``[sources.standard.<name>]`` whose secret is set (others are skipped: their route is 404)."""
    section = rules.section("sources.standard", StandardSourcesSection).root
    return [
        StandardSource(name, config, secrets)
        for name, config in section.items()
        if (secrets := secrets_from_env(config.secret_env))
    ]
