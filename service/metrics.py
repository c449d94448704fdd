"""Prometheus metrics. Labels are route templates, methods, statuses and event types: never patient data."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

# Set by `intake serve --workers N` (N > 1) before uvicorn starts its worker processes:
# each one then writes its samples to files there, and any of them can answer a scrape
# for all of them. Unset (one process, tests, `intake dev`), the app's registry is used.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets around the p99 ≤ 50 ms goal, with room on both sides.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# The gauges are read from the database at scrape time by whichever process answers:
# across processes, the most recently set value is the true one.
_LATEST = "mostrecent"


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "intake_http_request_duration_seconds", "HTTP request latency by route template.",
            ("method", "route", "status"), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.events_appended = Counter(
            "intake_events_appended_total", "Events appended to the log by the API.",
            ("event_type",), registry=self.registry)
        self.outbox_backlog = Gauge(
            "intake_outbox_backlog", "Outbox rows not yet relayed.", registry=self.registry,
            multiprocess_mode=_LATEST)
        self.projection_lag_events = Gauge(
            "intake_projection_lag_events", "Events in the log a projection has not applied yet.",
            ("projection",), registry=self.registry, multiprocess_mode=_LATEST)
        self.projection_lag_seconds = Gauge(
            "intake_projection_lag_seconds", "Age of the oldest event a projection has not applied yet.",
            ("projection",), registry=self.registry, multiprocess_mode=_LATEST)
        self.projection_parked = Gauge(
            "intake_projection_parked_streams", "Streams parked after their projection kept failing.",
            ("projection",), registry=self.registry, multiprocess_mode=_LATEST)
        self.outbox_oldest_age = Gauge(
            "intake_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet relayed.",
            registry=self.registry, multiprocess_mode=_LATEST)
        # Outbound webhooks: the worker delivers, the database keeps the record, any API process reports.
        self.webhook_deliveries = Gauge(
            "intake_webhook_deliveries", "Webhook deliveries by state (pending, delivered, dead: dead-lettered).",
            ("state",), registry=self.registry, multiprocess_mode=_LATEST)
        self.webhook_failed_attempts = Gauge(
            "intake_webhook_failed_attempts", "Webhook delivery attempts that failed (timeouts, errors, non-2xx).",
            registry=self.registry, multiprocess_mode=_LATEST)
        self.webhook_lag_seconds = Gauge(
            "intake_webhook_delivery_lag_seconds", "Age of the oldest event whose webhook is not delivered yet.",
            registry=self.registry, multiprocess_mode=_LATEST)
        self.rate_limit_unavailable = Counter(
            "intake_rate_limit_unavailable_total",
            "Requests served without a rate-limit check because Redis was down or slow (fail open).",
            registry=self.registry)

    def exposition(self) -> bytes:
        """The Prometheus text for a scrape: every API process's samples when there are several."""
        if os.environ.get(MULTIPROCESS_DIR_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
