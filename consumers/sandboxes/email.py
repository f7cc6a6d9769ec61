"""Local stand-in for the SendGrid v3 Mail Send API, hookbus's alert e-mail channel.

``POST /v3/mail/send`` (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send) validated as SendGrid
does for the fields hookbus sends: ``personalizations`` (1–1000, each with a non-empty ``to`` of ``{"email"}``
objects), ``from.email``, ``subject`` and ``content`` (each ``{"type", "value"}``) unless a ``template_id`` is
given, well-formed addresses. Errors are SendGrid's ``{"errors": [{"message", "field", "help"}]}``; a missing or
wrong key is 401. Success is ``202`` with an empty body and ``X-Message-Id``. ``POST /_sandbox/faults`` injects
errors (429 with ``Retry-After``); ``GET /_sandbox/objects`` lists ``messages``; ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Faults, route_path

DEFAULT_API_KEY = "sandbox-token"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


def _errors(status: int, *errors: tuple[str, str | None, str | None]) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "field": field, "help": help} for message, field, help in errors]}, status
    )


@dataclass
class _State:
    api_key: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def reset(self) -> None:
        self.messages.clear()
        self.faults.reset()


def _address_problem(value: Any, where: str) -> tuple[str, str, str] | None:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        return (f"The {where} object must be provided and requires an email parameter.", where, f"{_HELP}#{where}")
    if not _EMAIL.fullmatch(value["email"]):
        return ("Does not contain a valid address.", f"{where}.email", f"{_HELP}#{where}")
    return None


def _validate(body: Any) -> list[tuple[str, str | None, str | None]]:
    if not isinstance(body, dict):
        return [("Bad Request", None, None)]
    problems: list[tuple[str, str | None, str | None]] = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
        problems.append(
            (
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                f"{_HELP}#-Personalizations-Errors",
            )
        )
    else:
        for index, item in enumerate(personalizations):
            to = item.get("to") if isinstance(item, dict) else None
            if not isinstance(to, list) or not to:
                problems.append(
                    (
                        "The to array is required for all personalization objects, and must have at least one email "
                        "object with a valid email address.",
                        f"personalizations.{index}.to",
                        f"{_HELP}#message.personalizations.to",
                    )
                )
                continue
            for n, address in enumerate(to):
                if problem := _address_problem(address, f"personalizations.{index}.to.{n}"):
                    problems.append(problem)
    if problem := _address_problem(body.get("from"), "from"):
        problems.append(problem)
    if not body.get("template_id"):
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            problems.append(
                (
                    "The subject is required. You can get around this requirement if you use a template with a "
                    "subject defined or if every personalization has a subject defined.",
                    "subject",
                    f"{_HELP}#message.subject",
                )
            )
        content = body.get("content")
        if not isinstance(content, list) or not content:
            problems.append(
                (
                    "Unless a valid template_id is provided, the content parameter is required. There must be at "
                    "least one defined content block. We typically suggest both text/plain and text/html blocks are "
                    "included, but only one block is required.",
                    "content",
                    f"{_HELP}#message.content",
                )
            )
        else:
            for index, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str) or "value" not in block:
                    problems.append(
                        (
                            "Content blocks need a type and a value.",
                            f"content.{index}",
                            f"{_HELP}#message.content",
                        )
                    )
    return problems


def create_app(api_key: str = DEFAULT_API_KEY) -> Starlette:
    """A fresh SendGrid stand-in accepting ``Authorization: Bearer {api_key}``."""
    state = _State(api_key=api_key)
    expected_auth = f"Bearer {api_key}".encode()

    async def send(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected_auth):
            return _errors(401, ("The provided authorization grant is invalid, expired, or revoked", None, None))
        fault = state.faults.take(route_path(request))
        if fault is not None:
            response = _errors(
                fault.status,
                ("too many requests" if fault.status == 429 else f"injected HTTP {fault.status}", None, None),
            )
            response.headers.update(fault.headers)
            return response
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _errors(400, ("Bad Request", None, None))
        problems = _validate(body)
        if problems:
            return _errors(400, *problems)
        message_id = secrets.token_urlsafe(16)
        state.messages.append(
            {
                "message_id": message_id,
                "to": [a["email"] for p in body["personalizations"] for a in p["to"]],
                "from": body["from"]["email"],
                "subject": body.get("subject"),
                "text": next((c["value"] for c in body.get("content", []) if c.get("type") == "text/plain"), None),
                "custom_args": body.get("custom_args") or {},
                "received_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            }
        )
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    async def objects(request: Request) -> Response:
        return JSONResponse({"messages": state.messages})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v3/mail/send", send, methods=["POST"]),
            Route("/_sandbox/faults", state.faults.endpoint, methods=["POST"]),
            Route("/_sandbox/objects", objects, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app
