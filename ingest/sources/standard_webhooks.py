"""Standard Webhooks signatures, shared by every source that speaks them (forms, generic senders, inventory).

Spec: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md ::

    webhook-id:        msg_2KWPBgLlAfxdpx2AI54pPJ85f4W       (unique per message; the same on every retry)
    webhook-timestamp: 1767225600                            (integer Unix seconds)
    webhook-signature: v1,<base64> [v1,<base64> …]           (space-separated; one per active secret)

    signature = base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.".encode() + raw body))

The secret is ``whsec_`` + base64 of the key bytes; the key is the *decoded* bytes (shared case 004). Svix, which
the spec grew out of, sends the same headers as ``svix-id``/``svix-timestamp``/``svix-signature``; when all three
``svix-*`` headers are present they are used, as the svix library does, else the ``webhook-*`` ones.

Verification rules (case 004):

- the header value is split on runs of whitespace; a token that is not ``v1,<strict base64 of 32 bytes>`` is skipped
  (other versions such as ``v1a`` are ignored, never accepted in place of ``v1``); the delivery is authentic if any
  well-formed token equals the HMAC under any configured secret (rotation), compared in constant time;
- the timestamp must be ASCII digits and within ``tolerance_s`` (default 300 s) of the receiver clock, in either
  direction (the spec's replay window; a millisecond timestamp is therefore rejected);
- anything malformed is a :class:`~ingest.sources.base.SignatureError` (→ 401), never another exception (→ 500);
- ``webhook-id`` is the dedupe id: a sender's retry of the same message carries the same id.

Secrets: ``whsec_<base64>`` (the prefix is optional, as in the reference libraries). A value starting with ``v1,``
is a signature pasted by mistake and is refused when the source is configured. ``secret_encoding = "raw-utf8"``
keys the HMAC with the UTF-8 bytes of the whole secret string instead, for senders that sign that way (Polar did,
polarsource/polar#14102); never the default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bus.errors import ConfigError

from .base import SignatureError, header_value

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SECRET_PREFIX",
    "SecretEncoding",
    "SignedMessage",
    "StandardWebhooksVerifier",
    "decode_secret",
    "sign",
    "signature_headers",
]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300
#: Longest ``webhook-id`` accepted; it becomes part of a Redis key.
MAX_ID_LENGTH = 256
#: Shortest decoded key accepted (the spec's secrets are 24 to 64 bytes).
MIN_KEY_BYTES = 16

SecretEncoding = Literal["base64", "raw-utf8"]

_DIGITS = re.compile(r"[0-9]{1,12}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)
_SIGNATURE_BYTES = 32  # SHA-256


def decode_secret(secret: str, encoding: SecretEncoding = "base64") -> bytes:
    """The HMAC key of a configured secret. Raises :class:`bus.errors.ConfigError` naming what is wrong.

    ``"whsec_aG9v…"`` → the base64-decoded bytes (padding may be omitted); with ``encoding="raw-utf8"`` the UTF-8
    bytes of the whole string, prefix included.
    """
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigError("a Standard Webhooks secret must be a non-empty string")
    secret = secret.strip()
    if secret.startswith("v1,"):
        raise ConfigError(
            "a Standard Webhooks secret starts with 'whsec_'; this value starts with 'v1,', which prefixes "
            "signatures, not secrets (was a signature pasted instead of the secret?)"
        )
    if encoding == "raw-utf8":
        return secret.encode("utf-8")
    if encoding != "base64":
        raise ConfigError(f"secret_encoding must be 'base64' or 'raw-utf8', not {encoding!r}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "a Standard Webhooks secret must be 'whsec_' followed by base64 (set secret_encoding = 'raw-utf8' for "
            "senders that sign with the literal string)"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"a Standard Webhooks secret decodes to {len(key)} bytes; the spec's secrets are 24 to 64 bytes "
            f"(at least {MIN_KEY_BYTES} accepted)"
        )
    return key


def _signature(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + bytes(body)
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes, *, encoding: SecretEncoding = "base64") -> str:
    """The ``webhook-signature`` token ``v1,<base64>`` for ``body``, as ``standardwebhooks.Webhook.sign`` makes it."""
    digest = _signature(decode_secret(secret, encoding), msg_id, int(timestamp), body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes, *, encoding: SecretEncoding = "base64"
) -> dict[str, str]:
    """The three headers a Standard Webhooks sender sets; several secrets give a rotation list."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body, encoding=encoding) for s in secrets),
    }


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """What a verified delivery's headers say: the message id (the dedupe id) and when it was signed."""

    msg_id: str
    timestamp: int


def _headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    svix = tuple(header_value(headers, f"svix-{name}") for name in ("id", "timestamp", "signature"))
    if all(svix):
        return svix  # type: ignore[return-value]
    msg_id, timestamp, signature = (header_value(headers, f"webhook-{n}") for n in ("id", "timestamp", "signature"))
    return msg_id, timestamp, signature


def _candidates(value: str) -> list[bytes]:
    """Every well-formed ``v1,<base64>`` token of a signature header, decoded; malformed tokens are skipped."""
    found = []
    for token in value.split():
        version, sep, encoded = token.partition(",")
        if not sep or version != "v1" or "," in encoded or not _BASE64.fullmatch(encoded):
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == _SIGNATURE_BYTES:
            found.append(decoded)
    return found


class StandardWebhooksVerifier:
    """Verifies Standard Webhooks deliveries against one or more secrets.

    - ``secrets``: the active secrets (``whsec_…``); several while one is rotated.
    - ``encoding``: ``"base64"`` (the spec) or ``"raw-utf8"`` (non-conforming senders, see the module docstring).
    - ``tolerance_s``: the replay window in seconds, both directions (default 300).

    Raises :class:`bus.errors.ConfigError` for an unusable secret, so a misconfiguration stops start-up.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        encoding: SecretEncoding = "base64",
        tolerance_s: int = DEFAULT_TOLERANCE_S,
    ) -> None:
        if isinstance(secrets, str):
            raise ConfigError("secrets must be a sequence of strings, not a single string")
        if not secrets:
            raise ConfigError("a Standard Webhooks source needs at least one secret")
        if tolerance_s <= 0:
            raise ConfigError("tolerance_s must be a positive number of seconds")
        if any(secret.strip() == "v1" for secret in secrets):
            # "v1,whsec_…" split at its comma into a list of secrets: a signature prefix pasted with the secret.
            raise ConfigError(
                "a Standard Webhooks secret starts with 'whsec_'; this value starts with 'v1,', which prefixes "
                "signatures, not secrets (was 'v1,' pasted in front of the secret?)"
            )
        self._keys = tuple(decode_secret(secret, encoding) for secret in secrets)
        self.encoding = encoding
        self.tolerance_s = tolerance_s

    def __repr__(self) -> str:
        return f"StandardWebhooksVerifier(secrets=<{len(self._keys)} hidden>, tolerance_s={self.tolerance_s})"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> SignedMessage:
        """Check the signature of the raw ``body`` at Unix time ``now``; the message id and timestamp if authentic.

        Raises :class:`SignatureError` with a short reason (never a secret or an expected signature).
        """
        msg_id, timestamp, signature = _headers(headers)
        if not (msg_id and timestamp and signature):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if len(msg_id) > MAX_ID_LENGTH or not msg_id.isprintable() or not msg_id.isascii():
            raise SignatureError("webhook-id must be printable ASCII of at most 256 characters")
        if not _DIGITS.fullmatch(timestamp):
            raise SignatureError("webhook-timestamp is not an integer number of seconds")
        candidates = _candidates(signature)
        if not candidates:
            raise SignatureError("no well-formed v1 signature in webhook-signature")
        found = False
        for key in self._keys:
            expected = _signature(key, msg_id, timestamp, body)
            for candidate in candidates:
                found |= hmac.compare_digest(expected, candidate)
        if not found:
            raise SignatureError("no webhook signature matches the payload")
        signed_at = int(timestamp)
        if now - signed_at > self.tolerance_s:
            raise SignatureError(f"webhook-timestamp {signed_at} is older than {self.tolerance_s} s")
        if signed_at - now > self.tolerance_s:
            raise SignatureError(f"webhook-timestamp {signed_at} is more than {self.tolerance_s} s in the future")
        return SignedMessage(msg_id=msg_id, timestamp=signed_at)

    @staticmethod
    def message(headers: Mapping[str, str]) -> SignedMessage:
        """The id and timestamp of an already verified delivery (no checks beyond what :meth:`verify` did)."""
        msg_id, timestamp, _ = _headers(headers)
        if not msg_id or not timestamp or not _DIGITS.fullmatch(timestamp):
            raise SignatureError("missing webhook-id or webhook-timestamp header")
        return SignedMessage(msg_id=msg_id, timestamp=int(timestamp))
