"""Prometheus metrics of the delivery service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter("ueba_delivery_attempts_total", "Delivery attempts by destination and outcome "
                   "(delivered, failed: to be retried, dead: given up)", ["destination", "outcome"])
QUEUED = Gauge("ueba_deliveries", "Deliveries not delivered, by destination and status (pending, dead)",
               ["destination", "status"])
UNROUTED = Gauge("ueba_outbox_unrouted", "Outbox rows not yet routed to their destinations")
DELAY = Histogram("ueba_delivery_delay_seconds", "From the finding's commit to its delivery, by destination",
                  ["destination"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400))
