"""Prometheus metrics shared by every service (labelled by service)."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("procure_events_consumed_total", "Records consumed", ["service", "topic"])
PRODUCED = Counter("procure_events_produced_total", "Events published", ["service", "topic"])
FAILED = Counter(
    "procure_handler_failures_total", "Handler attempts that raised", ["service", "topic"]
)
DEAD_LETTERED = Counter(
    "procure_events_dead_lettered_total", "Records sent to the DLQ", ["service", "topic", "reason"]
)
SKIPPED = Counter(
    "procure_events_skipped_total",
    "Records skipped (duplicate event id, newer version of a known type)",
    ["service", "topic", "reason"],
)
PARKED = Counter("procure_events_parked_total", "Events parked", ["service", "topic"])
HANDLER_SECONDS = Histogram(
    "procure_handler_seconds", "Time to apply one event", ["service", "type"]
)
OUTBOX_BACKLOG = Gauge("procure_outbox_backlog", "Outbox rows not yet published", ["service"])
PARKED_NOW = Gauge("procure_parked_events", "Events waiting in the parking lot", ["service"])
DEAD_LETTERS_STUCK = Gauge(
    "procure_dead_letters_stuck",
    "Dead letters the broker has refused for a while: their partitions apply nothing meanwhile",
    ["service"],
)
INBOX_PRUNED = Counter(
    "procure_inbox_pruned_total",
    "Inbox rows deleted past PROCURE_INBOX_RETENTION_DAYS",
    ["service"],
)
CONSUMER_LAST_POLL = Gauge(
    "procure_consumer_last_poll_timestamp_seconds",
    "When the consumer's last poll returned (Unix time): one that stops moving no longer polls",
    ["service"],
)
