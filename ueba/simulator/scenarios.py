"""Injected, labelled attack and insider scenarios.

Each scenario is planned before any normal event is generated: a victim and a day are drawn,
the day's context says where the victim really is, and the scenario's events are built at once
(they are few) together with their Label, whose start and end are the first and last of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ueba.simulator.context import HOUR, MINUTE, SECOND, ContextBook, DayContext
from ueba.simulator.labels import Label
from ueba.simulator.org import Organisation, random_host_name
from ueba.simulator.records import (
    APP_ACCESS,
    FAILURE,
    FILE_DELETE,
    FILE_DOWNLOAD,
    FILE_UPLOAD,
    HOST_ACCESS,
    LOGON,
    PRIVILEGE_USE,
    SUCCESS,
    Record,
)
from ueba.simulator.world import (
    APP_PRODUCER,
    ATTACK_AGENTS,
    ATTACK_PLACES,
    BROWSER_AGENTS,
    EXFIL_APPS,
    FILE_ACTIONS,
    FILE_WORDS,
    OFFICES,
    RISKY_PLACES,
    VISITED,
    Place,
    distance_km,
    domestic_places,
    geo_of,
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass
class Injected:
    records: list[Record]
    labels: list[Label]


class ScenarioBuilder:
    """Builds one scenario of each kind for a (victim, day), or None when the day does not fit."""

    def __init__(self, org: Organisation, book: ContextBook):
        self.org = org
        self.book = book

    # -- helpers -----------------------------------------------------------------------------

    def _rec(self, t: int, u: int, etype: int, outcome: int, sip: str, shost: str, dhost: str, dip: str, app: str,
             place: Place, size: int = 0, count: int = 0, obj: str = "", ua: str = "", action: str = "",
             producer: str = "", ltype: int = 0, reason: str = "") -> Record:
        return (t, u, etype, outcome, sip, shost, dhost, dip, app, geo_of(place), size, count, obj,
                ua, action, producer, ltype, reason)

    def _label(self, kind: str, u: int, records: list[Record], description: str, source: str = "",
               **details) -> Label:
        times = [r[0] for r in records if r[1] == u]
        return Label(kind, self.org.users[u].name, to_datetime(min(times)), to_datetime(max(times)), description,
                     source, details)

    def _sso(self, t: int, u: int, ip: str, place: Place, ua: str, host: str = "") -> Record:
        return self._rec(t, u, LOGON, SUCCESS, ip, host, "", "", "okta", place, ua=ua, action="user.session.start",
                         producer="okta")

    def _app(self, t: int, u: int, ip: str, place: Place, ua: str, app: str, host: str = "") -> Record:
        return self._rec(t, u, APP_ACCESS, SUCCESS, ip, host, "", "", app, place, ua=ua,
                         action="user.authentication.sso", producer="okta")

    @staticmethod
    def _during_work(rng: random.Random, ctx: DayContext, before_end: float) -> int:
        """A time inside working hours leaving `before_end` hours before the end of the day."""
        room = max(0.5, (ctx.work_end - ctx.work_start) / HOUR - before_end - 0.75)
        return ctx.work_start + int(rng.uniform(0.75, 0.75 + room) * HOUR)

    @staticmethod
    def _far_place(rng: random.Random, origin: Place, min_km: float, candidates: list[Place]) -> Place | None:
        far = [p for p in candidates if p.country != origin.country and distance_km(p, origin) >= min_km]
        return rng.choice(far) if far else None

    # -- authentication attacks ------------------------------------------------------------------

    def brute_force(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if ctx.kind == "departed":
            return None
        place = rng.choice(list(ATTACK_PLACES.values()))
        ip = place.ip(rng.randint(1000, 60000))
        variant = rng.choice(("okta", "vpn", "rdp"))
        producer, app, ok, bad, ltype, dhost, reason = {
            "okta": ("okta", "okta", "user.session.start", "user.session.start", 0, "", "INVALID_CREDENTIALS"),
            "vpn": ("vpn", "vpn", "session-start", "auth-failed", 0, "vpn-gw-01", "bad password"),
            "rdp": ("winevent", "windows", "4624", "4625", 10, "rdp-gw-01", "0xC000006A: bad password"),
        }[variant]
        host = random_host_name(rng) if variant == "rdp" else ""
        ua = rng.choice(ATTACK_AGENTS) if variant == "okta" else ""
        n = rng.randint(20, 200)
        duration = rng.uniform(1.0, 10.0) * MINUTE
        t0 = ctx.midnight + int(rng.uniform(0.0, 22.5) * HOUR)
        times = sorted(t0 + int(rng.random() * duration) for _ in range(n))
        records = [self._rec(t, u, LOGON, FAILURE, ip, host, dhost, "", app, place, ua=ua, action=bad,
                             producer=producer, ltype=ltype, reason=reason) for t in times]
        succeeded = rng.random() < 0.35
        if succeeded:
            t = times[-1] + int(rng.uniform(3, 60) * SECOND)
            records.append(self._rec(t, u, LOGON, SUCCESS, ip, host, dhost, "", app, place, ua=ua, action=ok,
                                     producer=producer, ltype=ltype))
            browser = ua or rng.choice(ATTACK_AGENTS)
            for app_name in rng.sample(self.org.users[u].usual_apps, k=min(3, len(self.org.users[u].usual_apps))):
                t += int(rng.uniform(20, 240) * SECOND)
                records.append(self._app(t, u, ip, place, browser, app_name, host))
        minutes = (times[-1] - times[0]) / MINUTE
        text = (f"{n} failed {variant} logons in {minutes:.1f} min from {ip} ({place.city}, {place.country})"
                + ("; then a successful logon" if succeeded else ""))
        return Injected(records, [self._label("brute_force", u, records, text, ip, failures=n, succeeded=succeeded,
                                              country=place.country)])

    def password_spray(self, rng: random.Random, day: int, candidates: list[int]) -> Injected | None:
        """One address tries many accounts, once or twice each; one label per account tried."""
        active = [u for u in candidates if self.book.context(u, day).kind != "departed"]
        if not active:
            return None
        targets = rng.sample(active, k=min(len(active), rng.randint(15, 40)))
        place = rng.choice(list(ATTACK_PLACES.values()))
        ip = place.ip(rng.randint(1000, 60000))
        ua = rng.choice(ATTACK_AGENTS)
        t = self.book.midnight_utc(day) + int(rng.uniform(0.0, 20.0) * HOUR)
        records: list[Record] = []
        rounds = [targets] + [[v for v in targets if rng.random() < 0.4]]
        for attempt in rounds:
            for v in attempt:
                t += int(rng.uniform(5, 90) * SECOND)
                records.append(self._rec(t, v, LOGON, FAILURE, ip, "", "", "", "okta", place, ua=ua,
                                         action="user.session.start", producer="okta",
                                         reason="INVALID_CREDENTIALS"))
        cracked = rng.choice(targets) if rng.random() < 0.3 else None
        if cracked is not None:
            t += int(rng.uniform(5, 90) * SECOND)
            records.append(self._rec(t, cracked, LOGON, SUCCESS, ip, "", "", "", "okta", place, ua=ua,
                                     action="user.session.start", producer="okta"))
        text = (f"password spray from {ip} ({place.city}, {place.country}): {len(targets)} accounts tried, "
                f"1-2 attempts each")
        labels = [self._label("password_spray", v, records, text + ("; this account's password worked"
                                                                    if v == cracked else ""),
                              ip, accounts=len(targets), succeeded=v == cracked, country=place.country)
                  for v in targets]
        return Injected(records, labels)

    def impossible_travel(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if not ctx.stable:
            return None
        far = self._far_place(rng, ctx.place, 3000.0, list(ATTACK_PLACES.values()) + list(VISITED.values())
                              + list(OFFICES.values()))
        if far is None:
            return None
        user = self.org.users[u]
        t = self._during_work(rng, ctx, 1.5)
        records = [self._sso(t, u, ctx.public_ip, ctx.place, user.user_agent, ctx.host),
                   self._app(t + int(rng.uniform(30, 200) * SECOND), u, ctx.public_ip, ctx.place, user.user_agent,
                             user.usual_apps[0], ctx.host)]
        gap = rng.uniform(8, 55) * MINUTE
        tf = t + int(gap)
        ip = far.ip(rng.randint(1000, 60000))
        ua = rng.choice(BROWSER_AGENTS)
        host = random_host_name(rng)
        records.append(self._sso(tf, u, ip, far, ua, host))
        for app in rng.sample(user.usual_apps, k=min(len(user.usual_apps), rng.randint(2, 5))):
            tf += int(rng.uniform(30, 300) * SECOND)
            records.append(self._app(tf, u, ip, far, ua, app, host))
        km = distance_km(ctx.place, far)
        text = (f"logon from {ctx.place.city} ({ctx.place.country}) then from {far.city} ({far.country}), "
                f"{km:.0f} km away, {gap / MINUTE:.0f} minutes later")
        return Injected(records, [self._label("impossible_travel", u, records, text, ip, distance_km=round(km),
                                              minutes=round(gap / MINUTE), countries=[ctx.place.country, far.country])])

    def risky_country(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if ctx.kind == "departed":
            return None
        place = rng.choice(list(RISKY_PLACES.values()))
        ip = place.ip(rng.randint(1000, 60000))
        ua = rng.choice(BROWSER_AGENTS)
        t = ctx.midnight + int(rng.uniform(0.5, 22.0) * HOUR)
        via_vpn = rng.random() < 0.4
        if via_vpn:
            records = [self._rec(t, u, LOGON, SUCCESS, ip, "", "vpn-gw-01", "", "vpn", place, action="session-start",
                                 producer="vpn")]
        else:
            records = [self._sso(t, u, ip, place, ua)]
        user = self.org.users[u]
        for app in rng.sample(user.usual_apps, k=min(len(user.usual_apps), rng.randint(1, 4))):
            t += int(rng.uniform(30, 400) * SECOND)
            records.append(self._app(t, u, ip, place, ua, app))
        text = f"successful logon from {place.city} ({place.country}), address {ip}" + (" over VPN" if via_vpn else "")
        return Injected(records, [self._label("risky_country", u, records, text, ip, country=place.country)])

    def shared_credentials(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """The owner keeps working while someone far away uses the same account for hours."""
        if not ctx.stable:
            return None
        candidates = (list(OFFICES.values()) + list(VISITED.values()) + list(ATTACK_PLACES.values())
                      + domestic_places(ctx.place.country))
        far = [p for p in candidates if distance_km(p, ctx.place) >= 800]
        if not far:
            return None
        other = rng.choice(far)
        user = self.org.users[u]
        t0 = self._during_work(rng, ctx, 3.5)
        t1 = t0 + int(rng.uniform(1.5, 3.0) * HOUR)
        ip = other.ip(rng.randint(1000, 60000))
        ua = rng.choice([a for a in BROWSER_AGENTS if a != user.user_agent])
        host = random_host_name(rng)
        records = [self._sso(t0 - int(rng.uniform(1, 10) * MINUTE), u, ctx.public_ip, ctx.place, user.user_agent,
                             ctx.host),
                   self._sso(t0, u, ip, other, ua, host)]
        for side_ip, side_place, side_ua, side_host, step in ((ctx.public_ip, ctx.place, user.user_agent, ctx.host, 6),
                                                               (ip, other, ua, host, 8)):
            t = t0
            while True:
                t += int(rng.uniform(0.4, 1.6) * step * MINUTE)
                if t > t1:
                    break
                records.append(self._app(t, u, side_ip, side_place, side_ua, rng.choice(user.usual_apps), side_host))
        km = distance_km(ctx.place, other)
        text = (f"account active from {ctx.place.city} ({ctx.place.country}) and {other.city} ({other.country}), "
                f"{km:.0f} km apart, at the same time for {(t1 - t0) / HOUR:.1f} h")
        return Injected(records, [self._label("shared_credentials", u, records, text, ip, distance_km=round(km),
                                              places=[ctx.place.city, other.city])])

    # -- hosts -----------------------------------------------------------------------------------

    def offhours_new_host(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if ctx.kind not in ("work", "off") or ctx.not_before or ctx.place.city != self.org.users[u].office:
            return None
        user = self.org.users[u]
        oi = self.org.office_index[user.office]
        host = random_host_name(rng)
        ip = f"10.{oi + 1}.{rng.randint(100, 199)}.{rng.randint(2, 250)}"
        place = ctx.place
        t = ctx.midnight + int(rng.uniform(1.5, 4.5) * HOUR)
        local = (t - ctx.midnight) / HOUR
        servers = list(user.usual_servers) or ["dc-01"]
        target = rng.choice(servers)
        records = [self._rec(t, u, LOGON, SUCCESS, ip, host, target, self.org.server_ips.get(target, ""), "windows",
                             place, action="4624", producer="winevent", ltype=10)]
        for _ in range(rng.randint(3, 12)):
            t += int(rng.uniform(1, 6) * MINUTE)
            server = rng.choice(servers)
            records.append(self._rec(t, u, HOST_ACCESS, SUCCESS, ip, host, server, self.org.server_ips.get(server, ""),
                                     "", place, action="4624", producer="winevent", ltype=3))
        text = f"logon at {int(local):02d}:{int(local % 1 * 60):02d} local time from never-seen host {host} ({ip})"
        return Injected(records, [self._label("offhours_new_host", u, records, text, ip, host=host)])

    def lateral_movement(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if not ctx.stable:
            return None
        user = self.org.users[u]
        usual = set(user.usual_servers)
        pool = [(s, self.org.server_ips[s]) for s in self.org.servers if s not in usual]
        pool += [(v.workstation, v.workstation_ip) for i, v in enumerate(self.org.users) if i != u]
        k = min(len(pool), rng.randint(20, 60))
        if k < 20:
            return None
        targets = rng.sample(pool, k)
        t = self._during_work(rng, ctx, 1.5)
        minutes = rng.uniform(20, 55)
        step = minutes * MINUTE / k
        records = []
        for name, ip in targets:
            t += int(rng.uniform(0.5, 1.5) * step)
            if rng.random() < 0.15:
                records.append(self._rec(t - 2 * SECOND, u, HOST_ACCESS, FAILURE, ctx.internal_ip, ctx.host, name, ip,
                                         "", ctx.place, action="4625", producer="winevent", ltype=3,
                                         reason="0xC000006D: logon failure"))
            records.append(self._rec(t, u, HOST_ACCESS, SUCCESS, ctx.internal_ip, ctx.host, name, ip, "", ctx.place,
                                     action="4624", producer="winevent", ltype=3))
            if rng.random() < 0.3:
                records.append(self._rec(t + SECOND, u, PRIVILEGE_USE, SUCCESS, ctx.internal_ip, ctx.host, name, ip, "",
                                         ctx.place, obj="SeDebugPrivilege", action="4672", producer="winevent"))
        span = (records[-1][0] - records[0][0]) / MINUTE
        text = f"{k} never-seen hosts accessed from {ctx.host} in {span:.0f} minutes"
        return Injected(records, [self._label("lateral_movement", u, records, text, ctx.internal_ip, hosts=k)])

    # -- data ------------------------------------------------------------------------------------

    def _bulk_files(self, rng: random.Random, u: int, n: int, total_bytes: float) -> tuple[list[str], list[int]]:
        dept = self.org.users[u].department
        project = rng.choice(FILE_WORDS)
        names = [f"/{dept}/{project}/{rng.choice(FILE_WORDS)}-{i:04d}.{rng.choice(('pdf', 'docx', 'xlsx', 'zip'))}"
                 for i in range(n)]
        raw = [rng.lognormvariate(0.0, 1.2) for _ in range(n)]
        factor = total_bytes / sum(raw)
        return names, [max(1000, int(x * factor)) for x in raw]

    def bulk_download(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if not ctx.stable:
            return None
        user = self.org.users[u]
        app = rng.choice(user.file_apps)
        producer = APP_PRODUCER.get(app, "proxy")
        n = rng.randint(200, 800)
        names, sizes = self._bulk_files(rng, u, n, rng.uniform(2.0, 12.0) * 1e9)
        t = self._during_work(rng, ctx, 1.5)
        step = rng.uniform(20, 55) * MINUTE / n
        records = []
        for name, size in zip(names, sizes):
            t += int(rng.uniform(0.3, 1.7) * step)
            records.append(self._rec(t, u, FILE_DOWNLOAD, SUCCESS, ctx.public_ip, ctx.host, "", "", app, ctx.place,
                                     size, 1, name, user.user_agent, FILE_ACTIONS[producer][0], producer))
        gb = sum(sizes) / 1e9
        span = (records[-1][0] - records[0][0]) / MINUTE
        text = f"{n} files, {gb:.1f} GB downloaded from {app} in {span:.0f} minutes"
        return Injected(records, [self._label("bulk_download", u, records, text, files=n, bytes=sum(sizes),
                                              application=app)])

    def mass_deletion(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if not ctx.stable:
            return None
        user = self.org.users[u]
        app = rng.choice(user.file_apps)
        producer = APP_PRODUCER.get(app, "proxy")
        n = rng.randint(200, 1000)
        names, _ = self._bulk_files(rng, u, n, 1.0)
        t = self._during_work(rng, ctx, 1.5)
        step = rng.uniform(15, 55) * MINUTE / n
        records = []
        for name in names:
            t += int(rng.uniform(0.3, 1.7) * step)
            records.append(self._rec(t, u, FILE_DELETE, SUCCESS, ctx.public_ip, ctx.host, "", "", app, ctx.place,
                                     0, 1, name, user.user_agent, FILE_ACTIONS[producer][2], producer))
        span = (records[-1][0] - records[0][0]) / MINUTE
        text = f"{n} files deleted from {app} in {span:.0f} minutes"
        return Injected(records, [self._label("mass_deletion", u, records, text, files=n, application=app)])

    def upload_new_app(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        if not ctx.stable:
            return None
        user = self.org.users[u]
        app = rng.choice(EXFIL_APPS)
        n = rng.randint(20, 120)
        names, sizes = self._bulk_files(rng, u, n, rng.uniform(1.0, 8.0) * 1e9)
        t = self._during_work(rng, ctx, 2.0)
        records = [self._rec(t, u, APP_ACCESS, SUCCESS, ctx.public_ip, ctx.host, "", "", app, ctx.place,
                             ua=user.user_agent, action="http_get", producer="proxy")]
        step = rng.uniform(30, 90) * MINUTE / n
        for name, size in zip(names, sizes):
            t += int(rng.uniform(0.3, 1.7) * step)
            records.append(self._rec(t, u, FILE_UPLOAD, SUCCESS, ctx.public_ip, ctx.host, "", "", app, ctx.place,
                                     size, 1, name, user.user_agent, "http_post", "proxy"))
        gb = sum(sizes) / 1e9
        text = f"{n} files, {gb:.1f} GB uploaded to {app}, an application nobody in the organisation used before"
        return Injected(records, [self._label("upload_new_app", u, records, text, files=n, bytes=sum(sizes),
                                              application=app)])
