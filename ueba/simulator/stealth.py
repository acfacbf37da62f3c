"""Quieter attacks: spread over hours or hidden in ordinary-looking protocols, so that per-hour
counts and loud-volume detectors do not see them at once."""

from __future__ import annotations

import random

from ueba.simulator.context import HOUR, MINUTE, SECOND, DayContext
from ueba.simulator.records import APP_ACCESS, FAILURE, HOST_ACCESS, LOGON, SUCCESS, Record
from ueba.simulator.scenarios import Injected, ScenarioBuilder
from ueba.simulator.world import ATTACK_AGENTS, ATTACK_PLACES

# Service accounts a Kerberoasting user asks tickets for (4769 with a user account as the service).
SERVICE_ACCOUNTS: tuple[str, ...] = ("svc_sql", "svc_backup", "svc_web", "svc_sharepoint", "svc_reporting")
SHARES: tuple[str, ...] = ("IPC$", "C$", "ADMIN$", "SYSVOL", "NETLOGON", "finance", "hr", "backup", "scans",
                           "projects", "users", "it$")


class StealthScenarios(ScenarioBuilder):

    def slow_password_spray(self, rng: random.Random, day: int, candidates: list[int]) -> Injected | None:
        """One address tries each of 10-30 accounts once, an attempt every 8-40 minutes: 4-12 hours
        in all, so no hour holds more than a few failures."""
        active = [u for u in candidates if self.book.context(u, day).kind != "departed"]
        if len(active) < 10:
            return None
        targets = rng.sample(active, k=min(len(active), rng.randint(10, 30)))
        place = rng.choice(list(ATTACK_PLACES.values()))
        ip = place.ip(rng.randint(1000, 60000))
        ua = rng.choice(ATTACK_AGENTS)
        t = self.book.midnight_utc(day) + int(rng.uniform(0.0, 12.0) * HOUR)
        records: list[Record] = []
        for v in targets:
            t += int(rng.uniform(8, 40) * MINUTE)
            records.append(self._rec(t, v, LOGON, FAILURE, ip, "", "", "", "okta", place, ua=ua,
                                     action="user.session.start", producer="okta", reason="INVALID_CREDENTIALS"))
        cracked = rng.choice(targets) if rng.random() < 0.25 else None
        if cracked is not None:
            t += int(rng.uniform(8, 40) * MINUTE)
            records.append(self._rec(t, cracked, LOGON, SUCCESS, ip, "", "", "", "okta", place, ua=ua,
                                     action="user.session.start", producer="okta"))
            for app in rng.sample(self.org.users[cracked].usual_apps, k=min(2, len(self.org.users[cracked].usual_apps))):
                t += int(rng.uniform(20, 240) * SECOND)
                records.append(self._app(t, cracked, ip, place, ua, app))
        hours = (records[-1][0] - records[0][0]) / HOUR
        text = (f"slow password spray from {ip} ({place.city}, {place.country}): {len(targets)} accounts, "
                f"one attempt each over {hours:.1f} h")
        labels = [self._label("slow_password_spray", v, records,
                              text + ("; this account's password worked" if v == cracked else ""), ip,
                              accounts=len(targets), hours=round(hours, 1), succeeded=v == cracked,
                              country=place.country)
                  for v in targets]
        return Injected(records, labels)

    def ticket_lateral_movement(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """Kerberos service tickets (4769) for 8-25 hosts the user never used, over 1.5-4 hours,
        a network logon to some of them, and tickets for a few service accounts (Kerberoasting)."""
        if not ctx.stable:
            return None
        user = self.org.users[u]
        usual = set(user.usual_servers)
        pool = [(s, self.org.server_ips[s]) for s in self.org.servers if s not in usual]
        pool += [(v.workstation.lower(), v.workstation_ip) for i, v in enumerate(self.org.users) if i != u]
        k = rng.randint(8, 25)
        if len(pool) < k:
            return None
        t = self._during_work(rng, ctx, 4.5)
        step = rng.uniform(1.5, 4.0) * HOUR / k
        records: list[Record] = []
        for name, ip in rng.sample(pool, k):
            t += int(rng.uniform(0.5, 1.5) * step)
            # 4769 names the client by address; the host is what a SIEM resolves it to
            records.append(self._rec(t, u, HOST_ACCESS, SUCCESS, ctx.internal_ip, ctx.host, name, ip, "", ctx.place,
                                     action="4769", producer="winevent"))
            if rng.random() < 0.3:
                records.append(self._rec(t + int(rng.uniform(5, 60) * SECOND), u, HOST_ACCESS, SUCCESS,
                                         ctx.internal_ip, ctx.host, name, ip, "", ctx.place, action="4624",
                                         producer="winevent", ltype=3))
        for account in rng.sample(SERVICE_ACCOUNTS, k=rng.randint(1, 3)):
            t += int(rng.uniform(1, 10) * MINUTE)
            records.append(self._rec(t, u, APP_ACCESS, SUCCESS, ctx.internal_ip, ctx.host, "", "", account, ctx.place,
                                     action="4769", producer="winevent"))
        span = (records[-1][0] - records[0][0]) / HOUR
        text = f"service tickets for {k} never-used hosts from {ctx.internal_ip} over {span:.1f} h"
        return Injected(records, [self._label("ticket_lateral_movement", u, records, text, ctx.internal_ip,
                                              hosts=k)])

    def share_enumeration(self, rng: random.Random, u: int, day: int, ctx: DayContext) -> Injected | None:
        """The shares of 15-40 servers listed within minutes, many refused."""
        if not ctx.stable:
            return None
        servers = list(self.org.servers)
        k = min(len(servers), rng.randint(15, 40))
        t = self._during_work(rng, ctx, 1.0)
        step = rng.uniform(5, 20) * MINUTE / k
        records: list[Record] = []
        for name in rng.sample(servers, k):
            ip = self.org.server_ips[name]
            for share in rng.sample(SHARES, k=rng.randint(2, 5)):
                t += int(rng.uniform(0.2, 1.8) * step / 3)
                refused = share.endswith("$") and share != "IPC$" and rng.random() < 0.7 or rng.random() < 0.15
                records.append(self._rec(t, u, HOST_ACCESS, FAILURE if refused else SUCCESS, ctx.internal_ip,
                                         ctx.host, name, ip, "", ctx.place, obj=f"\\\\{name}\\{share}",
                                         action="5145" if refused else "5140", producer="winevent", ltype=3,
                                         reason="access denied" if refused else ""))
        span = (records[-1][0] - records[0][0]) / MINUTE
        refused = sum(1 for r in records if r[3] == FAILURE)
        text = f"{len(records)} shares on {k} servers listed from {ctx.host} in {span:.0f} minutes, {refused} refused"
        return Injected(records, [self._label("share_enumeration", u, records, text, ctx.internal_ip, servers=k,
                                              shares=len(records), refused=refused)])
