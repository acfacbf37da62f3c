"""Building events and profile specs for the profiles tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from services.profiles.kinds import KINDS, ProfileSpec, build_detector
from services.profiles.records import EventRecord

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)

NEW_YORK = (40.7128, -74.0060, "US", "New York")
LONDON = (51.5074, -0.1278, "GB", "London")
BOSTON = (42.3601, -71.0589, "US", "Boston")
TOKYO = (35.6762, 139.6503, "JP", "Tokyo")
LILLE = (50.6292, 3.0573, "FR", "Lille")
MARSEILLE = (43.2965, 5.3698, "FR", "Marseille")
FRANKFURT = (50.1109, 8.6821, "DE", "Frankfurt")
DARMSTADT = (49.8728, 8.6512, "DE", "Darmstadt")


def event(
    user: str = "alice",
    event_type: str = "logon",
    at: float | timedelta | datetime = 0,
    place: tuple[float, float, str, str] | None = None,
    **fields: Any,
) -> EventRecord:
    """An event `at` seconds (or a timedelta) after T0."""
    if isinstance(at, datetime):
        time = at
    else:
        time = T0 + (at if isinstance(at, timedelta) else timedelta(seconds=at))
    if place is not None:
        fields.setdefault("latitude", place[0])
        fields.setdefault("longitude", place[1])
        fields.setdefault("country", place[2])
        fields.setdefault("city", place[3])
    fields.setdefault("outcome", "success")
    return EventRecord(event_id=fields.pop("event_id", f"e{next(_ids)}"), time=time, user=user,
                       event_type=event_type, **fields)


def spec(kind: str, risk_score: int = 50, applications: tuple[str, ...] = (), **parameters: Any) -> ProfileSpec:
    return ProfileSpec(
        id=f"p-{kind}", name=kind.replace("_", " "), kind=kind, risk_score=risk_score,
        parameters=KINDS[kind].check_parameters(parameters), applications=applications,
    )


def detector(kind: str, risk_score: int = 50, applications: tuple[str, ...] = (), **parameters: Any):
    return build_detector(spec(kind, risk_score, applications, **parameters))
