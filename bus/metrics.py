"""Prometheus metrics shared by hookbus processes (prometheus-client, default registry).

Names follow https://prometheus.io/docs/practices/naming/: ``hookbus_`` prefix, base units, ``_total`` for counters.
Labels are bounded sets (source, event type, group, outcome); never an event or entry id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Histogram

from .loopmetrics import LoopCounter, LoopHistogram

WEBHOOK_OUTCOMES = (
    "accepted",
    "duplicate",
    "unhandled_type",
    "bad_signature",
    "bad_request",
    "too_large",
    "client_disconnected",
    "unavailable",
    "internal_error",
)

WEBHOOKS_RECEIVED = Counter(
    "hookbus_webhooks_received_total",
    "Webhook requests received, by source and outcome "
    "(accepted, duplicate, unhandled_type, bad_signature, bad_request, too_large, client_disconnected, unavailable, "
    "internal_error).",
    ["source", "outcome"],
)
WEBHOOK_CLOCK_SKEW = Counter(
    "hookbus_webhook_future_timestamps_total",
    "Signed webhooks whose timestamp lies in the future of this host's clock (accepted; a sign of clock skew).",
    ["source"],
)
EVENTS_PUBLISHED = Counter(
    "hookbus_events_published_total", "Events written to their streams, by source and event type.", ["source", "type"]
)
# The worker's per-event metrics are updated on its event loop only: lock-free (see bus.loopmetrics).
MESSAGES_HANDLED = LoopCounter(
    "hookbus_messages_handled_total",
    "Stream entries handled by a consumer group, by outcome (acked, retry, dead_lettered, cancelled).",
    ["group", "type", "outcome"],
)
HANDLER_DURATION = LoopHistogram(
    "hookbus_handler_duration_seconds",
    "Time a handler took, successful or not.",
    ["group", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MESSAGES_RECLAIMED = Counter(
    "hookbus_messages_reclaimed_total", "Pending entries claimed for another attempt, by group.", ["group"]
)
LOST_MESSAGES = Counter(
    "hookbus_lost_messages_total",
    "Pending entries deleted from their stream before a consumer could process them (XDEL or trimming by others).",
    ["group"],
)
GROUPS_RECREATED = Counter(
    "hookbus_group_recreated_total", "Consumer groups recreated after NOGROUP (the stream vanished).", ["group"]
)
CONSUMERS_DELETED = Counter(
    "hookbus_consumers_deleted_total", "Idle consumers owning no pending entries removed from their group.", ["group"]
)
STREAM_ENTRIES_TRIMMED = Counter(
    "hookbus_stream_entries_trimmed_total", "Entries removed from streams by retention trimming.", ["stream"]
)
DOWNSTREAM_REQUESTS = Counter(
    "hookbus_downstream_requests_total",
    "Requests to downstream APIs, by api and status class (2xx, 4xx, 5xx, error for transport failures).",
    ["api", "status_class"],
)
DOWNSTREAM_DURATION = Histogram(
    "hookbus_downstream_request_duration_seconds",
    "Time until a downstream API's response headers arrived.",
    ["api"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RATELIMIT_THROTTLED = Counter(
    "hookbus_ratelimit_throttled_total", "Downstream requests that had to wait for the shared rate limit.", ["api"]
)
RATELIMIT_WAIT = Counter(
    "hookbus_ratelimit_wait_seconds_total", "Time spent waiting for the shared rate limit.", ["api"]
)
RATELIMIT_RELEASED = Counter(
    "hookbus_ratelimit_released_total",
    "Entries released for a later retry because the rate-limit wait exceeded its bound.",
    ["api"],
)
RATELIMIT_PAUSED = Counter(
    "hookbus_ratelimit_paused_total", "Pauses of a downstream API key after a 429 or quota error.", ["api"]
)
EVENT_LATENCY = LoopHistogram(
    "hookbus_event_latency_seconds",
    "End-to-end latency from webhook receipt at ingest to the handler's successful completion.",
    ["group", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


def initialize(
    *, sources: Iterable[str] = (), groups: Mapping[str, Iterable[str]] | None = None, apis: Iterable[str] = ()
) -> None:
    """Create the series for known label values at 0, so dashboards and alerts see 0 instead of "no data"."""
    for source in sources:
        for outcome in WEBHOOK_OUTCOMES:
            WEBHOOKS_RECEIVED.labels(source, outcome)
    for group, types in (groups or {}).items():
        MESSAGES_RECLAIMED.labels(group)
        LOST_MESSAGES.labels(group)
        for event_type in types:
            HANDLER_DURATION.labels(group, event_type)
            EVENT_LATENCY.labels(group, event_type)
            for outcome in ("acked", "retry", "dead_lettered"):
                MESSAGES_HANDLED.labels(group, event_type, outcome)
    for api in apis:
        DOWNSTREAM_DURATION.labels(api)
        RATELIMIT_THROTTLED.labels(api)
        RATELIMIT_WAIT.labels(api)
        RATELIMIT_PAUSED.labels(api)
        RATELIMIT_RELEASED.labels(api)
        for status_class in ("2xx", "4xx", "5xx", "error"):
            DOWNSTREAM_REQUESTS.labels(api, status_class)
