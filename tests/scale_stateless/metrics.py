"""Reading a service process's Prometheus metrics in the tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from ueba.launcher import ServiceProcess


def sample(process: ServiceProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry `labels`, from the process's metrics port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
