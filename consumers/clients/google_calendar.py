"""Async client for the Google Calendar API v3 (the calls hookbus makes).

API reference (https://developers.google.com/calendar/api/v3/reference):

=====================================================================  ==============================================
``POST   /calendar/v3/calendars/{calendarId}/events``                  events.insert (client-chosen ``id``)
``GET    /calendar/v3/calendars/{calendarId}/events/{eventId}``        events.get (deleted events: status cancelled)
``PATCH  /calendar/v3/calendars/{calendarId}/events/{eventId}``        events.patch
``DELETE /calendar/v3/calendars/{calendarId}/events/{eventId}``        events.delete (204; 410 if already deleted)
``GET    /calendar/v3/calendars/{calendarId}/events?syncToken=…``      events.list, incremental sync
                                                                       (https://developers.google.com/calendar/api/guides/sync)
``POST   /calendar/v3/calendars/{calendarId}/events/watch``            events.watch (push channel)
``POST   /calendar/v3/channels/stop``                                  channels.stop
=====================================================================  ==============================================

``base_url`` is ``https://www.googleapis.com`` (``GOOGLE_CALENDAR_BASE_URL``) or the local stand-in in
:mod:`consumers.sandboxes.google_calendar`. Authentication is OAuth 2.0 ``Authorization: Bearer``: either a fixed
access token, or a refresh token (with client id and secret) exchanged at ``token_url`` for short-lived access
tokens, renewed a minute before they expire and once more on a 401
(https://developers.google.com/identity/protocols/oauth2/web-server#offline). The exchange and the sharing of the
token set between processes (in Redis) are :mod:`consumers.clients.oauth`'s (:func:`google_tokens`).

Idempotent insert (shared case 023): the caller chooses the event ``id`` (:func:`event_id_for`: lower-case hex
SHA-256, a subset of base32hex ``[a-v0-9]``, 64 characters, within Google's 5–1024), so a retry of an insert whose
response was lost gets ``409 duplicate`` instead of creating a second event; :meth:`GoogleCalendarClient.insert_event`
raises :class:`EventAlreadyExists` and the caller reads the event to decide.

Failures map to the worker's exceptions (:mod:`bus.errors`):

=================================================  ===============================================================
400 (``invalid``, ``required`` …)                  :class:`GoogleCalendarInvalid` (``PermanentError``): dead-letter
401, 403 (auth, or ``rateLimitExceeded``/          :class:`GoogleCalendarRetry` (``RetryLater``): a 401 is first
``userRateLimitExceeded``/quota)                   answered by one refresh and a second attempt; quota errors
                                                   wait (``Retry-After`` if given)
refresh refused (``invalid_grant`` …)              :class:`~consumers.clients.oauth.OAuthRefreshFailed`
                                                   (``PermanentError``): authorize again
404                                                :class:`GoogleCalendarNotFound` (``PermanentError``) — callers
                                                   that expect it (get, delete) handle it
409 on insert                                      :class:`EventAlreadyExists`
410 on events.list with a syncToken                :class:`SyncTokenExpired`: clear the token, full resync
410 on delete                                      already deleted: success
408, 429, 5xx, connection errors, timeouts         ``RetryLater`` with ``delay`` from ``Retry-After``
other 4xx                                          ``PermanentError``
=================================================  ===============================================================
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from bus.errors import PermanentError, RetryLater
from bus.http import InstrumentedTransport
from bus.ratelimit import Limiter
from bus.retry_after import retry_after_delay

from .oauth import BearerAuth, RefreshingToken, StaticToken, TokenSource

__all__ = [
    "EVENT_ID",
    "EventAlreadyExists",
    "GoogleCalendarClient",
    "GoogleCalendarInvalid",
    "GoogleCalendarNotFound",
    "GoogleCalendarRetry",
    "SyncTokenExpired",
    "event_id_for",
    "google_tokens",
]

#: Google's rule for client-chosen event ids: base32hex characters, 5 to 1024 of them.
EVENT_ID = re.compile(r"[a-v0-9]{5,1024}", re.ASCII)
DEFAULT_BASE_URL = "https://www.googleapis.com"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
_QUOTA_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"})


def google_tokens(
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    token_url: str = DEFAULT_TOKEN_URL,
    redis: Any = None,
    key: str = "",
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RefreshingToken:
    """Access tokens from Google's refresh-token grant (client id and secret in the form, as Google's examples send
    them), shared through ``redis`` under ``key`` when given. See :class:`consumers.clients.oauth.RefreshingToken`."""
    return RefreshingToken(
        api="google_calendar",
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        auth_method="client_secret_post",
        redis=redis,
        key=key,
        timeout_s=timeout_s,
        transport=transport,
    )


def event_id_for(source: str, booking_id: str) -> str:
    """The Google Calendar event id of a booking: lower-case hex SHA-256 of ``"<source>:<booking id>"``.

    Valid base32hex (hex digits are a subset of ``[a-v0-9]``), 64 characters, the same on every retry and worker.
    Never the raw booking uid: ``bk_3F9a-77`` or a hyphenated UUID is rejected by Google with 400.
    ``event_id_for("calcom", "bk_3F9a-77")`` → ``78d6b4302c4be4dd055dc1fe9ff1987a3c607f1807e0a0a3bd2ffb38e30589a1``.
    """
    if not source or not booking_id:
        raise ValueError("source and booking id are required")
    return hashlib.sha256(f"{source}:{booking_id}".encode()).hexdigest()


class GoogleCalendarInvalid(PermanentError):
    """HTTP 400: Google rejected the request; retrying the same body cannot succeed."""


class GoogleCalendarNotFound(PermanentError):
    """HTTP 404: no such calendar or event."""


class GoogleCalendarRetry(RetryLater):
    """401/403 (token expired or revoked, missing access, quota): retried; dead-lettered after the last attempt."""


class EventAlreadyExists(PermanentError):
    """HTTP 409 on insert: an event with this client-chosen id exists already (possibly deleted: ids stay taken)."""


class SyncTokenExpired(RetryLater):
    """HTTP 410 on events.list: the sync token is no longer valid; the client must do a full sync."""


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """``(reason, message)`` of a Google error body ``{"error": {"errors": [{"reason", "message"}], …}}``."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return "", response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    errors = error.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    reason = first.get("reason") or (error.get("status") if isinstance(error.get("status"), str) else "")
    return str(reason or ""), str(error.get("message") or first.get("message") or "")


class GoogleCalendarClient:
    """Google Calendar API client.

    ``access_token`` (fixed) or ``refresh_token`` + ``client_id`` + ``client_secret`` (exchanged at ``token_url``,
    the token set kept in this process), or ``tokens`` (e.g. :func:`google_tokens` shared through Redis; the client
    closes it); ``timeout_s`` applies to connect, read, write and pool; ``transport`` replaces the network in tests;
    ``limiter`` is the shared rate limiter (API ``google_calendar``, keyed by ``account``, e.g. the Google user).
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        access_token: str = "",
        refresh_token: str = "",
        client_id: str = "",
        client_secret: str = "",
        token_url: str = DEFAULT_TOKEN_URL,
        tokens: TokenSource | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
        account: str = "default",
    ) -> None:
        if tokens is None:
            if refresh_token and client_id and client_secret:
                tokens = google_tokens(
                    client_id=client_id,
                    client_secret=client_secret,
                    refresh_token=refresh_token,
                    token_url=token_url,
                    timeout_s=timeout_s,
                    transport=transport,
                )
            elif access_token:
                tokens = StaticToken(access_token)
            else:
                raise ValueError("give an access token, or a refresh token with client id and secret")
        self._tokens = tokens
        self._http = httpx.AsyncClient(
            auth=BearerAuth(tokens),
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            transport=InstrumentedTransport("google_calendar", inner=transport, limiter=limiter, account=account),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"GoogleCalendarClient(base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> GoogleCalendarClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._tokens.aclose()

    # ------------------------------------------------------------------------------------------------ events
    async def insert_event(self, calendar_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """events.insert. Raises :class:`EventAlreadyExists` on 409 (the client-chosen ``id`` is taken)."""
        response = await self._request(
            "POST", f"{self._events(calendar_id)}", json=body, params={"sendUpdates": "none"}
        )
        if response.status_code == 409:
            raise EventAlreadyExists(f"gcal_event_exists: {body.get('id')}")
        return self._json(response, "events.insert")

    async def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        """events.get, or None when the event never existed (a deleted event is returned with status cancelled)."""
        response = await self._request("GET", f"{self._events(calendar_id)}/{quote(event_id, safe='')}")
        if response.status_code in (404, 410):
            return None
        return self._json(response, "events.get")

    async def patch_event(self, calendar_id: str, event_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """events.patch (only the given fields change)."""
        path = f"{self._events(calendar_id)}/{quote(event_id, safe='')}"
        response = await self._request("PATCH", path, json=body, params={"sendUpdates": "none"})
        return self._json(response, "events.patch")

    async def delete_event(self, calendar_id: str, event_id: str) -> bool:
        """events.delete; False when it was already deleted (410) or never existed (404)."""
        path = f"{self._events(calendar_id)}/{quote(event_id, safe='')}"
        response = await self._request("DELETE", path, params={"sendUpdates": "none"})
        if response.status_code in (404, 410):
            return False
        self._check(response, "events.delete")
        return True

    async def list_events(
        self,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
        max_results: int = 250,
        show_deleted: bool = False,
    ) -> dict[str, Any]:
        """One page of events.list: with ``sync_token`` only what changed since (deleted events always included,
        status cancelled); without, every event (a full sync; deleted ones too with ``show_deleted``). Pages after
        the first repeat the same parameters plus ``page_token``, as Google's sync guide does. Raises
        :class:`SyncTokenExpired` on 410."""
        params: dict[str, str] = {"maxResults": str(max_results)}
        if sync_token:
            params["syncToken"] = sync_token
        elif show_deleted:
            params["showDeleted"] = "true"
        if page_token:
            params["pageToken"] = page_token
        response = await self._request("GET", self._events(calendar_id), params=params)
        if response.status_code == 410:
            reason, message = _error_of(response)
            raise SyncTokenExpired(f"gcal_sync_token_expired: {reason or 'gone'} {message}".strip())
        return self._json(response, "events.list")

    # ---------------------------------------------------------------------------------------------- channels
    async def watch(
        self, calendar_id: str, *, channel_id: str, address: str, token: str, ttl_s: int | None = None
    ) -> dict[str, Any]:
        """events.watch: open a push channel to ``address`` (HTTPS in production). Returns the Channel resource
        (``id``, ``resourceId``, ``resourceUri``, ``expiration`` in Unix ms as a string)."""
        body: dict[str, Any] = {"id": channel_id, "type": "web_hook", "address": address, "token": token}
        if ttl_s:
            body["params"] = {"ttl": str(int(ttl_s))}
        response = await self._request("POST", f"{self._events(calendar_id)}/watch", json=body)
        return self._json(response, "events.watch")

    async def stop_channel(self, channel_id: str, resource_id: str) -> bool:
        """channels.stop; False when Google no longer knows the channel (404: already stopped or expired)."""
        response = await self._request(
            "POST", "/calendar/v3/channels/stop", json={"id": channel_id, "resourceId": resource_id}
        )
        if response.status_code == 404:
            return False
        self._check(response, "channels.stop")
        return True

    # --------------------------------------------------------------------------------------------- plumbing
    @staticmethod
    def _events(calendar_id: str) -> str:
        if not calendar_id:
            raise PermanentError("gcal_no_calendar_id")
        return f"/calendar/v3/calendars/{quote(calendar_id, safe='')}/events"

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # The client's BearerAuth adds the token, and on a 401 refreshes it and sends the request once more.
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # includes timeouts; safe to retry: inserts carry their own id
            raise RetryLater(f"gcal_transport_error: {type(exc).__name__}: {exc}") from exc

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        self._check(response, what)
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise RetryLater(f"gcal_unexpected_response: {what} answered {response.status_code} without JSON") from exc
        if not isinstance(doc, dict):
            raise RetryLater(f"gcal_unexpected_response: {what} answered {response.status_code} without an object")
        return doc

    @staticmethod
    def _check(response: httpx.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        reason, message = _error_of(response)
        detail = f"{what} {status} {reason} {message}".strip()
        if status == 400:
            raise GoogleCalendarInvalid(f"gcal_invalid: {detail}")
        if status in (401, 403):
            delay = retry_after_delay(response.headers.get("Retry-After"))
            kind = "gcal_rate_limited" if reason in _QUOTA_REASONS else "gcal_auth"
            raise GoogleCalendarRetry(f"{kind}: {detail}", delay=delay)
        if status == 404:
            raise GoogleCalendarNotFound(f"gcal_not_found: {detail}")
        if status in (408, 429) or status >= 500:
            delay = retry_after_delay(response.headers.get("Retry-After"))
            kind = "gcal_throttled" if status == 429 else "gcal_unavailable"
            raise RetryLater(f"{kind}: {detail}", delay=delay)
        raise PermanentError(f"gcal_http_{status}: {detail}")
