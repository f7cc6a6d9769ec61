"""The ingest HTTP service: verify → normalize → dedupe + XADD → answer.

The webhook route is a plain ASGI app (:class:`Ingest`), the hot path; the other routes are Starlette's.

Routes:

- ``POST /webhooks/{source}``: a provider's webhook. Answers (always a JSON body):
  200 ``accepted`` only after the events are in Redis; 200 ``duplicate`` for a repeat of a provider event id (nothing
  written); 200 ``ignored`` for an authentic event of a type hookbus does not handle (counted, not published);
  401 missing/bad signature or stale timestamp; 400 malformed body; 415 a body type the source does not read;
  404 unknown or unconfigured source;
  413 body over the source's limit (checked before the body is read in full); 503 + ``Retry-After`` when Redis is
  unreachable, so the provider retries (promise 1).
- ``GET /healthz``: the process is up. ``GET /readyz``: Redis answers PING (503 otherwise).
- ``GET /metrics``: Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bus import metrics
from bus.connection import REDIS_DOWN, connect, is_unavailable
from bus.consumer import Consumer
from bus.envelope import Event, utc_now_rfc3339
from bus.groups import ensure_groups
from bus.metrics import EVENTS_PUBLISHED, WEBHOOK_CLOCK_SKEW, WEBHOOKS_RECEIVED
from bus.naming import Names
from bus.ordering import to_unix_s
from bus.publisher import Publisher
from bus.registry import load_consumers
from bus.startup import settle_garbage_collector

from .body import BadContentLength, BodyTooLarge, ClientDisconnect, check_length, read_body
from .config import IngestSettings
from .deadlines import Deadlines
from .envelopes import envelope_json
from .sources import configured_sources
from .sources.base import Delivery, PayloadError, SignatureError, Source

log = logging.getLogger("hookbus.ingest")

#: Seconds a provider should wait before retrying while Redis is unreachable.
RETRY_AFTER_S = 5


class ORJSONResponse(JSONResponse):
    """A JSON answer serialized with orjson (the same compact bytes as Starlette's, several times faster)."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


#: Seconds a sender has to deliver the whole body (a slow or stalled sender must not hold a connection forever).
BODY_TIMEOUT_S = 30.0
#: Event times further ahead than this (seconds) are refused: one would otherwise win every newer-snapshot check.
MAX_FUTURE_S = 24 * 3600


#: The longest event id accepted. Providers' ids are tens of characters; an id is part of the dedupe and trace keys,
#: every log line and the answer, so a megabyte of id would be stored and echoed several times over.
MAX_EVENT_ID_CHARS = 256


def _overlong_id(delivery: Delivery) -> str | None:
    """The start of the first id (the delivery's or an event's) over :data:`MAX_EVENT_ID_CHARS`, or None."""
    for event_id in (delivery.event_id, *(event.id for event in delivery.events)):
        if len(event_id) > MAX_EVENT_ID_CHARS:
            return event_id[:32]
    return None


def _from_the_future(events: Sequence[Event], now: float) -> str | None:
    """The first event time more than :data:`MAX_FUTURE_S` after ``now``, or None."""
    for event in events:
        try:
            if to_unix_s(event.time) > now + MAX_FUTURE_S:
                return event.time
        except ValueError:
            return event.time
    return None


def error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body every non-2xx answer uses: ``{"error": code, "detail": human text}``."""
    return ORJSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


#: A webhook answer for :meth:`Ingest.__call__`: status, JSON body, extra raw headers.
Answer = tuple[int, bytes, Sequence[tuple[bytes, bytes]]]
_NO_HEADERS: tuple[tuple[bytes, bytes], ...] = ()
_CLOSE = ((b"connection", b"close"),)
_RETRY_LATER = ((b"retry-after", str(RETRY_AFTER_S).encode()),)


def _error(status: int, code: str, detail: str, headers: Sequence[tuple[bytes, bytes]] = _NO_HEADERS) -> Answer:
    """:func:`error` as an :data:`Answer`."""
    return status, orjson.dumps({"error": code, "detail": detail}), headers


def _ok(doc: Mapping[str, object]) -> Answer:
    return 200, orjson.dumps(doc), _NO_HEADERS


_INTERNAL_ERROR = _error(500, "internal_error", "internal error; the delivery was not accepted")


def webhook_source(scope: Scope) -> str | None:
    """The ``{source}`` of a ``/webhooks/{source}`` request path (after the mount's ``root_path``), else None."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        path = path[len(root) :]
    return path[10:] if path.startswith("/webhooks/") else None


class Ingest:
    """The request handling, separate from app wiring so tests can inject a clock, sources and consumers."""

    def __init__(
        self,
        redis: aioredis.Redis,
        names: Names,
        sources: Mapping[str, Source],
        consumers: Sequence[Consumer],
        *,
        dedupe_ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.names = names
        self.sources = dict(sources)
        self.consumers = list(consumers)
        self.publisher = Publisher(redis, names, dedupe_ttl_s=dedupe_ttl_s)
        self._publishers: dict[int, Publisher] = {}
        self._counters: dict[tuple[object, ...], Any] = {}
        self.clock = clock
        self.groups_ready = False
        self._deadlines = Deadlines(BODY_TIMEOUT_S)  # read at construction, so tests can shorten it

    async def prepare_groups(self) -> None:
        """Create every installed consumer's groups, so nothing published from now on is missed by any of them."""
        await ensure_groups(self.redis, self.names, self.consumers)
        self.groups_ready = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /webhooks/{source}`` as a plain ASGI app: Starlette's request, routing and middleware layers would
        cost more CPU than the rest of the webhook's handling. Answers are pre-encoded JSON; an unexpected error is
        logged and answered 500 with the JSON error body, as the Starlette routes do."""
        name = webhook_source(scope) or ""
        try:
            status, body, headers = await self._webhook(name, scope, receive)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            self._outcome(name if name in self.sources else "unknown", "internal_error").inc()
            status, body, headers = _INTERNAL_ERROR
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _webhook(self, name: str, scope: Scope, receive: Receive) -> Answer:
        source = self.sources.get(name)
        if source is None:
            self._outcome("unknown", "unknown_source").inc()
            return _error(404, "unknown_source", f"no configured source named {name[:100]!r}")
        headers = Headers(scope=scope)
        try:
            check_length(headers.get("content-length"), source.max_body_bytes)
            ticket = self._deadlines.begin()
            try:
                body = await read_body(receive, source.max_body_bytes)
            except asyncio.CancelledError:
                if not self._deadlines.expired(ticket):
                    raise
                self._outcome(name, "bad_request").inc()
                timeout_s = self._deadlines.timeout_s
                return _error(408, "request_timeout", f"the body did not arrive within {timeout_s} s", _CLOSE)
            finally:
                self._deadlines.end(ticket)
        except BodyTooLarge as exc:
            self._outcome(name, "too_large").inc()
            return _error(413, "body_too_large", str(exc), _CLOSE)
        except BadContentLength as exc:
            self._outcome(name, "bad_request").inc()
            return _error(400, "bad_request", str(exc))
        except ClientDisconnect:
            # The sender went away mid-body: nothing to verify, nobody to answer. Counted, not an error.
            self._outcome(name, "client_disconnected").inc()
            return _error(400, "client_disconnected", "the client closed the connection before sending the body")
        now = self.clock()
        try:
            signed_at = source.verify(headers, body, now)
        except SignatureError as exc:
            self._outcome(name, "bad_signature").inc()
            return _error(401, "bad_signature", str(exc))
        if signed_at is None:  # a TimestampedSource whose verify() does not return the time (attribute check: below)
            signed_at_of = getattr(source, "signed_at", None)
            signed_at = signed_at_of(headers) if signed_at_of is not None else None
        if signed_at is not None and signed_at > now:
            self._skew(name).inc()
        try:
            # A source that reads headers too has parse_request (a RequestSource); a plain attribute check, since a
            # runtime-checkable Protocol's isinstance costs microseconds on every request.
            parse_request = getattr(source, "parse_request", None)
            if parse_request is not None:
                delivery = parse_request(headers, body)
            else:
                delivery = source.parse(body)
        except PayloadError as exc:
            self._outcome(name, "bad_request").inc()
            return _error(exc.status_code, exc.code, str(exc))
        except (ValueError, ArithmeticError, UnicodeError) as exc:
            # A value no check anticipated (a year-9999 time, an invalid URL): the same bytes would fail again, so
            # this is the sender's bad request, not our outage; a 500 would only make the provider retry forever.
            self._outcome(name, "bad_request").inc()
            log.warning("malformed payload", extra={"source": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            return _error(400, "bad_request", f"malformed payload: {type(exc).__name__}: {exc}"[:300])
        if too_long := _overlong_id(delivery):
            self._outcome(name, "bad_request").inc()
            return _error(400, "bad_request", f"event id longer than {MAX_EVENT_ID_CHARS} characters: {too_long}…")
        if future := _from_the_future(delivery.events, time.time()):  # the wall clock, not the signature clock
            self._outcome(name, "bad_request").inc()
            return _error(400, "bad_request", f"event time {future} is more than a day in the future")
        if not delivery.events:
            self._outcome(name, "unhandled_type").inc()
            log.info(
                "ignored unhandled type",
                extra={"source": name, "event_id": delivery.event_id, "provider_type": delivery.provider_type},
            )
            return _ok({"status": "ignored", "event_id": delivery.event_id})
        events = delivery.events
        received = {"receivedtime": utc_now_rfc3339()}
        envelopes = [envelope_json(event, received) for event in events]
        try:
            if not self.groups_ready:
                await self.prepare_groups()
            publisher = self._publisher_for(delivery.dedupe_ttl_s)
            result = await publisher.publish(events, dedupe_id=(name, delivery.event_id), envelopes=envelopes)
        except (*REDIS_DOWN, ResponseError) as exc:
            if isinstance(exc, ResponseError) and not is_unavailable(exc):
                raise
            self._outcome(name, "unavailable").inc()
            log.warning(
                "redis unreachable; answered 503",
                extra={"source": name, "event_id": delivery.event_id, "error": repr(exc)},
            )
            return _error(503, "unavailable", "event store unreachable; retry later", _RETRY_LATER)
        if result.duplicate:
            self._outcome(name, "duplicate").inc()
            log.info("duplicate dropped", extra={"source": name, "event_id": delivery.event_id})
            return _ok({"status": "duplicate", "event_id": delivery.event_id})
        self._outcome(name, "accepted").inc()
        info = log.isEnabledFor(logging.INFO)
        for event, entry_id in zip(events, result.entry_ids, strict=True):
            self._counter(EVENTS_PUBLISHED, name, event.type).inc()
            if info:  # one line per action; HOOKBUS_LOG_LEVEL=WARNING drops it for throughput (see README)
                log.info(
                    "published",
                    extra={"source": name, "event_id": event.id, "event_type": event.type, "entry_id": entry_id},
                )
        return _ok({"status": "accepted", "event_id": delivery.event_id, "entry_ids": result.entry_ids})

    def _outcome(self, source: str, outcome: str) -> Any:
        """The ``hookbus_webhooks_received_total`` child for ``source`` and ``outcome``."""
        return self._counter(WEBHOOKS_RECEIVED, source, outcome)

    def _skew(self, source: str) -> Any:
        return self._counter(WEBHOOK_CLOCK_SKEW, source)

    def _counter(self, metric: Counter, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per label set (labels() takes a lock and builds a tuple)."""
        key = (metric, *labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metric.labels(*labels)
        return child

    def _publisher_for(self, dedupe_ttl_s: int | None) -> Publisher:
        """The publisher remembering event ids for ``dedupe_ttl_s`` seconds (``None``: the configured TTL)."""
        if dedupe_ttl_s is None:
            return self.publisher
        if dedupe_ttl_s not in self._publishers:
            self._publishers[dedupe_ttl_s] = Publisher(self.redis, self.names, dedupe_ttl_s=dedupe_ttl_s)
        return self._publishers[dedupe_ttl_s]

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            await self.redis.ping()
        except REDIS_DOWN:
            return JSONResponse({"status": "unavailable", "redis": "down"}, status_code=503)
        return JSONResponse({"status": "ok", "redis": "up"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, exc.detail, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return error(500, "internal_error", "internal error; the delivery was not accepted")


class IngestApp(Starlette):
    """The Starlette app, except that ``POST /webhooks/{source}`` goes straight to :class:`Ingest` (a plain ASGI
    app), skipping the routing and middleware layers; every other request is Starlette's."""

    def __init__(self, ingest: Ingest, **options: Any) -> None:
        super().__init__(**options)
        self.ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and webhook_source(scope) is not None:
            await self.ingest(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: IngestSettings | None = None,
    *,
    redis: aioredis.Redis | None = None,
    sources: Mapping[str, Source] | None = None,
    consumers: Sequence[Consumer] | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the ingest app. Anything not given is taken from ``settings`` (default: the environment)."""
    settings = settings or IngestSettings()
    own_redis = redis is None
    client = redis or connect(settings.redis_url, socket_timeout_s=settings.ingest_redis_timeout_s)
    ingest = Ingest(
        client,
        Names(settings.hookbus_key_prefix),
        sources if sources is not None else configured_sources(),
        consumers if consumers is not None else load_consumers(),
        dedupe_ttl_s=settings.hookbus_dedupe_ttl_s,
        clock=clock,
    )

    metrics.initialize(sources=ingest.sources)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not ingest.sources:
            log.warning("no webhook source is configured (e.g. set STRIPE_WEBHOOK_SECRET)")
        try:
            await ingest.prepare_groups()
        except REDIS_DOWN as exc:
            log.warning(
                "redis unreachable at start-up; groups are created before the first publish", extra={"error": repr(exc)}
            )
        settle_garbage_collector()
        yield
        if own_redis:
            await client.aclose()

    app = IngestApp(
        ingest,
        routes=[
            # Served by IngestApp.__call__ directly; routed here too for the 405 of other methods.
            Route("/webhooks/{source:path}", ingest, methods=["POST"]),
            Route("/healthz", ingest.healthz, methods=["GET"]),
            Route("/readyz", ingest.readyz, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a trailing slash gets a JSON 404, not an empty 307
    app.state.ingest = ingest
    return app
