"""Benign look-alikes: ordinary events of working life that resemble attacks. Labelled benign, so
an evaluation counts their user-days as clean ones that are hard to leave alone."""

from __future__ import annotations

import random

from ueba.simulator.context import HOUR, MINUTE, SECOND, DayContext
from ueba.simulator.records import (
    FAILURE,
    FILE_DOWNLOAD,
    HOST_ACCESS,
    LOGOFF,
    LOGON,
    PASSWORD_CHANGE,
    PRIVILEGE_USE,
    SUCCESS,
    Record,
)
from ueba.simulator.scenarios import Injected, ScenarioBuilder
from ueba.simulator.world import APP_PRODUCER, FILE_ACTIONS, OFFICES

ON_CALL_DEPARTMENTS = frozenset({"it", "engineering"})


class LookalikeScenarios(ScenarioBuilder):

    def _vpn_ip(self, u: int) -> str:
        return f"10.250.{u // 250 % 250}.{u % 250 + 2}"

    def _downloads(self, rng: random.Random, u: int, ctx: DayContext, t: int, n: int, minutes: float,
                   total_bytes: float, app: str) -> list[Record]:
        """A sync of the user's own files: many downloads, the names from their working set."""
        producer = APP_PRODUCER.get(app, "proxy")
        files = self.org.files[u]
        raw = [rng.lognormvariate(0.0, 1.2) for _ in range(n)]
        factor = total_bytes / sum(raw)
        step = minutes * MINUTE / n
        records = []
        for x in raw:
            t += int(rng.uniform(0.3, 1.7) * step)
            records.append(self._rec(t, u, FILE_DOWNLOAD, SUCCESS, ctx.public_ip, ctx.host, "", "", app, ctx.place,
                                     max(1000, int(x * factor)), 1, rng.choice(files), self.org.users[u].user_agent,
                                     FILE_ACTIONS[producer][0], producer))
        return records

    def return_from_leave(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """Back after 10-25 days away: a forgotten password, a forced change, a morning of catching up."""
        plan = self.org.plans[u]
        if not ctx.stable or ctx.remote or plan.trips or plan.laptop_day is not None:
            return None
        if day < 13:
            return None  # a few days of history before 10 days or more away
        away = rng.randint(10, min(25, day - 3))
        plan.leave |= set(range(max(-1, day - away), day))
        user = self.org.users[u]
        t = ctx.work_start - int(rng.uniform(2, 5) * MINUTE)
        failures = rng.randint(2, 5)
        records = [self._rec(t + i * int(rng.uniform(8, 25) * SECOND), u, LOGON, FAILURE, ctx.internal_ip, ctx.host,
                             ctx.host, "", "windows", ctx.place, action="4625", producer="winevent", ltype=2,
                             reason="0xC000006A: bad password") for i in range(failures)]
        t = records[-1][0] + int(rng.uniform(20, 60) * SECOND)
        records.append(self._rec(t, u, PASSWORD_CHANGE, SUCCESS, ctx.internal_ip, ctx.host, "dc-01", "", "",
                                 ctx.place, obj=user.name, action="4723", producer="winevent"))
        n = rng.randint(40, 150)
        records += self._downloads(rng, u, ctx, ctx.work_start + 20 * MINUTE, n, rng.uniform(60, 150),
                                   rng.uniform(0.1, 0.8) * 1e9, rng.choice(user.file_apps))
        text = f"back after {away} days of leave: {failures} mistyped passwords, a password change, {n} files caught up on"
        return Injected(records, [self._label("return_from_leave", u, records, text, days_away=away)])

    def vpn_traveller(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """On a trip, the user moves between the hotel's network and the corporate VPN, which exits at
        home: applications see the same account thousands of kilometres apart within minutes."""
        user = self.org.users[u]
        if ctx.kind != "work" or ctx.place.city == user.office or ctx.not_before:
            return None
        home, exit_ip = self.org.plans[u].vpn_exits[0]
        t = self._during_work(rng, ctx, 3.0)
        records: list[Record] = []
        switches = rng.randint(2, 4)
        for i in range(switches * 2):
            through_vpn = i % 2 == 0
            place, ip = (home, exit_ip) if through_vpn else (ctx.place, ctx.public_ip)
            if through_vpn:
                records.append(self._rec(t, u, LOGON, SUCCESS, ctx.public_ip, ctx.host, "vpn-gw-01", "", "vpn",
                                         ctx.place, action="session-start", producer="vpn"))
            for _ in range(rng.randint(3, 8)):
                t += int(rng.uniform(1, 8) * MINUTE)
                records.append(self._app(t, u, ip, place, user.user_agent, rng.choice(user.usual_apps), ctx.host))
            t += int(rng.uniform(2, 15) * MINUTE)
        text = (f"travelling in {ctx.place.city}, switching {switches} times between the hotel network and the "
                f"corporate VPN exiting in {home.city}")
        return Injected(records, [self._label("vpn_traveller", u, records, text, exit_ip, switches=switches,
                                              places=[ctx.place.city, home.city])])

    def on_call_night(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """Paged at night: from home over the VPN onto the user's own servers for half an hour or so."""
        user = self.org.users[u]
        if (user.department not in ON_CALL_DEPARTMENTS or ctx.kind not in ("work", "off") or ctx.not_before
                or ctx.place.city != user.office or not user.usual_servers):
            return None
        exit_place, exit_ip = self.org.plans[u].vpn_exits[0]
        internal = self._vpn_ip(u)
        t = ctx.midnight + int(rng.uniform(0.5, 4.5) * HOUR)
        records = [self._rec(t, u, LOGON, SUCCESS, exit_ip, ctx.host, "vpn-gw-01", "", "vpn", exit_place,
                             action="session-start", producer="vpn"),
                   self._sso(t + int(rng.uniform(20, 90) * SECOND), u, exit_ip, exit_place, user.user_agent, ctx.host)]
        t = records[-1][0]
        for _ in range(rng.randint(3, 10)):
            t += int(rng.uniform(1, 8) * MINUTE)
            server = rng.choice(user.usual_servers)
            ip = self.org.server_ips[server]
            records.append(self._rec(t, u, HOST_ACCESS, SUCCESS, internal, ctx.host, server, ip, "", exit_place,
                                     action="4624", producer="winevent", ltype=3))
            if user.department == "it" and rng.random() < 0.5:
                records.append(self._rec(t + SECOND, u, PRIVILEGE_USE, SUCCESS, internal, ctx.host, server, ip, "",
                                         exit_place, obj="SeDebugPrivilege", action="4672", producer="winevent"))
        t += int(rng.uniform(2, 10) * MINUTE)
        records.append(self._rec(t, u, LOGOFF, SUCCESS, exit_ip, ctx.host, "vpn-gw-01", "", "vpn", exit_place,
                                 action="session-end", producer="vpn"))
        local = (records[0][0] - ctx.midnight) / HOUR
        text = f"on call: {int(local):02d}:{int(local % 1 * 60):02d} local time, over the VPN onto usual servers"
        return Injected(records, [self._label("on_call_night", u, records, text, exit_ip)])

    def new_laptop(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """A new workstation from this day on: first sign-ins mistyped, then the file sync fetches the
        user's documents."""
        plan = self.org.plans[u]
        user = self.org.users[u]
        if not ctx.stable or ctx.remote or plan.trips or plan.laptop_day is not None:
            return None
        oi = list(OFFICES).index(user.office)
        plan.laptop_day = day
        plan.new_workstation = f"WS-{user.home_country}{oi:02d}-{5000 + u}"
        plan.new_workstation_ip = f"10.{oi + 1}.{200 + u // 250 % 40}.{u % 250 + 2}"
        ctx = self.book.context(u, day)  # the same day, now on the new machine
        t = ctx.work_start - int(rng.uniform(1, 3) * MINUTE)
        records = [self._rec(t + i * int(rng.uniform(10, 30) * SECOND), u, LOGON, FAILURE, ctx.internal_ip, ctx.host,
                             ctx.host, "", "windows", ctx.place, action="4625", producer="winevent", ltype=2,
                             reason="0xC000006A: bad password") for i in range(rng.randint(1, 3))]
        app = "onedrive" if "onedrive" in user.file_apps else user.file_apps[0]
        n = rng.randint(150, 500)
        records += self._downloads(rng, u, ctx, ctx.work_start + 10 * MINUTE, n, rng.uniform(30, 120),
                                   rng.uniform(0.5, 4.0) * 1e9, app)
        gb = sum(r[10] for r in records) / 1e9
        text = f"new laptop {ctx.host}: first sign-in mistyped, {app} synced {n} files ({gb:.1f} GB)"
        return Injected(records, [self._label("new_laptop", u, records, text, ctx.internal_ip, host=ctx.host,
                                              files=n)])
