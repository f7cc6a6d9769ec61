"""A local stand-in for the QuickBooks Online Accounting API — for tests and the demo only, never production.

It answers the calls :mod:`consumers.clients.quickbooks` makes, the way the real API does
(https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/salesreceipt,
https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/refundreceipt):

``POST /v3/company/{realm}/salesreceipt?requestid=…`` and ``POST /v3/company/{realm}/refundreceipt?requestid=…``
    - 401 with a QuickBooks-shaped ``AUTHENTICATION`` fault (lower-case keys and a ``WWW-Authenticate`` header, as
      the real API sends) unless ``Authorization: Bearer <token>`` holds ``create_app(access_token=…)`` or the access
      token last issued by the token endpoint (and the token has not been expired by ``/_sandbox/expire-token``);
    - 400 ``ValidationFault`` when the body is not a JSON object, ``Line`` is missing or empty, a line's
      ``DetailType`` is not ``SalesItemLineDetail``, a line's ``Amount`` is missing, not a number or negative,
      ``CurrencyRef.value`` is missing, ``TxnDate`` is not ``YYYY-MM-DD``, ``DocNumber`` is longer than 21
      characters, or (RefundReceipt) ``DepositToAccountRef.value`` is missing;
    - numbers are parsed exactly (``parse_float=Decimal``) and ``TotalAmt`` is the exact sum of the line amounts;
    - a repeated ``requestid`` within a realm returns the first successful response (same ``Id``) and creates
      nothing, which is QuickBooks' documented idempotency; failed requests are not remembered;
    - a created object gets a sequential string ``Id`` (per realm), ``SyncToken "0"``, ``TotalAmt``,
      ``MetaData.CreateTime``/``LastUpdatedTime``; the response is ``{"SalesReceipt": {...}, "time": "..."}``.

``POST /oauth2/v1/tokens/bearer`` — Intuit's OAuth 2.0 token endpoint, refresh grant only
    (https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0):
    HTTP Basic client authentication with ``create_app(client_id=…, client_secret=…)`` (401 ``invalid_client``
    otherwise), form ``grant_type=refresh_token&refresh_token=…`` (400 ``unsupported_grant_type`` /
    ``invalid_grant`` unless it is the current refresh token, initially ``create_app(refresh_token=…)``). Answers
    ``{"access_token", "refresh_token", "expires_in": 3600, "x_refresh_token_expires_in": 8726400,
    "token_type": "bearer"}`` with a new access token (the previously issued one stops working) and a **rotated**
    refresh token (the old one answers ``invalid_grant`` from then on) — stricter than Intuit, which may answer the
    same refresh token for a while, so tests see a rotation on every refresh.

What it does not do: the authorization-code step of OAuth (consent screen, redirect), token expiry by time (tests
expire tokens explicitly), realms tied to tokens (any realm is accepted), other entities or operations (read,
update, query, batch, void), customers, items, accounts or tax (``ItemRef``, ``DepositToAccountRef`` … are
accepted as given), multicurrency rules, exchange rates, rounding to the currency's decimals, line types other than
``SalesItemLineDetail``, ``Qty``/``UnitPrice`` checks, request limits, XML, or persistence (all state is in memory).
It is stricter than QuickBooks in two places: ``CurrencyRef`` is required (QuickBooks defaults to the home
currency) and ``Amount`` must be a JSON number. Fault ``code`` values imitate QuickBooks' but are not guaranteed.

Routes for tests and the demo:

- ``POST /_sandbox/faults`` ``{"status": 429, "count": 2, "retry_after": "1"}``: the next ``count`` create calls
  answer ``status`` (with that ``Retry-After`` header if given) before any other check, and change nothing.
- ``POST /_sandbox/faults`` ``{"delay_s": 30, "count": 1}`` (no ``status``): the next ``count`` create calls are
  processed and stored normally, but their response is sent only after ``delay_s`` seconds — a slow downstream
  call, so a test can kill a worker after the downstream effect and before its XACK. The wait ends early if the
  client disconnects (nobody is left to answer). With a ``status`` as well, that injected fault is delayed instead.
  A new ``POST /_sandbox/faults`` replaces the pending fault.
- ``GET /_sandbox/objects`` → ``{"salesreceipts": [...], "refundreceipts": [...]}``, each item
  ``{"Id", "realm", "requestid", "TotalAmt", "body", "raw_body"}`` (``body``: the request as parsed, ``raw_body``:
  the request text exactly as received, e.g. to check that ``"Amount":1500`` was sent, not ``1500.0``).
- ``POST /_sandbox/reset``: forget all objects, request ids, pending faults and counters (not the OAuth tokens, so a
  running worker keeps its grant).
- ``POST /_sandbox/expire-token``: every access token accepted so far (the fixed one and the last issued one) stops
  working, as an expired token does; a refresh issues a new one. Answers ``{"expired": n}``.
- ``GET /_sandbox/tokens`` → ``{"refresh_token", "access_tokens": [...], "requests": [...]}``: the current refresh
  token, the accepted access tokens, and one ``{"grant_type", "refresh_token", "status", "error"}`` per token
  endpoint request in arrival order (sandbox tokens are not secrets).
- ``GET /healthz`` → ``{"status": "ok"}``.

Run it: ``python -m consumers.sandboxes.quickbooks --host 127.0.0.1 --port 8765`` (access token ``sandbox-token``;
refresh token ``sandbox-refresh`` with client ``sandbox-client`` / ``sandbox-secret``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.money import json_number

__all__ = [
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REFRESH_TOKEN",
    "TOKEN_PATH",
    "create_app",
    "main",
]

DEFAULT_ACCESS_TOKEN = "sandbox-token"
DEFAULT_REFRESH_TOKEN = "sandbox-refresh"
DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
ACCESS_TOKEN_TTL_S = 3600
REFRESH_TOKEN_TTL_S = 8726400  # 101 days, as Intuit answers

_ENTITIES = {"salesreceipt": "SalesReceipt", "refundreceipt": "RefundReceipt"}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_DOC_NUMBER_MAX = 21


# ----------------------------------------------------------------------------------------------------------- JSON
def _default(value: object) -> int | float:
    if isinstance(value, Decimal):
        try:
            return json_number(value)  # exact: an int when whole, else a float whose repr is the decimal
        except ValueError:  # more than 15 significant digits: echo the nearest double rather than fail
            return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False, default=_default).encode()
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def _now() -> str:
    """QuickBooks-style timestamp, e.g. ``2026-11-30T03:45:22.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------------------------------------- faults
class _Invalid(Exception):
    def __init__(self, message: str, detail: str, code: str, element: str | None = None) -> None:
        super().__init__(detail)
        self.error = {"Message": message, "Detail": detail, "code": code, "element": element}


def _missing(element: str) -> _Invalid:
    return _Invalid(
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        "2020",
        element,
    )


def _validation_fault(*errors: dict[str, Any]) -> Response:
    return _json({"Fault": {"Error": list(errors), "type": "ValidationFault"}, "time": _now()}, 400)


def _auth_fault(status: int, detail: str) -> Response:
    # The real API answers authentication failures with lower-case keys, unlike every other fault.
    if status == 403:
        error = {"message": "message=AuthorizationFailed; errorCode=003100; statusCode=403", "code": "3100"}
        fault_type = "SERVICE"
    else:
        error = {"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401", "code": "3200"}
        fault_type = "AUTHENTICATION"
    body = {
        "warnings": None,
        "intuitObject": None,
        "fault": {"error": [{**error, "detail": detail, "element": None}], "type": fault_type},
        "time": int(datetime.now(UTC).timestamp() * 1000),
    }
    headers = {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'} if status == 401 else None
    return _json(body, status, headers)


def _injected_fault(status: int, retry_after: str | None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    if status in (401, 403):
        response = _auth_fault(status, "Injected by /_sandbox/faults")
        if headers:
            response.headers.update(headers)
        return response
    if status == 400:
        error = {"Message": "Injected validation fault", "Detail": "Injected by /_sandbox/faults", "code": "2500"}
        fault_type = "ValidationFault"
    elif status == 429:
        error = {
            "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "Detail": "The request limit was reached.",
            "code": "3001",
        }
        fault_type = "SERVICE"
    else:
        error = {
            "Message": "An application error has occurred while processing your request",
            "Detail": f"System Failure Error: injected HTTP {status}",
            "code": "10000",
        }
        fault_type = "SystemFault"
    return _json({"Fault": {"Error": [error], "type": fault_type}, "time": _now()}, status, headers)


# ---------------------------------------------------------------------------------------------------------- state
@dataclass
class _Fault:
    status: int | None  # None: no injected error (a delay-only fault)
    remaining: int
    retry_after: str | None
    delay_s: float = 0.0


@dataclass
class _State:
    access_token: str
    refresh_token: str = DEFAULT_REFRESH_TOKEN
    issued_token: str | None = None  # the access token last issued by the token endpoint
    expired: set[str] = field(default_factory=set)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in _ENTITIES})
    replies: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (realm, requestid) → first response
    next_id: dict[str, int] = field(default_factory=dict)  # realm → next Id
    fault: _Fault | None = None

    def reset(self) -> None:
        self.objects = {k: [] for k in _ENTITIES}
        self.replies.clear()
        self.next_id.clear()
        self.fault = None

    def take_fault(self) -> _Fault | None:
        fault = self.fault
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.fault = None
        return fault


# ----------------------------------------------------------------------------------------------------- validation
def _amount(line: dict[str, Any], index: int) -> Decimal:
    element = f"Line[{index}].Amount"
    if "Amount" not in line or line["Amount"] is None:
        raise _missing(element)
    amount = line["Amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise _Invalid("Request has invalid or unsupported property", f"{element} is not a number", "2010", element)
    amount = Decimal(amount)
    if not amount.is_finite() or amount < 0:
        raise _Invalid(
            "A business validation error has occurred while processing your request",
            f"Business Validation Error: {element} cannot be negative",
            "6000",
            element,
        )
    return amount


def _ref_value(body: dict[str, Any], name: str) -> None:
    ref = body.get(name)
    if not isinstance(ref, dict) or not isinstance(ref.get("value"), str) or not ref["value"].strip():
        raise _missing(name)


def _validate(entity: str, body: object) -> Decimal:
    """Check a create body the way QuickBooks would (for the fields listed in the module docstring); total."""
    if not isinstance(body, dict):
        raise _Invalid("Request has invalid or unsupported property", "The request body is not a JSON object", "2010")
    lines = body.get("Line")
    if not isinstance(lines, list) or not lines:
        raise _missing("Line")
    total = Decimal(0)
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise _Invalid("Request has invalid or unsupported property", f"Line[{index}] is not an object", "2010")
        detail_type = line.get("DetailType")
        if detail_type is None:
            raise _missing(f"Line[{index}].DetailType")
        if detail_type != "SalesItemLineDetail":
            raise _Invalid(
                "Invalid Enumeration",
                f"Line[{index}].DetailType {detail_type!r} is not supported here (use SalesItemLineDetail)",
                "2170",
                f"Line[{index}].DetailType",
            )
        if "SalesItemLineDetail" in line and not isinstance(line["SalesItemLineDetail"], dict):
            raise _Invalid(
                "Request has invalid or unsupported property",
                f"Line[{index}].SalesItemLineDetail is not an object",
                "2010",
                f"Line[{index}].SalesItemLineDetail",
            )
        total += _amount(line, index)
    _ref_value(body, "CurrencyRef")
    txn_date = body.get("TxnDate")
    if txn_date is not None:
        valid = isinstance(txn_date, str) and _DATE.fullmatch(txn_date)
        if valid:
            try:
                datetime.strptime(txn_date, "%Y-%m-%d")
            except ValueError:
                valid = False
        if not valid:
            raise _Invalid(
                "Request has invalid or unsupported property",
                f"TxnDate {txn_date!r} is not a date (YYYY-MM-DD)",
                "2010",
                "TxnDate",
            )
    doc_number = body.get("DocNumber")
    if doc_number is not None and (not isinstance(doc_number, str) or len(doc_number) > _DOC_NUMBER_MAX):
        raise _Invalid(
            "String length is either shorter or longer than supported by specification",
            f"DocNumber: maximum length is {_DOC_NUMBER_MAX}",
            "2050",
            "DocNumber",
        )
    if entity == "RefundReceipt":
        _ref_value(body, "DepositToAccountRef")
    return total


# -------------------------------------------------------------------------------------------------------- the app
async def _delay(request: Request, seconds: float) -> None:
    """Sleep ``seconds`` before the response goes out, or less if the client disconnects meanwhile (the body has
    been read, so the next ASGI message is ``http.disconnect``)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


def create_app(
    access_token: str = DEFAULT_ACCESS_TOKEN,
    *,
    refresh_token: str = DEFAULT_REFRESH_TOKEN,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
) -> Starlette:
    """A fresh, empty QuickBooks stand-in accepting ``Authorization: Bearer {access_token}`` (and the tokens its
    token endpoint issues for ``refresh_token``) for every realm."""
    state = _State(access_token=access_token, refresh_token=refresh_token)
    expected_client = f"{client_id}:{client_secret}".encode()

    def accepted_tokens() -> list[str]:
        tokens = [state.access_token, state.issued_token]
        return [t for t in tokens if t is not None and t not in state.expired]

    def authorized(auth: str) -> bool:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        # Compare with every accepted token (no early exit), in constant time.
        matches = [hmac.compare_digest(token.encode(), t.encode()) for t in accepted_tokens()]
        return any(matches)

    async def create(request: Request) -> Response:
        fault = state.take_fault()
        if fault is not None and fault.status is not None:
            response = _injected_fault(fault.status, fault.retry_after)
        else:
            response = await _create(request)
        if fault is not None and fault.delay_s > 0:
            await _delay(request, fault.delay_s)
        return response

    async def _create(request: Request) -> Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        entity = _ENTITIES[kind]
        realm = request.path_params["realm"]

        auth = request.headers.get("authorization")
        if auth is None:
            return _auth_fault(401, "Authorization header is missing")
        if not authorized(auth):
            return _auth_fault(401, "Token invalid or expired")

        request_id = request.query_params.get("requestid")
        raw = await request.body()
        # Nothing below awaits, so check-then-create is atomic on the event loop: concurrent replays of one
        # requestid cannot both create an object.
        if request_id is not None and (realm, request_id) in state.replies:
            return Response(state.replies[(realm, request_id)], media_type="application/json")

        try:
            body = json.loads(raw, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            return _validation_fault(
                {"Message": "Request is malformed", "Detail": "The body is not valid JSON", "code": "2010"}
            )
        try:
            total = _validate(entity, body)
        except _Invalid as invalid:
            return _validation_fault(invalid.error)

        number = state.next_id.get(realm, 1)
        state.next_id[realm] = number + 1
        created_at = _now()
        obj = copy.deepcopy(body)
        for line_number, line in enumerate(obj["Line"], start=1):
            line.setdefault("Id", str(line_number))
            line.setdefault("LineNum", line_number)
        obj.update(
            {
                "domain": "QBO",
                "sparse": False,
                "Id": str(number),
                "SyncToken": "0",
                "MetaData": {"CreateTime": created_at, "LastUpdatedTime": created_at},
                "TotalAmt": total,
            }
        )
        if entity == "SalesReceipt":
            obj["Balance"] = 0
        response = _json({entity: obj, "time": created_at})
        state.objects[kind].append(
            {
                "Id": str(number),
                "realm": realm,
                "requestid": request_id,
                "TotalAmt": total,
                "body": body,
                "raw_body": raw.decode("utf-8", errors="replace"),
            }
        )
        if request_id is not None:
            state.replies[(realm, request_id)] = bytes(response.body)
        return response

    async def set_faults(request: Request) -> Response:
        try:
            spec = json.loads(await request.body())
        except ValueError:
            return _json({"error": "body must be JSON"}, 400)
        if not isinstance(spec, dict):
            return _json({"error": "body must be a JSON object"}, 400)
        status = spec.get("status")
        count = spec.get("count", 1)
        retry_after = spec.get("retry_after")
        delay_s = spec.get("delay_s")
        if status is None and delay_s is None:
            return _json({"error": "give status (an HTTP error status, 400-599) and/or delay_s (seconds)"}, 400)
        if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599):
            return _json({"error": "status must be an HTTP error status (400-599)"}, 400)
        if delay_s is not None and (
            not isinstance(delay_s, int | float)
            or isinstance(delay_s, bool)
            or not math.isfinite(delay_s)
            or delay_s < 0
        ):
            return _json({"error": "delay_s must be a non-negative number of seconds"}, 400)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return _json({"error": "count must be a non-negative integer"}, 400)
        if retry_after is not None and not isinstance(retry_after, str):
            retry_after = str(retry_after)
        state.fault = _Fault(status, count, retry_after, float(delay_s or 0)) if count else None
        return _json({"status": status, "count": count, "retry_after": retry_after, "delay_s": delay_s})

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        entry: dict[str, Any] = {
            "grant_type": form.get("grant_type"),
            "refresh_token": form.get("refresh_token"),
            "status": 200,
            "error": None,
        }
        state.token_requests.append(entry)

        def error(status: int, code: str, headers: dict[str, str] | None = None) -> Response:
            entry.update(status=status, error=code)
            return _json({"error": code}, status, headers)

        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        try:
            client = base64.b64decode(credentials, validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            client = b""
        if not hmac.compare_digest(client, expected_client):
            return error(401, "invalid_client", {"WWW-Authenticate": 'Basic realm="Intuit"'})
        if form.get("grant_type") != "refresh_token":
            return error(400, "unsupported_grant_type")
        if not hmac.compare_digest(form.get("refresh_token", "").encode(), state.refresh_token.encode()):
            return error(400, "invalid_grant")
        state.issued_token = f"qb-access-{secrets.token_urlsafe(24)}"
        state.refresh_token = f"qb-refresh-{secrets.token_urlsafe(24)}"
        return _json(
            {
                "access_token": state.issued_token,
                "refresh_token": state.refresh_token,
                "expires_in": ACCESS_TOKEN_TTL_S,
                "x_refresh_token_expires_in": REFRESH_TOKEN_TTL_S,
                "token_type": "bearer",
            }
        )

    async def expire_token(request: Request) -> Response:
        expiring = accepted_tokens()
        state.expired.update(expiring)
        return _json({"expired": len(expiring)})

    async def tokens(request: Request) -> Response:
        return _json(
            {
                "refresh_token": state.refresh_token,
                "access_tokens": accepted_tokens(),
                "requests": state.token_requests,
            }
        )

    async def objects(request: Request) -> Response:
        return _json({f"{kind}s": items for kind, items in state.objects.items()})

    async def reset(request: Request) -> Response:
        state.reset()
        return _json({"status": "reset"})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v3/company/{realm}/salesreceipt", create, methods=["POST"]),
            Route("/v3/company/{realm}/refundreceipt", create, methods=["POST"]),
            Route(TOKEN_PATH, token, methods=["POST"]),
            Route("/_sandbox/expire-token", expire_token, methods=["POST"]),
            Route("/_sandbox/tokens", tokens, methods=["GET"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/objects", objects, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app


def main(host: str, port: int) -> None:
    """Serve the stand-in with uvicorn on ``host:port`` (bearer token ``sandbox-token``)."""
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Local stand-in for the QuickBooks Online API (tests and demo).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    arguments = parser.parse_args()
    main(arguments.host, arguments.port)
