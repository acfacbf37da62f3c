"""What profile detectors consume and produce: event rows in, firings out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

EARTH_RADIUS_KM = 6371.0


@dataclass(slots=True)
class EventRecord:
    """One stored event as the detectors see it (a row of `events`)."""

    event_id: str
    time: datetime
    user: str
    event_type: str
    outcome: str = "unspecified"
    tenant: str = "default"
    source_ip: str | None = None
    source_host: str | None = None
    destination_host: str | None = None
    application: str | None = None
    country: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    bytes: int = 0
    file_count: int = 0
    action: str | None = None
    department: str | None = None
    producer: str | None = None
    object: str | None = None
    failure_reason: str | None = None
    logon_type: int | None = None
    trusted_source: bool = False
    ts: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            self.time = self.time.replace(tzinfo=timezone.utc)
        if not self.ts:  # the store passes it in, computed by Postgres
            self.ts = self.time.timestamp()

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def place(self) -> dict[str, Any]:
        """The location as evidence shows it."""
        return self.sighting().place()

    def sighting(self) -> Sighting:
        return Sighting(self.ts, self.time, self.event_id, self.source_ip, self.country, self.city,
                        self.latitude, self.longitude)


@dataclass(slots=True)
class Sighting:
    """Where and when an account was seen: what location detectors keep of an event
    (a tenth of the record's memory)."""

    ts: float
    time: datetime
    event_id: str
    source_ip: str | None
    country: str | None
    city: str | None
    latitude: float | None
    longitude: float | None

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def move_to(self, e: EventRecord) -> None:
        """Becomes the sighting of a later event (at the same place): no new object per event."""
        self.ts, self.time, self.event_id, self.source_ip = e.ts, e.time, e.event_id, e.source_ip
        self.country, self.city, self.latitude, self.longitude = e.country, e.city, e.latitude, e.longitude

    def place(self) -> dict[str, Any]:
        """The location as evidence shows it."""
        return {
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "source_ip": self.source_ip,
            "time": self.time.isoformat(),
            "event_id": self.event_id,
        }




def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
