"""Prometheus metrics shared by hookbus processes (prometheus-client, default registry).

Names follow https://prometheus.io/docs/practices/naming/: ``hookbus_`` prefix, base units, ``_total`` for counters.
Labels are bounded sets (source, event type, group, outcome); never an event or entry id.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS_RECEIVED = Counter(
    "hookbus_webhooks_received_total",
    "Webhook requests received, by source and outcome "
    "(accepted, duplicate, unhandled_type, bad_signature, bad_request, too_large, client_disconnected, unavailable).",
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
MESSAGES_HANDLED = Counter(
    "hookbus_messages_handled_total",
    "Stream entries handled by a consumer group, by outcome (acked, retry, dead_lettered, cancelled).",
    ["group", "type", "outcome"],
)
HANDLER_DURATION = Histogram(
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
