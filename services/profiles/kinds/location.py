"""Where an account acts from: risky countries, impossible travel (proximity) and
one account used from two distant places at once (shared credentials)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from services.profiles.kinds.base import HistoryNeeds, ProfileDetector, human_duration
from services.profiles.kinds.params import (
    Param,
    countries,
    non_negative_int,
    non_negative_number,
    positive_int,
    positive_number,
    string_list,
)
from services.profiles.kinds.trust import TRUSTED_NETWORKS, network_of
from services.profiles.records import EventRecord, Sighting, haversine_km
from services.profiles.windows import BurstWindows, Entry, at_once
from ueba.store.anomalies import AnomalyRecord

HALF_EARTH_KM = 20_038.0
MAX_EVIDENCE_EVENTS = 50
# Moves of one user within the proximity horizon (a day) beyond which the oldest are forgotten.
MAX_TRAIL_POINTS = 1024
DAY = 86400.0
PRUNE_EVERY = 100_000


class RiskyCountriesProfile(ProfileDetector):
    kind = "risky_countries"
    default_dimension = "location"
    title = "Risky countries"
    parameters = (
        Param("countries", countries, ["BY", "CU", "IR", "KP", "RU", "SY"], "ISO 3166-1 alpha-2 codes"),
        Param("interval_seconds", positive_int, 86400, "one anomaly per user and country within this interval"),
        Param("event_types", string_list, [], "event types to look at; empty: every type"),
        TRUSTED_NETWORKS,
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
        # A trusted network's geolocation is its exit's, not where the user is.
        return bool(e.country) and super().accepts(e) and not self.from_trusted(e)

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
class _Stop:
    """A located event as the trail keeps it: where, how sure, and from which network."""

    seen: Sighting
    radius_km: float
    network: str | None


@dataclass(slots=True)
class _Trail:
    """A user's located events within the horizon, in time order. A stay at one place is
    kept as its first and its latest event, so the trail grows with moves, not events."""

    times: list[float] = field(default_factory=list)
    stops: list[_Stop] = field(default_factory=list)


@dataclass(slots=True)
class NetworkUse:
    first: float
    last: float
    reached: bool = False  # first reached by a plausible journey


class UserNetworks:
    """The networks each user has made their own (README: "Impossible travel"): a network is the
    user's once first reached by a plausible journey, or first used `familiar_after` seconds
    before; forgotten `forget_after` seconds after its last use."""

    def __init__(self, familiar_after: float, forget_after: float):
        self.familiar_after = familiar_after
        self.forget_after = forget_after
        self._users: dict[str, dict[str, NetworkUse]] = {}
        self._count = 0
        self._newest = float("-inf")

    def __len__(self) -> int:
        return sum(len(n) for n in self._users.values())

    def use(self, user: str, network: str | None, first: float, last: float) -> NetworkUse | None:
        """Remembers a use; returns the memory of a network new to the user, for the caller to judge."""
        if network is None:
            return None
        self._count += 1
        if last > self._newest:
            self._newest = last
        if self._count % PRUNE_EVERY == 0:
            self._prune()
        networks = self._users.get(user)
        if networks is None:
            networks = self._users[user] = {}
        known = networks.get(network)
        if known is None:
            known = networks[network] = NetworkUse(first, last)
            return known
        if first < known.first:
            known.first = first
        if last > known.last:
            known.last = last
        return None

    def familiar(self, user: str, network: str | None, as_of: float) -> bool:
        if network is None or not self.familiar_after:
            return False
        known = self._users.get(user, {}).get(network)
        return known is not None and (known.reached or as_of - known.first >= self.familiar_after)

    def _prune(self) -> None:
        cutoff = self._newest - self.forget_after
        for user, networks in list(self._users.items()):
            for network in [n for n, known in networks.items() if known.last < cutoff]:
                del networks[network]
            if not networks:
                del self._users[user]


class ProximityProfile(ProfileDetector):
    """Two located events of one user further apart than a plausible journey in the time
    between them ("impossible travel"), each location taken with its uncertainty."""

    kind = "proximity"
    default_dimension = "location"
    title = "Impossible travel"
    parameters = (
        Param("max_speed_kmh", positive_number, 900.0, "plausible travel speed (an airliner)"),
        Param("speed_multiplier", positive_number, 1.0, "tolerance on the plausible speed"),
        Param("min_distance_km", non_negative_number, 0.0,
              "moves shorter than this never count, whatever the radii; 0: the radii alone decide"),
        Param("city_radius_km", non_negative_number, 50.0,
              "uncertainty of a location geolocated to a city: two events count as apart only beyond their radii"),
        Param("coarse_radius_km", non_negative_number, 500.0,
              "uncertainty of a location with coordinates but no city (a country or region centroid)"),
        Param("familiar_after_hours", non_negative_number, 8.0,
              "a network (/24, /48) the user first reached by a plausible journey, or first used at least this "
              "long before, is theirs (home, VPN exit, hotel): moves between two such are switches, not travel; 0: off"),
        Param("familiar_days", positive_int, 30, "a network is forgotten this many days after the user last used it"),
        Param("event_types", string_list, [], "event types to look at; empty: every located event"),
        TRUSTED_NETWORKS,
        Param("suppress_seconds", positive_int, 21600, "one anomaly per user within this interval (the way back is the same trip)"),
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.speed = p["max_speed_kmh"] * p["speed_multiplier"]
        self.min_distance = p["min_distance_km"]
        self.event_types = frozenset(p["event_types"]) or None
        self.horizon = self.lookback_seconds(p)
        self._trails: dict[str, _Trail] = {}
        self._networks = UserNetworks(p["familiar_after_hours"] * 3600, p["familiar_days"] * DAY)
        self._fired = BurstWindows(float(p["suppress_seconds"]), lateness=self.horizon)

    @classmethod
    def lookback_seconds(cls, params: dict[str, Any]) -> float:
        # Beyond the time it takes to fly half round the earth every trip is possible.
        return HALF_EARTH_KM / (params["max_speed_kmh"] * params["speed_multiplier"]) * 3600 + 3600

    @classmethod
    def history_needs(cls, params: dict[str, Any]) -> HistoryNeeds | None:
        if not params["familiar_after_hours"]:
            return None
        return HistoryNeeds(seen_entities=("source_ip",), days=params["familiar_days"])

    def seed_entities(self, rows) -> None:
        for user, entity_type, address, first, last in rows:
            if entity_type == "source_ip":
                self._networks.use(user, network_of(address), first.timestamp(), last.timestamp())

    def accepts(self, e: EventRecord) -> bool:
        # A trusted network's geolocation is its exit's, not where the user is.
        return super().accepts(e) and e.outcome != "failure" and e.located and not self.from_trusted(e)

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        network = network_of(e.source_ip)
        new = self._networks.use(e.user, network, e.ts, e.ts)
        trail = self._trails.get(e.user)
        if trail is None:
            trail = self._trails[e.user] = _Trail()
        times, stops = trail.times, trail.stops
        if times and e.ts >= times[-1]:
            last = stops[-1]
            if last.seen.latitude == e.latitude and last.seen.longitude == e.longitude:
                # Still at the place of the last event: nothing to judge (no distance). A new
                # network here is as much the user's as the stay's (a new address from the same ISP).
                if new is not None:
                    new.reached = self._networks.familiar(e.user, last.network, e.ts)
                if len(stops) > 1 and _same_place(stops[-2].seen, last.seen):
                    last.seen.move_to(e)  # the stay's latest event, without a new object per event
                    last.radius_km, last.network, times[-1] = self._radius(e), network, e.ts
                else:
                    times.append(e.ts)
                    stops.append(_Stop(e.sighting(), self._radius(e), network))
                    self._trim(trail)
                return []
        i = bisect.bisect_right(times, e.ts)
        times.insert(i, e.ts)
        stops.insert(i, _Stop(e.sighting(), self._radius(e), network))
        firing, plausible = self._judge(e.user, trail, i)
        if new is not None:
            new.reached = plausible  # a network first reached by a plausible journey is where the user went
        self._trim(trail)
        return [firing] if firing else []

    def retained(self) -> int:
        return super().retained() + sum(len(t.stops) for t in self._trails.values()) + len(self._networks)

    # --- where the user may be ---------------------------------------------------
    def _radius(self, e: EventRecord) -> float:
        return self.params["city_radius_km"] if e.city else self.params["coarse_radius_km"]

    # --- judging -------------------------------------------------------------
    def _trim(self, trail: _Trail) -> None:
        cutoff = trail.times[-1] - self.horizon
        k = 0
        if trail.times[0] < cutoff:
            # Keep one event before the horizon: it is still the previous location.
            k = max(0, bisect.bisect_left(trail.times, cutoff) - 1)
        k = max(k, len(trail.times) - MAX_TRAIL_POINTS)
        if k:
            del trail.times[:k]
            del trail.stops[:k]

    def _judge(self, user: str, trail: _Trail, i: int) -> tuple[AnomalyRecord | None, bool]:
        """The new stop against every other stop of the trail (not only its neighbours: a nearby
        stop in between, within its radius, must not hide the jump); fires for the pair that
        needs the most speed. Also says whether every pair was a plausible journey."""
        here = trail.stops[i]
        worst = None
        plausible = True
        for j, other in enumerate(trail.stops):
            if j == i:
                continue
            before, after = (other, here) if j < i else (here, other)
            needed = self._needed_speed(before, after)
            if needed is None:
                continue
            plausible = False
            if worst is not None and needed[0] <= worst[0]:
                continue
            if self._networks.familiar(user, before.network, after.seen.ts) and self._networks.familiar(
                    user, after.network, after.seen.ts):
                continue  # switching between the user's own networks (VPN on and off) is not travel
            worst = (needed[0], needed[1], before, after)
        if worst is None:
            return None, plausible
        _, distance, before, after = worst
        burst = self._fired.add(f"user:{user}", Entry(after.seen.ts), at_once)
        if not burst:
            return None, plausible
        familiar = [self._networks.familiar(user, stop.network, after.seen.ts) for stop in (before, after)]
        return self._record(user, before, after, distance, familiar, burst.group), plausible

    def _needed_speed(self, before: _Stop, after: _Stop) -> tuple[float, float] | None:
        """(speed needed beyond the radii, distance) when no plausible journey joins the two; else None."""
        a, b = before.seen, after.seen
        distance = haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)
        apart = distance - before.radius_km - after.radius_km
        if apart <= 0 or distance < self.min_distance:
            return None
        hours = max(b.ts - a.ts, 0.0) / 3600
        if hours * self.speed >= apart:
            return None
        return (apart / hours if hours > 0 else float("inf")), distance

    def _record(self, user: str, before: _Stop, after: _Stop, distance: float, familiar: list[bool],
                group: str) -> AnomalyRecord:
        a, b = before.seen, after.seen
        hours = max(b.ts - a.ts, 0.0) / 3600
        speed = distance / hours if hours > 0 else None
        return self.fire(
            user=user, group=group, at=b.ts, start=a.ts, end=b.ts,
            description=f"{user} active from {_where(b)} {human_duration(b.ts - a.ts)} after "
            f"{_where(a)}, {distance:,.0f} km away"
            + (f" ({speed:,.0f} km/h; plausible {self.speed:,.0f} km/h)" if speed else " at the same time"),
            evidence={
                "event_ids": [a.event_id, b.event_id],
                "previous_location": a.place(),
                "location": b.place(),
                "distance_km": round(distance, 1),
                "radius_km": [before.radius_km, after.radius_km],
                "hours": round(hours, 3),
                "speed_kmh": round(speed, 1) if speed else None,
                "max_speed_kmh": self.speed,
                "familiar_network": familiar,
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
        TRUSTED_NETWORKS,
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.interval = float(p["interval_seconds"])
        self.min_distance = p["min_distance_km"]
        self.max_addresses = p["max_addresses"]
        self._windows = BurstWindows(self.interval)

    def fired_windows(self, group: str) -> BurstWindows:
        return self._windows

    def accepts(self, e: EventRecord) -> bool:
        return (
            super().accepts(e) and e.outcome != "failure" and (e.located or bool(e.source_ip))
            and not self.from_trusted(e)
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
