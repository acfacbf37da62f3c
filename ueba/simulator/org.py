"""The organisation: users with their habits, hosts, and each user's plan for the period
(trips, days off, a new laptop, departure).

Everything is drawn from random.Random streams seeded from (seed, purpose, user), so one user's
habits do not shift when another user or a scenario is added.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

from ueba.simulator.world import (
    AIRLINER_KMH,
    BROWSER_AGENTS,
    COMMON_APPS,
    FILE_EXTENSIONS,
    FILE_WORDS,
    FIRST_NAMES,
    LAST_NAMES,
    OCCASIONAL_APPS,
    OFFICE_WEIGHTS,
    OFFICES,
    VISITED,
    Department,
    Place,
    distance_km,
    domestic_places,
)


def stream(seed: int, purpose: int, *keys: int) -> random.Random:
    """An independent, reproducible random stream for one purpose and key (user, day, ...)."""
    value = seed * 1_000_003 + purpose
    for k in keys:
        value = value * 1_000_033 + k + 1
    return random.Random(value)


# Purposes of the random streams; never renumber (it would change every simulation).
ORG, HABITS, PLAN, CONTEXT, ACTIVITY, SCENARIO, SERVERS = range(1, 8)


@dataclass(frozen=True)
class SimUser:
    name: str
    department: str
    home_country: str
    home_city: str
    timezone: str
    workstation: str
    workstation_ip: str
    office: str
    usual_servers: tuple[str, ...]
    usual_apps: tuple[str, ...]
    file_apps: tuple[str, ...]
    work_start_hour: float     # local time
    work_hours: float
    traveller: bool
    remote_share: float        # share of workdays worked from home over VPN
    user_agent: str
    activity: float            # multiplier on the number of events per day
    weekend_share: float       # chance of a short session on a weekend day or holiday


@dataclass(frozen=True)
class Trip:
    out_day: int      # flies out in the afternoon of this day
    back_day: int     # flies home in the afternoon of this day
    place: Place
    hotel_ip: str


@dataclass
class UserPlan:
    """What happens to one user over the period, decided before any event is generated."""
    trips: list[Trip] = field(default_factory=list)
    leave: set[int] = field(default_factory=set)
    laptop_day: int | None = None     # from this day on the user works on `new_workstation`
    new_workstation: str = ""
    new_workstation_ip: str = ""
    departure_day: int | None = None  # no activity from this day on
    vpn_exits: list[tuple[Place, str]] = field(default_factory=list)  # [0] is the usual one

    def trip_on(self, day: int) -> Trip | None:
        for trip in self.trips:
            if trip.out_day <= day <= trip.back_day:
                return trip
        return None


@dataclass(frozen=True)
class Organisation:
    users: list[SimUser]
    plans: list[UserPlan]
    servers: tuple[str, ...]                 # every server in the organisation
    server_ips: dict[str, str]
    files: list[tuple[str, ...]]             # each user's working set of documents
    office_index: dict[str, int]


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _unique_names(seed: int, count: int) -> list[str]:
    rng = stream(seed, ORG, 0)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        base = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}{n}"
        seen.add(name)
        names.append(name)
    return names


def _servers(seed: int, departments: tuple[Department, ...], users: int) -> tuple[list[str], dict[str, list[str]]]:
    """Server names per prefix. Enough of them that lateral movement always finds 60+ new hosts."""
    rng = stream(seed, SERVERS, 0)
    per_prefix: dict[str, list[str]] = {}
    for dept in departments:
        for prefix in dept.servers:
            if prefix in per_prefix:
                continue
            n = max(2, min(40, users // 40 + rng.randint(1, 4)))
            per_prefix[prefix] = [f"{prefix}-{i:02d}" for i in range(1, n + 1)]
    everyone = [s for names in per_prefix.values() for s in names]
    extra = max(0, 80 - len(everyone))
    everyone += [f"srv-app-{i:03d}" for i in range(1, extra + 1)]
    return everyone, per_prefix


def build_organisation(seed: int, users: int, days: int, departments: tuple[Department, ...],
                       traveller_share: float, remote_share: float) -> Organisation:
    names = _unique_names(seed, users)
    servers, per_prefix = _servers(seed, departments, users)
    server_ips = {s: f"10.200.{i // 250}.{i % 250 + 2}" for i, s in enumerate(servers)}
    office_index = {city: i for i, city in enumerate(OFFICES)}
    dept_weights = {d.name: d.weight for d in departments}
    dept_by_name = {d.name: d for d in departments}
    ws_counter: dict[str, int] = {}

    out_users: list[SimUser] = []
    plans: list[UserPlan] = []
    files: list[tuple[str, ...]] = []
    for u, name in enumerate(names):
        rng = stream(seed, HABITS, u)
        dept = dept_by_name[_weighted(rng, dept_weights)]
        office = OFFICES[_weighted(rng, OFFICE_WEIGHTS)]
        oi = office_index[office.city]
        ws_counter[office.city] = ws_counter.get(office.city, 0) + 1
        ws_number = ws_counter[office.city]
        workstation = f"WS-{office.country}{oi:02d}-{ws_number:04d}"
        ws_ip = f"10.{oi + 1}.{ws_number // 250}.{ws_number % 250 + 2}"

        prefixes = list(dept.servers)
        usual_servers: list[str] = []
        for _ in range(rng.randint(6, 10) if dept.privileged else rng.randint(2, 5)):
            pool = per_prefix[rng.choice(prefixes)]
            usual_servers.append(rng.choice(pool))
        usual_servers = sorted(set(usual_servers))
        apps = list(COMMON_APPS) + rng.sample(dept.apps, k=max(1, len(dept.apps) - rng.randint(0, 1)))
        file_apps = tuple(a for a in dept.file_apps if a in apps or a not in COMMON_APPS)
        for a in file_apps:
            if a not in apps:
                apps.append(a)

        traveller = rng.random() < traveller_share
        user = SimUser(
            name=name, department=dept.name, home_country=office.country, home_city=office.city,
            timezone=office.tz, workstation=workstation, workstation_ip=ws_ip, office=office.city,
            usual_servers=tuple(usual_servers), usual_apps=tuple(apps), file_apps=file_apps,
            work_start_hour=round(rng.triangular(6.5, 10.5, 8.5), 2), work_hours=round(rng.uniform(7.5, 9.5), 2),
            traveller=traveller,
            remote_share=min(0.9, max(0.0, rng.betavariate(1.5, 4.0) * remote_share / 0.27)),
            user_agent=rng.choice(BROWSER_AGENTS), activity=rng.lognormvariate(0.0, 0.3),
            weekend_share=rng.choice((0.02, 0.05, 0.1, 0.25)),
        )
        out_users.append(user)
        plans.append(_plan(seed, u, user, days, ws_counter))
        files.append(_working_set(rng, dept))
    return Organisation(out_users, plans, tuple(servers), server_ips, files, office_index)


def _working_set(rng: random.Random, dept: Department) -> tuple[str, ...]:
    exts = [e for e, _ in FILE_EXTENSIONS]
    weights = [w for _, w in FILE_EXTENSIONS]
    project = rng.choice(FILE_WORDS)
    return tuple(
        f"/{dept.name}/{project}/{rng.choice(FILE_WORDS)}-{rng.choice(FILE_WORDS)}-{rng.randint(1, 99)}."
        f"{rng.choices(exts, weights)[0]}"
        for _ in range(rng.randint(20, 60))
    )


def _plan(seed: int, u: int, user: SimUser, days: int, ws_counter: dict[str, int]) -> UserPlan:
    rng = stream(seed, PLAN, u)
    plan = UserPlan()
    home = OFFICES[user.office]
    domestic = domestic_places(user.home_country)
    # The usual exit is in the home city, so an evening check-in after a day at the office is
    # no journey at all; other exits in the country appear on whole remote days only.
    plan.vpn_exits.append((home, home.ip(rng.randint(2000, 60000))))
    for place in domestic:
        plan.vpn_exits.append((place, place.ip(rng.randint(2000, 60000))))
    plan.leave = {d for d in range(-1, days + 1) if rng.random() < 0.03}
    if rng.random() < min(0.5, 0.002 * days):  # a new laptop every few years
        plan.laptop_day = rng.randrange(0, days)
        ws_counter[user.office] += 1
        n = ws_counter[user.office]
        plan.new_workstation = f"WS-{user.home_country}{list(OFFICES).index(user.office):02d}-{n:04d}"
        plan.new_workstation_ip = f"10.{list(OFFICES).index(user.office) + 1}.{n // 250}.{n % 250 + 2}"
    if user.traveller:
        destinations = [p for p in list(OFFICES.values()) + list(VISITED.values())
                        if distance_km(p, home) > 300]
        day = rng.randint(0, 8)
        while day < days:
            length = rng.randint(2, 5)
            place = rng.choice(destinations)
            plan.trips.append(Trip(day, day + length, place, place.ip(rng.randint(2000, 60000))))
            day += length + rng.randint(6, 16)
    return plan


def flight_us(a: Place, b: Place) -> int:
    """Gate-to-gate time of a flight between two places, in microseconds."""
    hours = distance_km(a, b) / AIRLINER_KMH + 0.75
    return int(hours * 3600 * 1_000_000)


def random_host_name(rng: random.Random) -> str:
    """A machine name in the Windows default style, never one of the organisation's names."""
    return "DESKTOP-" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=7))


def occasional_apps(user: SimUser) -> list[str]:
    return [a for a in OCCASIONAL_APPS if a not in user.usual_apps]
