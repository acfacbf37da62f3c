"""Where a user is and how they work on a given day: at the office, at home over VPN, on a trip,
flying, off, or gone. Both normal activity and the scenarios read the same context, so an
injected attack starts from where the user really is that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ueba.simulator.org import CONTEXT, Organisation, Trip, flight_us, stream
from ueba.simulator.world import OFFICES, Place, is_holiday, local_midnight_us

HOUR = 3_600_000_000
MINUTE = 60_000_000
SECOND = 1_000_000


@dataclass(frozen=True)
class DayContext:
    kind: str              # 'work', 'off', 'leave', 'departed', 'travel_out', 'travel_back'
    place: Place           # where the user is in the morning
    remote: bool           # working over VPN (home, hotel) rather than on an office network
    midnight: int          # local midnight at `place`, UTC microseconds
    public_ip: str         # office egress, VPN exit or hotel address SaaS applications see
    internal_ip: str       # address on the corporate network (office LAN or VPN pool)
    host: str              # the user's workstation that day
    work_start: int        # UTC microseconds
    work_end: int
    not_before: int        # nothing happens earlier (arrival after a flight), else 0
    flight: tuple[int, int, Place, str] | None = None  # departure, arrival, destination, its public address
    workday: bool = True   # a weekday that is not a holiday at `place`'s country or leave

    @property
    def stable(self) -> bool:
        """A plain working day in one place: what most scenarios need as their backdrop."""
        return self.kind == "work" and self.not_before == 0


def office_egress(place: Place) -> str:
    return place.ip(1)


def _place_network(org: Organisation, u: int, place: Place, host_ip: str) -> tuple[bool, str, str]:
    """(remote, public_ip, internal_ip) for a user working at a place away from home."""
    if place.city in OFFICES:
        oi = org.office_index[place.city]
        return False, office_egress(place), f"10.{oi + 1}.240.{u % 250 + 2}"
    return True, "", host_ip


def _flight(seed: int, user_start_hour: float, u: int, day: int, origin: Place, dest: Place, day_date: date,
            workday: bool) -> tuple[int, int]:
    rng = stream(seed, CONTEXT, u, day + 1, 99)
    midnight = local_midnight_us(origin.tz, day_date)
    if workday:
        # a short morning at work first, then to the airport
        depart = midnight + int((user_start_hour + rng.uniform(3.5, 5.5)) * HOUR)
    else:
        depart = midnight + int(rng.uniform(9.0, 16.0) * HOUR)
    return depart, depart + flight_us(origin, dest)


class ContextBook:
    """Computes DayContext for (user, day); pure and deterministic, so it is cheap to ask twice."""

    def __init__(self, org: Organisation, seed: int, first_date: date):
        self.org = org
        self.seed = seed
        self.first_date = first_date

    def date_of(self, day: int) -> date:
        return self.first_date + timedelta(days=day)

    def midnight_utc(self, day: int) -> int:
        return local_midnight_us("UTC", self.date_of(day))

    def _trip_flights(self, u: int, trip: Trip) -> tuple[tuple[int, int], tuple[int, int]]:
        user = self.org.users[u]
        home = OFFICES[user.office]
        out_date, back_date = self.date_of(trip.out_day), self.date_of(trip.back_day)
        out = _flight(self.seed, user.work_start_hour, u, trip.out_day, home, trip.place, out_date,
                      out_date.weekday() < 5 and not is_holiday(home.country, out_date))
        back = _flight(self.seed, user.work_start_hour, u, trip.back_day, trip.place, home, back_date,
                       back_date.weekday() < 5)
        return out, back

    def context(self, u: int, day: int) -> DayContext:
        org = self.org
        user = org.users[u]
        plan = org.plans[u]
        home = OFFICES[user.office]
        when = self.date_of(day)
        rng = stream(self.seed, CONTEXT, u, day + 1)
        host, host_ip = user.workstation, user.workstation_ip
        if plan.laptop_day is not None and day >= plan.laptop_day:
            host, host_ip = plan.new_workstation, plan.new_workstation_ip
        vpn_ip = f"10.250.{u // 250 % 250}.{u % 250 + 2}"
        start_jitter = rng.gauss(0.0, 0.3)
        length = user.work_hours + rng.gauss(0.0, 0.4)

        if plan.departure_day is not None and day >= plan.departure_day:
            return DayContext("departed", home, True, 0, "", "", host, 0, 0, 0, workday=False)

        trip = plan.trip_on(day)
        not_before = 0
        flight = None
        if trip is None:
            for t in plan.trips:
                if t.back_day < day <= t.back_day + 2:
                    arrival = self._trip_flights(u, t)[1][1]
                    if arrival + HOUR > local_midnight_us(home.tz, when):
                        not_before = max(not_before, arrival + HOUR)
            place = clock = home
            weekday = when.weekday() < 5 and not is_holiday(home.country, when)
            workday = weekday and day not in plan.leave
            kind = "work" if workday else ("leave" if weekday else "off")
            remote = not workday or rng.random() < user.remote_share
            if remote:
                r = rng.random()
                if r < 0.8 or not workday:
                    public_ip = plan.vpn_exits[0][1]
                elif r < 0.92:  # the VPN hands out another address in the same city
                    public_ip = home.ip(rng.randint(2000, 60000))
                else:
                    exit_place, public_ip = rng.choice(plan.vpn_exits)
                    place = exit_place
                internal_ip = vpn_ip
            else:
                public_ip, internal_ip = office_egress(home), host_ip
        else:
            (out_dep, out_arr), (back_dep, back_arr) = self._trip_flights(u, trip)
            if day == trip.out_day:
                place = clock = home
                workday = when.weekday() < 5 and not is_holiday(home.country, when)
                kind = "travel_out"
                flight = (out_dep, out_arr, trip.place, trip.hotel_ip)
                remote = not workday or rng.random() < user.remote_share
                public_ip, internal_ip = (plan.vpn_exits[0][1], vpn_ip) if remote else (office_egress(home), host_ip)
            else:
                place = clock = trip.place
                workday = when.weekday() < 5
                not_before = out_arr + HOUR if out_arr + HOUR > local_midnight_us(place.tz, when) else 0
                remote, public_ip, internal_ip = _place_network(org, u, place, vpn_ip)
                if remote:
                    public_ip = trip.hotel_ip
                if day == trip.back_day:
                    kind = "travel_back"
                    flight = (back_dep, back_arr, home, plan.vpn_exits[0][1])
                else:
                    kind = "work" if workday else "off"

        # Working hours follow the clock of where the user sleeps, not of the VPN exit.
        midnight = local_midnight_us(clock.tz, when)
        work_start = midnight + int((user.work_start_hour + start_jitter) * HOUR)
        work_end = work_start + int(length * HOUR)
        return DayContext(kind, place, remote, midnight, public_ip, internal_ip, host, work_start, work_end,
                          not_before, flight, workday)
