"""Simulated events as detector records, for tuning and checking profiles without a database.

The conversion mirrors what ingest stores (lowercased type names, canonical users);
the end-to-end tests go through the real ingest pipeline instead.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from services.profiles.records import EventRecord
from ueba.v1 import common_pb2


def _user(name: str) -> str:
    name = name.strip()
    if "\\" in name:
        name = name.rsplit("\\", 1)[1]
    return name.split("@", 1)[0].lower()


def records(events: Iterable[common_pb2.Event], tenant: str = "default") -> Iterator[EventRecord]:
    for e in events:
        geo = e.geo
        yield EventRecord(
            event_id=e.event_id, time=e.time.ToDatetime().replace(tzinfo=None), user=_user(e.user),
            event_type=common_pb2.EventType.Name(e.type).removeprefix("EVENT_TYPE_").lower(),
            outcome={1: "success", 2: "failure"}.get(e.outcome, "unspecified"), tenant=tenant,
            source_ip=e.source_ip or None, source_host=e.source_host or None, destination_host=e.destination_host or None,
            application=e.application or None, country=geo.country_code or None, city=geo.city or None,
            latitude=geo.latitude if geo.has_coordinates else None, longitude=geo.longitude if geo.has_coordinates else None,
            bytes=e.bytes, file_count=e.file_count, action=e.action or None, department=e.department or None,
            producer=e.producer or None, object=e.object or None, logon_type=e.logon_type or None,
        )
