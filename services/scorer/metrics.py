"""Prometheus metrics of the scorer service."""

from __future__ import annotations

from prometheus_client import Counter

RUNS = Counter("ueba_scoring_runs_total", "Scoring runs finished, by status", ["status"])
SUCCEEDED = RUNS.labels("succeeded")
FAILED = RUNS.labels("failed")
