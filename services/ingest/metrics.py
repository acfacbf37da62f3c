"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("ueba_ingest_events_total", "Events received, by result", ["result"])
ACCEPTED = EVENTS.labels("accepted")
DUPLICATES = EVENTS.labels("duplicate")
REJECTED = EVENTS.labels("rejected")
BATCHES = Counter("ueba_ingest_batches_total", "Batches committed")
COMMIT_SECONDS = Histogram(
    "ueba_ingest_batch_commit_seconds",
    "Time to validate, write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INFLIGHT = Gauge("ueba_ingest_batches_in_flight", "Batches being written now")
