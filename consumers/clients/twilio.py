"""Async client for Twilio's Programmable Messaging API: sending one SMS.

Request (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource)::

    POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json
    Authorization: Basic base64(AccountSid:AuthToken)          (or an API key SID:secret)
    Content-Type: application/x-www-form-urlencoded
    To=+15558675310&From=+15017122661&Body=…                    (or MessagingServiceSid=MG… instead of From)

Answer ``201`` with the Message resource (``sid`` ``SM…``, ``status`` ``queued``). ``base_url`` is
``https://api.twilio.com`` (``TWILIO_BASE_URL``) or the local stand-in in :mod:`consumers.sandboxes.twilio`.

Twilio has **no idempotency key** for messages: a repeated request sends a second SMS. Callers therefore wrap the
send in a recorded handler step (``bus.steps.once``), and a timeout *after* Twilio accepted the message can still
repeat it once (the limit of at-least-once, see the README).

Errors (``{"code": 21211, "message": "…", "more_info": "…", "status": 400}``, codes at
https://www.twilio.com/docs/api/errors):

=========================================  =====================================================================
400 (invalid ``To``, unsubscribed 21610…)  :class:`TwilioRejected` (``PermanentError``) with Twilio's ``code``
401, 403                                   :class:`TwilioAuthError` (``RetryLater``)
404                                        ``PermanentError`` (wrong account SID)
429, 5xx, connection errors, timeouts      ``RetryLater`` with ``delay`` from ``Retry-After``
=========================================  =====================================================================
"""

from __future__ import annotations

from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from bus.errors import PermanentError, RetryLater
from bus.http import InstrumentedTransport
from bus.ratelimit import Limiter
from bus.retry_after import retry_after_delay

__all__ = ["DEFAULT_BASE_URL", "TwilioAuthError", "TwilioClient", "TwilioRejected"]

DEFAULT_BASE_URL = "https://api.twilio.com"


class TwilioRejected(PermanentError):
    """HTTP 400: Twilio refused the message (``code`` is Twilio's error code, e.g. 21211 invalid ``To``)."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class TwilioAuthError(RetryLater):
    """HTTP 401/403: wrong or rotated credentials; retried, dead-lettered after the last attempt."""


class TwilioClient:
    """Twilio Messaging client for one account.

    ``account_sid`` (``AC…``) names the account in the URL; requests authenticate as ``username``:``password``
    (default ``account_sid``:``auth_token``; with an API key, ``SK…``:secret). Messages come from ``from_number``
    (E.164) or ``messaging_service_sid`` (``MG…``). ``limiter`` is the shared rate limiter (API ``twilio``, keyed by
    the sending number: a long code sends about one segment per second).
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str = "",
        messaging_service_sid: str = "",
        base_url: str = DEFAULT_BASE_URL,
        api_key_sid: str = "",
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("account_sid and auth_token are required")
        if not from_number and not messaging_service_sid:
            raise ValueError("give from_number or messaging_service_sid")
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            auth=(api_key_sid or account_sid, auth_token),
            transport=InstrumentedTransport(
                "twilio", inner=transport, limiter=limiter, account=from_number or messaging_service_sid
            ),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"TwilioClient(base_url={str(self._http.base_url)!r}, account_sid={self.account_sid!r})"

    async def __aenter__(self) -> TwilioClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send_sms(self, to: str, body: str) -> dict[str, Any]:
        """Send ``body`` to ``to`` (E.164). Returns the Message resource (``sid``, ``status`` …)."""
        form = {"To": to, "Body": body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.from_number
        url = f"/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Messages.json"
        try:
            response = await self._http.post(url, data=form)
        except httpx.TransportError as exc:
            raise RetryLater(f"twilio_transport_error: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        try:
            doc = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        if 200 <= status < 300:
            return doc  # accepted: even an odd body must not make us send again
        code = doc.get("code") if isinstance(doc.get("code"), int) else None
        detail = f"{status} code={code} {doc.get('message') or ''}".strip()
        if status == 400:
            raise TwilioRejected(f"twilio_rejected: {detail}", code=code)
        if status in (401, 403):
            raise TwilioAuthError(f"twilio_auth: {detail}")
        if status == 429 or status >= 500:
            kind = "twilio_throttled" if status == 429 else "twilio_unavailable"
            raise RetryLater(f"{kind}: {detail}", delay=retry_after_delay(response.headers.get("Retry-After")))
        raise PermanentError(f"twilio_http_{status}: {detail}")
