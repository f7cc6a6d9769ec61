"""A local stand-in for the Google Calendar API v3 — for tests and the demo only, never production.

It answers the calls :mod:`consumers.clients.google_calendar` makes the way Google does
(https://developers.google.com/calendar/api/v3/reference/events, …/guides/sync, …/guides/push):

- every API call needs ``Authorization: Bearer <access_token>`` (401 ``authError`` otherwise); ``POST /token`` trades
  the refresh token ``sandbox-refresh`` for that access token (OAuth 2.0 refresh grant);
- ``events.insert``: a client-chosen ``id`` must be 5–1024 characters of base32hex ``[a-v0-9]`` (400 ``invalid``,
  "Invalid resource id value."); an ``id`` already used in the calendar — **also by a deleted event** — answers
  ``409 duplicate`` "The requested identifier already exists." (shared case 023); ``start`` and ``end`` are required
  and each holds exactly one of ``date`` (``YYYY-MM-DD``) or ``dateTime`` (RFC 3339; without an offset only with a
  ``timeZone``), both of the same kind; ``timeZone`` must be an IANA name; the end must be after the start
  (400 ``timeRangeEmpty``); ``status`` is ``confirmed``, ``tentative`` or ``cancelled``;
- ``events.get`` returns deleted events with ``status: cancelled``; 404 for ids never used;
- ``events.patch`` replaces the given top-level fields and validates the result; ``sequence`` rises when the times
  change; ``events.delete`` marks the event ``cancelled`` (204), 410 ``deleted`` when it already was;
- ``events.list``: without ``syncToken`` every event that is not cancelled (``showDeleted=true`` includes them);
  with ``syncToken`` only events changed since that token, deleted ones included; pages of ``maxResults`` (default
  250) linked by ``nextPageToken``, the last one carrying ``nextSyncToken``; an unknown or invalidated sync token
  answers ``410 fullSyncRequired``; ``syncToken`` together with ``timeMin``/``timeMax``/``q``/``orderBy`` is a 400;
- ``events.watch`` opens a channel (``id`` of ``[A-Za-z0-9-_+/=]``, at most 64; ``type: web_hook``; a repeated id
  is 400 ``channelIdNotUnique``) and answers the Channel resource with ``resourceId`` and ``expiration`` (Unix ms as
  a string, ``params.ttl`` seconds from now, default 604800); ``channels.stop`` closes it (404 if unknown).

It does **not** deliver push notifications itself (tests and the demo post them to ingest), and has no calendars
list, ACLs, recurring events, attendees' responses, conference data, quotas or persistence (memory only).

Routes for tests and the demo:

- ``POST /_sandbox/faults`` ``{"status": 429, "count": 1, "retry_after": "1", "reason": "rateLimitExceeded",
  "only": "events.insert"}``: the next ``count`` API calls (of that operation only, if ``only`` is given) answer
  ``status`` with a Google-shaped error and change nothing.
- ``POST /_sandbox/calendars/{calendarId}/events``: create or replace an event as a person would in the Calendar UI
  (any id, no client rules); ``DELETE /_sandbox/calendars/{calendarId}/events/{eventId}``: delete it in the UI.
- ``POST /_sandbox/invalidate_sync_tokens``: every sync token handed out so far now answers 410.
- ``GET /_sandbox/objects`` → ``{"events": [...], "channels": [...], "requests": [...]}``; each request is
  ``{"op": "events.insert", "calendar_id", "event_id", "params", "body", "status"}`` in arrival order.
- ``POST /_sandbox/reset``; ``GET /healthz``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus.localtime import UnknownTimeZone, parse_date, parse_instant, zone

__all__ = ["DEFAULT_ACCESS_TOKEN", "DEFAULT_REFRESH_TOKEN", "create_app"]

DEFAULT_ACCESS_TOKEN = "sandbox-token"
DEFAULT_REFRESH_TOKEN = "sandbox-refresh"
_EVENT_ID = re.compile(r"[a-v0-9]{5,1024}", re.ASCII)
_CHANNEL_ID = re.compile(r"[A-Za-z0-9\-_+/=]{1,64}", re.ASCII)
_LOCAL_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?", re.ASCII)
_STATUSES = ("confirmed", "tentative", "cancelled")
_NO_SYNC_WITH = ("timeMin", "timeMax", "q", "orderBy", "iCalUID", "privateExtendedProperty", "updatedMin")


def _error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    domain = "usageLimits" if reason.endswith("LimitExceeded") else "global"
    body = {
        "error": {
            "errors": [{"domain": domain, "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


class _Invalid(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(value: object, which: str) -> tuple[str, dt.datetime | dt.date]:
    """``("date"|"dateTime", comparable value)`` of an event's start or end. Raises _Invalid."""
    if not isinstance(value, dict):
        raise _Invalid("required", f"Missing {which} time.")
    has_date, has_time = value.get("date") is not None, value.get("dateTime") is not None
    if has_date == has_time:
        raise _Invalid("invalid", f"Invalid {which} time: give exactly one of date and dateTime.")
    tz = value.get("timeZone")
    if tz is not None:
        try:
            zone(tz)
        except UnknownTimeZone:
            raise _Invalid("invalid", f"Invalid time zone definition for {which} time.") from None
    if has_date:
        try:
            return "date", parse_date(value["date"])
        except ValueError:
            raise _Invalid("invalid", f"Invalid {which} time.") from None
    text = value["dateTime"]
    try:
        return "dateTime", parse_instant(text)
    except ValueError:
        if isinstance(text, str) and _LOCAL_DATETIME.fullmatch(text) and tz:
            local = dt.datetime.fromisoformat(text).replace(tzinfo=zone(tz))
            return "dateTime", local.astimezone(dt.UTC)
        raise _Invalid("invalid", f"Invalid {which} time.") from None


def _validate(event: dict[str, Any]) -> None:
    start_kind, start = _moment(event.get("start"), "start")
    end_kind, end = _moment(event.get("end"), "end")
    if start_kind != end_kind:
        raise _Invalid("invalid", "Invalid start time: start and end must both be dates or both be date-times.")
    if end <= start:  # type: ignore[operator]
        raise _Invalid("timeRangeEmpty", "The specified time range is empty.")
    status = event.get("status", "confirmed")
    if status not in _STATUSES:
        raise _Invalid("invalid", f"Invalid value for status: {status!r}")
    for key in ("summary", "description", "location"):
        if key in event and event[key] is not None and not isinstance(event[key], str):
            raise _Invalid("invalid", f"Invalid value for {key}.")


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: str | None
    reason: str
    only: str | None


@dataclass
class _State:
    access_token: str
    refresh_token: str
    events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    sync_tokens: dict[str, tuple[str, int]] = field(default_factory=dict)  # token → (calendar, seq)
    pages: dict[str, tuple[list[dict[str, Any]], str]] = field(default_factory=dict)  # page token → rest, sync token
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    fault: _Fault | None = None

    def reset(self) -> None:
        self.events.clear()
        self.sync_tokens.clear()
        self.pages.clear()
        self.channels.clear()
        self.requests.clear()
        self.fault = None
        self.seq = 0

    def take_fault(self, op: str) -> _Fault | None:
        fault = self.fault
        if fault is None or (fault.only and fault.only != op):
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.fault = None
        return fault

    def store(self, calendar_id: str, event: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        event["updated"] = _now()
        event["etag"] = f'"{self.seq:016d}"'
        event["_seq"] = self.seq
        self.events[(calendar_id, event["id"])] = event
        return event

    def new_sync_token(self, calendar_id: str) -> str:
        token = f"sync-{self.seq}-{secrets.token_hex(6)}"
        self.sync_tokens[token] = (calendar_id, self.seq)
        return token


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def create_app(access_token: str = DEFAULT_ACCESS_TOKEN, refresh_token: str = DEFAULT_REFRESH_TOKEN) -> Starlette:
    """A fresh, empty Google Calendar stand-in accepting ``Authorization: Bearer {access_token}``."""
    state = _State(access_token=access_token, refresh_token=refresh_token)
    expected = f"Bearer {access_token}".encode()

    async def api(request: Request, op: str) -> tuple[Response | None, Any, dict[str, Any]]:
        """Auth, injected faults and the JSON body; logs the request.

        Returns (error response or None, body, the request's log entry)."""
        calendar_id = request.path_params.get("calendar_id")
        entry: dict[str, Any] = {
            "op": op,
            "calendar_id": calendar_id,
            "event_id": request.path_params.get("event_id"),
            "params": dict(request.query_params),
            "body": None,
            "status": None,
        }
        state.requests.append(entry)
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = ValueError
        entry["body"] = body if body is not ValueError else raw.decode(errors="replace")
        auth = request.headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), expected):
            entry["status"] = 401
            headers = {"WWW-Authenticate": 'Bearer realm="google"'}
            return _error(401, "authError", "Invalid Credentials", headers), None, entry
        fault = state.take_fault(op)
        if fault is not None:
            entry["status"] = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return _error(fault.status, fault.reason, "Injected by /_sandbox/faults", headers), None, entry
        if body is ValueError:
            entry["status"] = 400
            return _error(400, "parseError", "Parse Error"), None, entry
        return None, body, entry

    def done(entry: dict[str, Any], response: Response) -> Response:
        entry["status"] = response.status_code
        return response

    async def insert(request: Request) -> Response:
        failed, body, entry = await api(request, "events.insert")
        if failed:
            return failed
        calendar_id = request.path_params["calendar_id"]
        if not isinstance(body, dict):
            return done(entry, _error(400, "required", "Missing end time."))
        event_id = body.get("id")
        if event_id is not None and (not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id)):
            return done(entry, _error(400, "invalid", "Invalid resource id value."))
        try:
            _validate(body)
        except _Invalid as exc:
            return done(entry, _error(400, exc.reason, exc.message))
        # Nothing below awaits: check-then-store is atomic on the event loop.
        if event_id is not None and (calendar_id, event_id) in state.events:
            return done(entry, _error(409, "duplicate", "The requested identifier already exists."))
        event = copy.deepcopy(body)
        event_id = event_id or "".join(secrets.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(26))
        created = _now()
        event.update(
            {
                "kind": "calendar#event",
                "id": event_id,
                "status": body.get("status", "confirmed"),
                "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                "created": created,
                "iCalUID": f"{event_id}@google.com",
                "sequence": 0,
                "organizer": {"email": calendar_id, "self": True},
            }
        )
        stored = state.store(calendar_id, event)
        return done(entry, JSONResponse(_public(stored)))

    def existing(request: Request) -> dict[str, Any] | None:
        return state.events.get((request.path_params["calendar_id"], request.path_params["event_id"]))

    async def get(request: Request) -> Response:
        failed, _, entry = await api(request, "events.get")
        if failed:
            return failed
        event = existing(request)
        if event is None:
            return done(entry, _error(404, "notFound", "Not Found"))
        return done(entry, JSONResponse(_public(event)))

    async def patch(request: Request) -> Response:
        failed, body, entry = await api(request, "events.patch")
        if failed:
            return failed
        event = existing(request)
        if event is None:
            return done(entry, _error(404, "notFound", "Not Found"))
        if not isinstance(body, dict):
            return done(entry, _error(400, "invalid", "Invalid patch body."))
        if "id" in body and body["id"] != event["id"]:
            return done(entry, _error(400, "invalid", "Invalid resource id value."))
        updated = copy.deepcopy(event)
        updated.update(copy.deepcopy(body))
        try:
            _validate(updated)
        except _Invalid as exc:
            return done(entry, _error(400, exc.reason, exc.message))
        if updated.get("start") != event.get("start") or updated.get("end") != event.get("end"):
            updated["sequence"] = int(event.get("sequence", 0)) + 1
        stored = state.store(request.path_params["calendar_id"], updated)
        return done(entry, JSONResponse(_public(stored)))

    async def delete(request: Request) -> Response:
        failed, _, entry = await api(request, "events.delete")
        if failed:
            return failed
        event = existing(request)
        if event is None:
            return done(entry, _error(404, "notFound", "Not Found"))
        if event.get("status") == "cancelled":
            return done(entry, _error(410, "deleted", "Resource has been deleted"))
        state.store(request.path_params["calendar_id"], {**event, "status": "cancelled"})
        return done(entry, Response(status_code=204))

    async def list_events(request: Request) -> Response:
        failed, _, entry = await api(request, "events.list")
        if failed:
            return failed
        calendar_id = request.path_params["calendar_id"]
        params = request.query_params
        try:
            max_results = min(2500, max(1, int(params.get("maxResults", "250"))))
        except ValueError:
            return done(entry, _error(400, "invalid", "Invalid value for maxResults."))
        page_token = params.get("pageToken")
        if page_token:
            if page_token not in state.pages:
                return done(entry, _error(400, "invalid", "Invalid page token value."))
            rest, sync_token = state.pages.pop(page_token)
        else:
            sync_token_in = params.get("syncToken")
            if sync_token_in:
                if any(name in params for name in _NO_SYNC_WITH):
                    return done(entry, _error(400, "invalid", "Sync token cannot be combined with these filters."))
                known = state.sync_tokens.get(sync_token_in)
                if known is None or known[0] != calendar_id:
                    return done(
                        entry,
                        _error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."),
                    )
                since = known[1]
                rest = [e for (c, _), e in state.events.items() if c == calendar_id and e["_seq"] > since]
            else:
                show_deleted = params.get("showDeleted") == "true"
                rest = [
                    e
                    for (c, _), e in state.events.items()
                    if c == calendar_id and (show_deleted or e.get("status") != "cancelled")
                ]
            rest = sorted(rest, key=lambda e: e["_seq"])
            sync_token = state.new_sync_token(calendar_id)
        page, rest = rest[:max_results], rest[max_results:]
        doc: dict[str, Any] = {
            "kind": "calendar#events",
            "summary": calendar_id,
            "updated": _now(),
            "items": [_public(e) for e in page],
        }
        if rest:
            next_page = f"page-{secrets.token_hex(8)}"
            state.pages[next_page] = (rest, sync_token)
            doc["nextPageToken"] = next_page
        else:
            doc["nextSyncToken"] = sync_token
        return done(entry, JSONResponse(doc))

    async def watch(request: Request) -> Response:
        failed, body, entry = await api(request, "events.watch")
        if failed:
            return failed
        calendar_id = request.path_params["calendar_id"]
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not _CHANNEL_ID.fullmatch(body["id"]):
            return done(entry, _error(400, "invalid", "Invalid channel id."))
        if body.get("type") not in ("web_hook", "webhook"):
            return done(entry, _error(400, "invalid", "Invalid channel type."))
        if not isinstance(body.get("address"), str) or not body["address"].startswith(("https://", "http://")):
            return done(entry, _error(400, "invalid", "Invalid channel address."))
        if body["id"] in state.channels:
            return done(entry, _error(400, "channelIdNotUnique", "Channel id not unique."))
        ttl = (body.get("params") or {}).get("ttl", "604800")
        try:
            ttl_s = int(ttl)
        except (TypeError, ValueError):
            return done(entry, _error(400, "invalid", "Invalid ttl."))
        channel = {
            "kind": "api#channel",
            "id": body["id"],
            "resourceId": "res-" + secrets.token_hex(8),
            "resourceUri": (
                f"https://www.googleapis.com/calendar/v3/calendars/{quote(calendar_id, safe='')}/events?alt=json"
            ),
            "token": body.get("token"),
            "expiration": str(int((time.time() + ttl_s) * 1000)),
        }
        state.channels[body["id"]] = {**channel, "address": body["address"], "calendar_id": calendar_id}
        return done(entry, JSONResponse(channel))

    async def stop(request: Request) -> Response:
        failed, body, entry = await api(request, "channels.stop")
        if failed:
            return failed
        channel = state.channels.get(body.get("id")) if isinstance(body, dict) else None
        if channel is None or channel["resourceId"] != body.get("resourceId"):
            return done(entry, _error(404, "notFound", "Channel not found."))
        del state.channels[body["id"]]
        return done(entry, Response(status_code=204))

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != state.refresh_token:
            return JSONResponse({"error": "invalid_grant", "error_description": "Bad Request"}, status_code=400)
        return JSONResponse({"access_token": state.access_token, "expires_in": 3599, "token_type": "Bearer"})

    # ------------------------------------------------------------------------------------------ sandbox routes
    async def ui_upsert(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be an event object"}, status_code=400)
        calendar_id = request.path_params["calendar_id"]
        event = copy.deepcopy(body)
        event.setdefault("id", secrets.token_hex(13))
        event.setdefault("status", "confirmed")
        event.setdefault("kind", "calendar#event")
        event.setdefault("created", _now())
        try:
            _validate(event)
        except _Invalid as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        return JSONResponse(_public(state.store(calendar_id, event)))

    async def ui_delete(request: Request) -> Response:
        event = existing(request)
        if event is None:
            return JSONResponse({"error": "no such event"}, status_code=404)
        state.store(request.path_params["calendar_id"], {**event, "status": "cancelled"})
        return Response(status_code=204)

    async def invalidate(request: Request) -> Response:
        count = len(state.sync_tokens)
        state.sync_tokens.clear()
        return JSONResponse({"invalidated": count})

    async def set_faults(request: Request) -> Response:
        spec = await request.json()
        status = spec.get("status") if isinstance(spec, dict) else None
        count = spec.get("count", 1) if isinstance(spec, dict) else 1
        if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int) or count < 0:
            return JSONResponse({"error": "give status (400-599) and count (≥ 0)"}, status_code=400)
        default_reason = {429: "rateLimitExceeded", 403: "rateLimitExceeded", 410: "fullSyncRequired"}
        retry_after = spec.get("retry_after")
        state.fault = (
            _Fault(
                status,
                count,
                str(retry_after) if retry_after is not None else None,
                str(spec.get("reason") or default_reason.get(status, "backendError")),
                spec.get("only"),
            )
            if count
            else None
        )
        return JSONResponse({"status": status, "count": count})

    async def objects(request: Request) -> Response:
        events = [{"calendar_id": c, **_public(e)} for (c, _), e in state.events.items()]
        channels = list(state.channels.values())
        return JSONResponse({"events": events, "channels": channels, "requests": state.requests})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    events = "/calendar/v3/calendars/{calendar_id}/events"
    app = Starlette(
        routes=[
            Route(events, insert, methods=["POST"]),
            Route(events, list_events, methods=["GET"]),
            Route(events + "/watch", watch, methods=["POST"]),
            Route(events + "/{event_id}", get, methods=["GET"]),
            Route(events + "/{event_id}", patch, methods=["PATCH"]),
            Route(events + "/{event_id}", delete, methods=["DELETE"]),
            Route("/calendar/v3/channels/stop", stop, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/_sandbox/calendars/{calendar_id}/events", ui_upsert, methods=["POST"]),
            Route("/_sandbox/calendars/{calendar_id}/events/{event_id}", ui_delete, methods=["DELETE"]),
            Route("/_sandbox/invalidate_sync_tokens", invalidate, methods=["POST"]),
            Route("/_sandbox/faults", set_faults, methods=["POST"]),
            Route("/_sandbox/objects", objects, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app
