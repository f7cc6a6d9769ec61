"""Types shared by every webhook source.

A source is one provider's webhook scheme: :meth:`Source.verify` checks the signature over the raw request body
(never a re-serialized copy, see case 001) and :meth:`Source.parse` turns the verified body into a :class:`Delivery`
holding zero or more canonical :class:`bus.envelope.Event` objects.

The app maps the two exceptions to HTTP answers: :class:`SignatureError` → 401, :class:`PayloadError` → 400.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bus.envelope import Event

__all__ = [
    "Delivery",
    "PayloadError",
    "RequestSource",
    "SignatureError",
    "Source",
    "TimestampedSource",
    "check_timestamped_hmac",
    "UnsupportedMediaType",
    "header_value",
    "hmac_sha256",
    "hmac_sha256_hex",
    "matches_any",
]


class SignatureError(Exception):
    """Missing or bad signature, or a timestamp outside the replay window (→ HTTP 401).

    The message is a short human reason (``"no signature matches"``); it never contains a secret or the expected
    signature, so it is safe to log and to return to the caller.
    """


class PayloadError(Exception):
    """The (verified) body is malformed: not JSON, wrong shape, bad amount or currency (→ HTTP 400)."""

    #: The HTTP status and error code ingest answers with.
    status_code = 400
    code = "bad_request"


class UnsupportedMediaType(PayloadError):
    """The body's ``Content-Type`` is not one the source reads (→ HTTP 415), e.g. ``text/plain`` on a form route."""

    status_code = 415
    code = "unsupported_media_type"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery after parsing.

    - ``event_id``: the provider's event id (``evt_…`` for Stripe); the dedupe key together with the source name.
    - ``provider_type``: the provider's own event type, e.g. ``"charge.refunded"``.
    - ``events``: the canonical events to publish; an empty tuple means hookbus does not handle this type.
    - ``dedupe_ttl_s``: how long (seconds) ``event_id`` is remembered; ``None``: ``HOOKBUS_DEDUPE_TTL_S``. A source
      whose id is a hash of the content (a form post without a sender id) sets a short window here.
    """

    event_id: str
    provider_type: str
    events: tuple[Event, ...] = ()
    dedupe_ttl_s: int | None = None


@runtime_checkable
class Source(Protocol):
    """A provider's webhook scheme.

    - ``name``: the source name, used as the CloudEvents ``source`` attribute and in routes, metrics, dedupe keys.
    - ``max_body_bytes``: largest accepted request body in bytes; the app enforces it before reading further (case 036).
    """

    name: str
    max_body_bytes: int

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> float | None:
        """Check the signature of ``body`` (the raw bytes as received) at Unix time ``now`` (seconds).

        ``headers`` is looked up case-insensitively (the app passes a ``starlette.datastructures.Headers``).
        Raises :class:`SignatureError`. For an authentic and fresh delivery, returns the Unix time (seconds) it was
        signed at when the scheme signs one and the source has it at hand (ingest counts a time in its future as
        clock skew, without parsing the header again), else ``None``.
        """
        ...

    def parse(self, body: bytes) -> Delivery:
        """Normalize a verified body into a :class:`Delivery`. Raises :class:`PayloadError`."""
        ...


@runtime_checkable
class RequestSource(Protocol):
    """A source whose normalization needs the request headers too (a topic or message id sent as a header, the
    body's ``Content-Type``). Ingest calls :meth:`parse_request` instead of ``parse`` when a source has it."""

    def parse_request(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Normalize a verified delivery from its headers and raw body. Raises :class:`PayloadError`."""
        ...


@runtime_checkable
class TimestampedSource(Protocol):
    """A source whose signature covers a timestamp; ingest counts timestamps in its future as clock skew. Asked only
    when :meth:`Source.verify` returned ``None``."""

    def signed_at(self, headers: Mapping[str, str]) -> float:
        """Unix time (seconds) the delivery was signed at, from an already verified delivery's headers."""
        ...


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` looked up case-insensitively, or ``None``.

    Works with ``starlette.datastructures.Headers`` (already case-insensitive; first value wins) and plain dicts.
    """
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """Lower-case hex HMAC-SHA256 (RFC 2104) of ``message`` under ``key``: 64 characters."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_sha256(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with ``key`` and fed nothing yet: ``.copy()`` it per message, which skips hashing the key
    again (about a third of the cost of a fresh ``hmac.new`` for a 1 KB message)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def matches_any(expected: str, candidates: Iterable[str]) -> bool:
    """Whether any candidate equals ``expected``, compared in constant time.

    Every candidate is compared with :func:`hmac.compare_digest` (no early exit on the first match). Strings are
    compared as UTF-8 bytes, so a non-ASCII candidate from a hostile header is a plain mismatch, not a ``TypeError``.
    """
    wanted = expected.encode("utf-8")
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(wanted, candidate.encode("utf-8", "replace"))
    return found


def check_timestamped_hmac(
    macs: Iterable[hmac.HMAC],
    timestamp: int,
    candidates: Iterable[str],
    body: bytes,
    now: float,
    tolerance_s: float,
    *,
    what: str,
) -> None:
    """The ``t=…,v1=…`` scheme Stripe and Calendly share: hex HMAC-SHA256 of ``"{t}.{raw body}"`` under each key
    must equal one of ``candidates`` (constant time, every key × every candidate), and ``t`` (Unix seconds) must be
    at most ``tolerance_s`` old. ``macs`` are the keys as :func:`hmac_sha256` objects (copied, never updated). The
    signature is checked first, so the age message is only given for an authentic delivery. ``what`` names the
    signature in messages (``"Stripe"``). Raises :class:`SignatureError`.
    """
    prefix = b"%d." % timestamp
    wanted = [candidate.encode("utf-8", "replace") for candidate in candidates]
    found = False
    for mac in macs:
        signed = mac.copy()
        signed.update(prefix)
        signed.update(body)
        expected = signed.hexdigest().encode()
        for candidate in wanted:
            found |= hmac.compare_digest(expected, candidate)
    if not found:
        raise SignatureError(f"no {what} signature matches the payload")
    if now - timestamp > tolerance_s:
        raise SignatureError(f"{what} signature timestamp {timestamp} is older than {tolerance_s} s")
