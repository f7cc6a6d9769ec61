"""A local stand-in for Twilio's Messaging API — for tests and the demo only, never production.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` behaves like Twilio
(https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource):

- HTTP Basic authentication as ``{AccountSid}:{auth_token}`` (the account in the URL; any ``AC`` + 32 hex account is
  accepted), else 401 with Twilio's error 20003 ``Authenticate``;
- the body is form-encoded; ``To`` must be E.164 (400, code 21211 "The 'To' number … is not a valid phone number."),
  ``From`` must be E.164 (21212) unless ``MessagingServiceSid`` (``MG`` + 32 hex) is given, and one of them is
  required (21603); ``Body`` is required (21602) and at most 1600 characters (21617);
- answers 201 with the Message resource (``sid`` ``SM`` + 32 hex, ``status`` ``queued``, ``num_segments`` …).

Twilio has no idempotency key, and neither has the stand-in: every accepted request is one more message.

Not modelled: MMS/``MediaUrl``, status callbacks, scheduling, opt-out lists, geo permissions, price, persistence.

Routes for tests and the demo: ``POST /_sandbox/faults`` ``{"status": 429, "count": 1, "retry_after": "1"}`` (the
next ``count`` sends answer that status, Twilio-shaped, and send nothing); ``GET /_sandbox/objects`` →
``{"messages": [...]}`` with ``to``, ``from``, ``body``, ``sid``, ``account_sid`` in arrival order;
``POST /_sandbox/reset``; ``GET /healthz``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
import secrets
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["DEFAULT_AUTH_TOKEN", "create_app"]

DEFAULT_AUTH_TOKEN = "sandbox-token"
_E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
_ACCOUNT = re.compile(r"AC[0-9a-f]{32}", re.ASCII)
_SERVICE = re.compile(r"MG[0-9a-f]{32}", re.ASCII)
_MAX_BODY = 1600


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: str | None


@dataclass
class _State:
    auth_token: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    fault: _Fault | None = None


def _segments(body: str) -> int:
    gsm = all(ord(c) < 128 for c in body)
    single, multi = (160, 153) if gsm else (70, 67)
    return 1 if len(body) <= single else math.ceil(len(body) / multi)


def create_app(auth_token: str = DEFAULT_AUTH_TOKEN) -> Starlette:
    """A fresh Twilio stand-in accepting Basic ``{AccountSid}:{auth_token}``."""
    state = _State(auth_token=auth_token)

    async def create_message(request: Request) -> Response:
        account = request.path_params["account_sid"]
        if not _authorized(request.headers.get("authorization", ""), account, state.auth_token):
            return _error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        fault = state.fault
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                state.fault = None
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            code = 20429 if fault.status == 429 else 20500
            return _error(fault.status, code, "Injected by /_sandbox/faults", headers)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        to = form.get("To")
        sender = form.get("From")
        service = form.get("MessagingServiceSid")
        body = form.get("Body")
        if not isinstance(to, str) or not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not _E164.fullmatch(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if service and (not isinstance(service, str) or not _SERVICE.fullmatch(service)):
            return _error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if sender and (not isinstance(sender, str) or not _E164.fullmatch(sender)):
            return _error(400, 21212, f"The 'From' number {sender} is not a valid phone number or shortcode.")
        if not isinstance(body, str) or not body.strip():
            return _error(400, 21602, "Message body is required.")
        if len(body) > _MAX_BODY:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        message = {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if sender else "accepted",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }
        state.messages.append(message)
        return JSONResponse(message, status_code=201)

    async def set_faults(request: Request) -> Response:
        spec = await request.json()
        status = spec.get("status") if isinstance(spec, dict) else None
        count = spec.get("count", 1) if isinstance(spec, dict) else 1
        if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int) or count < 0:
            return JSONResponse({"error": "give status (400-599) and count (≥ 0)"}, status_code=400)
        retry_after = spec.get("retry_after")
        state.fault = _Fault(status, count, str(retry_after) if retry_after is not None else None) if count else None
        return JSONResponse({"status": status, "count": count})

    async def objects(request: Request) -> Response:
        return JSONResponse({"messages": state.messages})

    async def reset(request: Request) -> Response:
        state.messages.clear()
        state.fault = None
        return JSONResponse({"status": "reset"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/2010-04-01/Accounts/{account_sid}/Messages.json", create_message, methods=["POST"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/objects", objects, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app


def _authorized(header: str, account: str, auth_token: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not _ACCOUNT.fullmatch(account):
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), account.encode()) & hmac.compare_digest(
        password.encode(), auth_token.encode()
    )
