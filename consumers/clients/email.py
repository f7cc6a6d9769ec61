"""Async client for the alert channel: e-mail through the SendGrid v3 Mail Send API.

``POST {SENDGRID_BASE_URL}/v3/mail/send`` with ``Authorization: Bearer <SENDGRID_API_KEY>``
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send)::

    {"personalizations": [{"to": [{"email": "buyer@shop.example"}]}],
     "from": {"email": "hookbus@shop.example", "name": "hookbus"},
     "subject": "Reorder needed: BEANS-1KG at main (3 left)",
     "content": [{"type": "text/plain", "value": "…"}],
     "custom_args": {"hookbus_key": "<idempotency key>"}}

Success is ``202 Accepted`` with an empty body and an ``X-Message-Id`` header. Errors are
``{"errors": [{"message", "field", "help"}]}`` (400: validation; 401: bad key; 413: too large; 429 with
``X-RateLimit-Reset``, a Unix time, https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/
rate-limits). SendGrid cannot deduplicate a send, so callers wrap it in ``ctx.once`` (one e-mail per alert).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bus.ratelimit import Limiter

from .base import BearerClient
from .responses import raise_for_status, transport_error

__all__ = ["EmailClient", "EmailMessage"]

API = "sendgrid"


@dataclass(frozen=True, slots=True)
class EmailMessage:
    to: Sequence[str]
    sender: str
    subject: str
    text: str
    sender_name: str | None = None
    custom_args: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        sender: dict[str, str] = {"email": self.sender}
        if self.sender_name:
            sender["name"] = self.sender_name
        body: dict[str, Any] = {
            "personalizations": [{"to": [{"email": address} for address in self.to]}],
            "from": sender,
            "subject": self.subject,
            "content": [{"type": "text/plain", "value": self.text}],
        }
        if self.custom_args:
            body["custom_args"] = dict(self.custom_args)
        return body


def _message(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return response.text[:200]
    if isinstance(errors, list) and errors:
        return (
            "; ".join(f"{e.get('field') or '-'}: {e.get('message')}" for e in errors if isinstance(e, dict))
            or response.text[:200]
        )
    return response.text[:200]


def _reset_delay(response: httpx.Response) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (Unix time), SendGrid's hint on a 429 without ``Retry-After``."""
    reset = response.headers.get("X-RateLimit-Reset", "")
    if reset.isdigit():
        return max(0.0, float(int(reset) - int(time.time())))
    return None


class EmailClient(BearerClient):
    """SendGrid v3 client. ``base_url``: ``https://api.sendgrid.com`` or a stand-in; ``api_key``: ``SG.…``."""

    api = API
    headers = {}

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a SendGrid API key is required")
        super().__init__(base_url=base_url, token=api_key, timeout_s=timeout_s, transport=transport, limiter=limiter)

    async def send(self, message: EmailMessage) -> str | None:
        """Send ``message``; the ``X-Message-Id`` SendGrid assigned (None if it gave none)."""
        try:
            response = await self._http.post("/v3/mail/send", json=message.to_json())
        except httpx.TransportError as exc:
            raise transport_error(API, exc) from exc
        raise_for_status(response, API, _message, fallback_delay=_reset_delay)
        return response.headers.get("X-Message-Id")
