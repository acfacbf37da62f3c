"""Custom threshold: a filter on event fields plus a count or sum over an interval,
grouped by user or by source."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.profiles.kinds.base import ProfileDetector, human_duration
from services.profiles.kinds.params import Param, ParameterError, choice, positive_int, positive_number
from services.profiles.kinds.trust import TRUSTED_NETWORKS
from services.profiles.records import EventRecord
from services.profiles.windows import BurstWindows, Entry
from ueba.store.anomalies import AnomalyRecord

FILTER_FIELDS = (
    "event_type", "outcome", "application", "country", "city", "action", "source_ip", "source_host",
    "destination_host", "producer", "department", "object", "failure_reason", "logon_type", "user",
)
GROUPS = {"user": "user", "source_ip": "source_ip", "source_host": "source_host"}
# Fields that say where an event came from: a profile grouping or filtering by one is about
# addresses, and events from trusted networks are left out of it.
ADDRESS_FIELDS = frozenset({"source_ip", "source_host", "country", "city"})
MAX_EVIDENCE_EVENTS = 50


def event_filter(field: str, value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict) or not value:
        raise ParameterError(field, "must be an object of field: value or [values], e.g. {\"event_type\": \"logon\"}")
    out = {}
    for name, wanted in value.items():
        if name not in FILTER_FIELDS:
            raise ParameterError(f"{field}.{name}", "unknown field; expected one of " + ", ".join(FILTER_FIELDS))
        items = wanted if isinstance(wanted, list) else [wanted]
        clean = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)) or str(item).strip() == "":
                raise ParameterError(f"{field}.{name}", "must be a string or a list of strings")
            clean.append(str(int(item)) if isinstance(item, float) and item == int(item) else str(item).strip().lower())
        if not clean:
            raise ParameterError(f"{field}.{name}", "must name at least one value")
        out[name] = clean
    return out


class CustomThresholdProfile(ProfileDetector):
    kind = "custom_threshold"
    default_dimension = "application"
    title = "Custom threshold"
    parameters = (
        Param("filter", event_filter, {"event_type": "logon", "outcome": "failure"}, "event fields and the values that match"),
        Param("aggregate", choice("count", "sum"), "count", "count the matching events or sum a field of them"),
        Param("sum_field", choice("bytes", "file_count"), "bytes", "the field summed when aggregate is sum"),
        Param("threshold", positive_number, 20, "count or sum within the interval that raises an anomaly"),
        Param("interval_seconds", positive_int, 3600, "length of the sliding window"),
        Param("group_by", choice(*GROUPS), "user", "count per user or per source address or host"),
        TRUSTED_NETWORKS,
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.match = {name: frozenset(values) for name, values in p["filter"].items()}
        self.threshold = p["threshold"]
        self.interval = float(p["interval_seconds"])
        self.group_by = p["group_by"]
        self.sum_field = p["sum_field"] if p["aggregate"] == "sum" else None
        self._windows = BurstWindows(self.interval)
        if "event_type" in self.match:
            self.event_types = self.match["event_type"]
        self.about_addresses = self.group_by != "user" or bool(ADDRESS_FIELDS & self.match.keys())

    def fired_windows(self, group: str) -> BurstWindows:
        return self._windows

    def accepts(self, e: EventRecord) -> bool:
        if not super().accepts(e):
            return False
        for name, values in self.match.items():
            value = getattr(e, name)
            if value is None or str(value).lower() not in values:
                return False
        return not (self.about_addresses and self.from_trusted(e))

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        group_value = getattr(e, GROUPS[self.group_by])
        if not group_value:
            return []
        weight = float(getattr(e, self.sum_field)) if self.sum_field else 1.0
        burst = self._windows.add(
            f"{self.group_by}:{group_value}", Entry(e.ts, e.event_id, weight=weight, key=e.user),
            lambda w: sum(x.weight for x in w) >= self.threshold,
        )
        if not burst:
            return []
        entries = burst.entries
        total = sum(x.weight for x in entries)
        per_user = Counter(x.key for x in entries)
        # Grouped by source, the anomaly is charged to the account seen most.
        user = e.user if self.group_by == "user" else sorted(per_user.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        measure = f"sum of {self.sum_field} {total:,.0f}" if self.sum_field else f"{len(entries)} matching events"
        subject = e.user if self.group_by == "user" else f"{self.group_by.replace('_', ' ')} {group_value}"
        return [self.fire(
            user=user, group=burst.group, at=entries[-1].ts, start=burst.start, end=burst.end,
            description=f"{self.spec.name}: {measure} for {subject} within {human_duration(self.interval)} "
            f"(threshold {self.threshold:g})",
            evidence={
                "event_ids": [x.item for x in entries[:MAX_EVIDENCE_EVENTS]],
                "count": len(entries),
                "value": total,
                "threshold": self.threshold,
                "interval_seconds": int(self.interval),
                "group_by": self.group_by,
                "users": sorted(per_user),
                "filter": {k: sorted(v) for k, v in self.match.items()},
            },
        )]
