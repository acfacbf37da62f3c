"""Where an account acts from: risky countries, impossible travel (proximity) and
one account used from two distant places at once (shared credentials)."""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from services.profiles.kinds.base import ProfileDetector, human_duration
from services.profiles.kinds.params import (
    Param,
    cidrs,
    countries,
    non_negative_int,
    positive_int,
    positive_number,
    string_list,
)
from services.profiles.records import EventRecord, Sighting, haversine_km
from services.profiles.windows import BurstWindows, Entry, at_once
from ueba.store.anomalies import AnomalyRecord

HALF_EARTH_KM = 20_038.0
MAX_EVIDENCE_EVENTS = 50
# Moves of one user within the proximity horizon (a day) beyond which the oldest are forgotten.
MAX_TRAIL_POINTS = 1024


class TrustedNetworks:
    def __init__(self, networks: list[str]):
        self._nets = [ipaddress.ip_network(n) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __contains__(self, address: str | None) -> bool:
        if not address or not self._nets:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._nets)


class RiskyCountriesProfile(ProfileDetector):
    kind = "risky_countries"
    default_dimension = "location"
    title = "Risky countries"
    parameters = (
        Param("countries", countries, ["BY", "CU", "IR", "KP", "RU", "SY"], "ISO 3166-1 alpha-2 codes"),
        Param("interval_seconds", positive_int, 86400, "one anomaly per user and country within this interval"),
        Param("event_types", string_list, [], "event types to look at; empty: every type"),
    )

    def __init__(self, spec):
        super().__init__(spec)
        self.countries = frozenset(self.params["countries"])
        self.event_types = frozenset(self.params["event_types"]) or None
        self.interval = float(self.params["interval_seconds"])
        self._windows = BurstWindows(self.interval)

    def fired_windows(self, group: str) -> BurstWindows:
        return self._windows

    def accepts(self, e: EventRecord) -> bool:
        return bool(e.country) and super().accepts(e)

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        country = e.country.upper()
        if country not in self.countries or e.outcome == "failure":
            return []
        burst = self._windows.add(f"user:{e.user}:{country}", Entry(e.ts), at_once)
        if not burst:
            return []
        where = f"{e.city}, {country}" if e.city else country
        return [self.fire(
            user=e.user, group=burst.group, at=e.ts, start=burst.start, end=burst.end,
            description=f"{e.user}: {e.event_type.replace('_', ' ')} from {where}, a risky country",
            evidence={"event_ids": [e.event_id], "country": country, "location": e.place(),
                      "countries": sorted(self.countries)},
        )]


@dataclass(slots=True)
class _Trail:
    """A user's located logons within the horizon, in time order. A stay at one place is
    kept as its first and its latest logon, so the trail grows with moves, not logons."""

    times: list[float] = field(default_factory=list)
    points: list[Sighting] = field(default_factory=list)


class ProximityProfile(ProfileDetector):
    """Two logons of one user whose distance over the time between them needs more
    than a plausible speed times a multiplier ("impossible travel")."""

    kind = "proximity"
    default_dimension = "location"
    event_types = frozenset({"logon"})
    title = "Impossible travel"
    parameters = (
        Param("max_speed_kmh", positive_number, 900.0, "plausible travel speed (an airliner)"),
        Param("speed_multiplier", positive_number, 1.0, "tolerance on the plausible speed"),
        Param("min_distance_km", positive_number, 500.0, "closer logons never count (geolocation is coarse)"),
        Param("trusted_networks", cidrs, [], "source networks (VPN exits, proxies) whose geolocation is ignored"),
        Param("suppress_seconds", positive_int, 21600, "one anomaly per user within this interval (the way back is the same trip)"),
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.speed = p["max_speed_kmh"] * p["speed_multiplier"]
        self.min_distance = p["min_distance_km"]
        self.trusted = TrustedNetworks(p["trusted_networks"])
        self.horizon = self.lookback_seconds(p)
        self._trails: dict[str, _Trail] = {}
        self._fired = BurstWindows(float(p["suppress_seconds"]), lateness=self.horizon)

    @classmethod
    def lookback_seconds(cls, params: dict[str, Any]) -> float:
        # Beyond the time it takes to fly half round the earth every trip is possible.
        return HALF_EARTH_KM / (params["max_speed_kmh"] * params["speed_multiplier"]) * 3600 + 3600

    def accepts(self, e: EventRecord) -> bool:
        return (
            super().accepts(e) and e.outcome != "failure" and e.located
            and not e.trusted_source and not (self.trusted and e.source_ip in self.trusted)
        )

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        trail = self._trails.get(e.user)
        if trail is None:
            trail = self._trails[e.user] = _Trail()
        times, points = trail.times, trail.points
        here = e.sighting()
        if times and e.ts >= times[-1] and _same_place(points[-1], here):
            # Still at the place of the last logon: nothing to judge (no distance).
            if len(points) > 1 and _same_place(points[-2], here):
                times[-1], points[-1] = e.ts, here
            else:
                times.append(e.ts)
                points.append(here)
            self._trim(trail)
            return []
        i = bisect.bisect_right(times, e.ts)
        times.insert(i, e.ts)
        points.insert(i, here)
        out = []
        # Compare with the logon before and, for a late event, the one after.
        pairs = []
        if i > 0:
            pairs.append((points[i - 1], here))
        if i + 1 < len(points):
            pairs.append((here, points[i + 1]))
        for before, after in pairs:
            firing = self._judge(e.user, before, after)
            if firing:
                out.append(firing)
        self._trim(trail)
        return out

    def retained(self) -> int:
        return super().retained() + sum(len(t.points) for t in self._trails.values())

    def _trim(self, trail: _Trail) -> None:
        cutoff = trail.times[-1] - self.horizon
        k = 0
        if trail.times[0] < cutoff:
            # Keep one logon before the horizon: it is still the previous location.
            k = max(0, bisect.bisect_left(trail.times, cutoff) - 1)
        k = max(k, len(trail.times) - MAX_TRAIL_POINTS)
        if k:
            del trail.times[:k]
            del trail.points[:k]

    def _judge(self, user: str, before: Sighting, after: Sighting) -> AnomalyRecord | None:
        distance = haversine_km(before.latitude, before.longitude, after.latitude, after.longitude)
        if distance < self.min_distance:
            return None
        hours = max(after.ts - before.ts, 0.0) / 3600
        if hours * self.speed >= distance:
            return None
        burst = self._fired.add(f"user:{user}", Entry(after.ts), at_once)
        if not burst:
            return None
        speed = distance / hours if hours > 0 else None
        return self.fire(
            user=user, group=burst.group, at=after.ts, start=before.ts, end=after.ts,
            description=f"{user} logged on from {_where(after)} {human_duration(after.ts - before.ts)} after "
            f"{_where(before)}, {distance:,.0f} km away"
            + (f" ({speed:,.0f} km/h; plausible {self.speed:,.0f} km/h)" if speed else " at the same time"),
            evidence={
                "event_ids": [before.event_id, after.event_id],
                "previous_location": before.place(),
                "location": after.place(),
                "distance_km": round(distance, 1),
                "hours": round(hours, 3),
                "speed_kmh": round(speed, 1) if speed else None,
                "max_speed_kmh": self.speed,
                "min_distance_km": self.min_distance,
            },
        )


def _same_place(a: Sighting, b: Sighting) -> bool:
    return a.latitude == b.latitude and a.longitude == b.longitude


def _where(e: Sighting) -> str:
    if e.city and e.country:
        return f"{e.city}, {e.country}"
    return e.country or e.source_ip or "an unknown place"


class SharedCredentialsProfile(ProfileDetector):
    """One account active from two distant places in turn (A, B, A) within an interval,
    or from many public addresses at once: the credentials are in two hands."""

    kind = "shared_credentials"
    default_dimension = "authentication"
    title = "Shared credentials"
    parameters = (
        Param("interval_seconds", positive_int, 3600, "length of the sliding window"),
        Param("min_distance_km", positive_number, 500.0, "how far apart the two places must be"),
        Param("max_addresses", non_negative_int, 0, "distinct untrusted source addresses within the interval that raise an anomaly; 0: off"),
        Param("trusted_networks", cidrs, [], "source networks whose activity is ignored"),
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.interval = float(p["interval_seconds"])
        self.min_distance = p["min_distance_km"]
        self.max_addresses = p["max_addresses"]
        self.trusted = TrustedNetworks(p["trusted_networks"])
        self._windows = BurstWindows(self.interval)

    def fired_windows(self, group: str) -> BurstWindows:
        return self._windows

    def accepts(self, e: EventRecord) -> bool:
        return (
            super().accepts(e) and e.outcome != "failure" and (e.located or bool(e.source_ip))
            and not e.trusted_source and not (self.trusted and e.source_ip in self.trusted)
        )

    def _alternation(self, window: list[Entry]) -> tuple[Sighting, Sighting, Sighting] | None:
        """(a, b, c) in time order, c the newest, a near c and b far from it: back and forth."""
        c = window[-1].item
        if not c.located:
            return None
        far = None
        for entry in reversed(window[:-1]):
            x = entry.item
            if not x.located:
                continue
            if x.latitude == c.latitude and x.longitude == c.longitude:
                near = True
            else:
                near = haversine_km(x.latitude, x.longitude, c.latitude, c.longitude) < self.min_distance
            if not near:
                far = far or x
            elif far is not None:
                return x, far, c
        return None

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        # Only moves matter: a run of events from one place (and, when addresses count, one
        # address) is one entry, its latest event; so memory follows moves, not events.
        if self.max_addresses:
            key = (e.latitude, e.longitude, e.source_ip)
        elif e.located:
            key = (e.latitude, e.longitude)
        else:
            return []  # takes part in no back-and-forth
        group = f"user:{e.user}"
        repeated = self._windows.extend(group, e.ts, key)
        if repeated is not None:
            repeated.item.move_to(e)
            return []
        entry = Entry(e.ts, e.sighting(), key=key)
        found: dict[str, Any] = {}

        def reached(window) -> bool:
            triple = self._alternation(window)
            if triple:
                found["triple"] = triple
                return True
            if self.max_addresses:
                addresses = {x.item.source_ip for x in window if x.item.source_ip}
                if len(addresses) >= self.max_addresses:
                    found["addresses"] = sorted(addresses)
                    return True
            return False

        burst = self._windows.add(group, entry, reached)
        if not burst:
            return []
        seen = [x.item for x in burst.entries]
        if "triple" in found:
            a, b, c = found["triple"]
            distance = haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)
            description = (
                f"{e.user} active from {_where(a)} and {_where(b)} ({distance:,.0f} km apart) in turn within "
                f"{human_duration(self.interval)}"
            )
            evidence = {"locations": [a.place(), b.place(), c.place()], "distance_km": round(distance, 1)}
            ids = [a.event_id, b.event_id, c.event_id]
        else:
            addresses = found["addresses"]
            description = f"{e.user} active from {len(addresses)} addresses within {human_duration(self.interval)}"
            evidence = {"addresses": addresses, "address_threshold": self.max_addresses}
            ids = [x.event_id for x in seen[:MAX_EVIDENCE_EVENTS]]
        return [self.fire(
            user=e.user, group=burst.group, at=seen[-1].ts, start=burst.start, end=burst.end,
            description=description,
            evidence={"event_ids": ids, "interval_seconds": int(self.interval), "min_distance_km": self.min_distance, **evidence},
        )]
