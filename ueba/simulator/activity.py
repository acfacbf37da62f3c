"""Normal activity: one user's events for one local day, with its regularities and its noise.

Events are built as plain tuples (see records.py) and only turned into protobuf messages when
they are yielded: tuples are cheap to create, sort and drop.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from dataclasses import dataclass

from ueba.simulator.context import HOUR, MINUTE, SECOND, ContextBook, DayContext
from ueba.simulator.org import ACTIVITY, Organisation, occasional_apps, stream
from ueba.simulator.records import (
    ACCOUNT_CHANGE,
    APP_ACCESS,
    FAILURE,
    FILE_DELETE,
    FILE_DOWNLOAD,
    FILE_SHARE,
    FILE_UPLOAD,
    HOST_ACCESS,
    LOGOFF,
    LOGON,
    PASSWORD_CHANGE,
    PRIVILEGE_USE,
    SUCCESS,
    Record,
)
from ueba.simulator.world import APP_PRODUCER, FILE_ACTIONS, FILE_EXTENSIONS, FILE_WORDS, geo_of

LINUX_PREFIXES = frozenset({"git", "build", "ci", "k8s-node", "artifact", "db-dev", "backup", "kb", "cms"})
BAD_PASSWORD = "0xC000006A: bad password"
DOMAIN_CONTROLLER = "dc-01"


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def file_size(rng: random.Random, mu: float, sigma: float) -> int:
    """Lognormal body with a Pareto tail: most files are small, a few are huge."""
    if rng.random() < 0.01:
        return min(1_500_000_000, int(5_000_000 * rng.paretovariate(1.1)))
    return max(200, int(math.exp(mu + sigma * rng.gauss())))


# 100 extensions in proportion to their weights: one random() picks one (choices() is slow for k=1)
_EXTENSIONS = tuple(e for e, w in FILE_EXTENSIONS for _ in range(round(w * 100)))


def new_file_name(rng: random.Random, department: str) -> str:
    rnd = rng.random
    ext = _EXTENSIONS[int(rnd() * len(_EXTENSIONS))]
    word = FILE_WORDS[int(rnd() * len(FILE_WORDS))]
    return f"/{department}/shared/{word}-{int(rnd() * 9900) + 100}.{ext}"


@dataclass(frozen=True)
class Habits:
    """A user's precomputed choices with Zipf-like weights: some apps and servers dominate."""
    apps: tuple[str, ...]
    app_cw: tuple[float, ...]
    servers: tuple[tuple[str, str, str, str, int], ...]  # name, ip, producer, action, logon type
    server_cw: tuple[float, ...]
    file_apps: tuple[tuple[str, str, tuple[str, str, str, str]], ...]  # app, producer, actions
    file_cw: tuple[float, ...]
    rare_apps: tuple[str, ...]


def _cumulative(n: int, exponent: float) -> tuple[float, ...]:
    return tuple(itertools.accumulate(1.0 / (i + 1) ** exponent for i in range(n)))


def build_habits(org: Organisation, seed: int, u: int) -> Habits:
    user = org.users[u]
    rng = stream(seed, ACTIVITY, u, 0)
    apps = list(user.usual_apps)
    rng.shuffle(apps)
    servers = []
    for name in user.usual_servers:
        prefix = name.rsplit("-", 1)[0]
        if prefix in LINUX_PREFIXES:
            servers.append((name, org.server_ips[name], "sshd", "Accepted publickey", 0))
        else:
            servers.append((name, org.server_ips[name], "winevent", "4624", 3))
    rng.shuffle(servers)
    files = [(a, APP_PRODUCER.get(a, "proxy"), FILE_ACTIONS[APP_PRODUCER.get(a, "proxy")]) for a in user.file_apps]
    return Habits(tuple(apps), _cumulative(len(apps), 0.9), tuple(servers), _cumulative(len(servers), 0.8),
                  tuple(files), _cumulative(len(files), 1.5), tuple(occasional_apps(user)))


class ActivityWriter:
    """Appends one user's normal events of one local day to a list."""

    def __init__(self, org: Organisation, book: ContextBook, seed: int, typo_rate: float,
                 file_intensity: dict[str, float]):
        self.org = org
        self.file_intensity = file_intensity
        self.book = book
        self.seed = seed
        self.typo_rate = typo_rate
        self.habits: dict[int, Habits] = {}

    def _habits(self, u: int) -> Habits:
        h = self.habits.get(u)
        if h is None:
            h = self.habits[u] = build_habits(self.org, self.seed, u)
        return h

    def day(self, u: int, day: int, out: list[Record], window: tuple[int, int] | None = None) -> None:
        ctx = self.book.context(u, day)
        if ctx.kind in ("departed", "leave"):
            return
        if window is not None and (ctx.midnight >= window[1] or (
                ctx.midnight + 24 * HOUR <= window[0] and ctx.kind != "travel_out")):
            return  # a local day wholly outside the simulated period
        rng = stream(self.seed, ACTIVITY, u, day + 2)
        user = self.org.users[u]
        scale = user.activity * rng.lognormvariate(0.0, 0.25)
        geo = geo_of(ctx.place)
        if ctx.kind == "work":
            start = max(ctx.work_start, ctx.not_before)
            self.session(rng, u, out, start, ctx.work_end, geo, ctx, ctx.public_ip, scale, full=True)
            if rng.random() < 0.12:
                self._evening(rng, u, out, ctx, geo)
        elif ctx.kind == "off":
            if rng.random() < user.weekend_share:
                start = max(ctx.midnight + int(rng.uniform(9.5, 19.0) * HOUR), ctx.not_before)
                self.session(rng, u, out, start, start + int(rng.uniform(0.3, 2.5) * HOUR), geo, ctx, ctx.public_ip,
                             scale * 0.25, full=False)
        else:
            self._travel_day(rng, u, out, ctx, geo, scale)

    def _evening(self, rng: random.Random, u: int, out: list[Record], ctx: DayContext, geo) -> None:
        """A look at mail after dinner, from home (or the hotel)."""
        start = max(ctx.work_end + int(rng.uniform(1.0, 3.5) * HOUR), ctx.not_before)
        if start > ctx.midnight + 23 * HOUR:
            return
        public_ip = ctx.public_ip if ctx.remote else self.org.plans[u].vpn_exits[0][1]
        if not ctx.remote and ctx.place.city != self.org.users[u].office:
            public_ip = ctx.public_ip  # at a visited office: the evening is spent in the same city
        evening = dataclasses.replace(ctx, remote=True, public_ip=public_ip,
                                      internal_ip=f"10.250.{u // 250 % 250}.{u % 250 + 2}")
        self.session(rng, u, out, start, start + int(rng.uniform(5, 40) * MINUTE), geo, evening, public_ip, 0.08,
                     full=False)

    def _travel_day(self, rng: random.Random, u: int, out: list[Record], ctx: DayContext, geo, scale: float) -> None:
        assert ctx.flight is not None
        depart, arrive, dest, dest_ip = ctx.flight
        if ctx.workday:
            start = max(ctx.work_start, ctx.not_before)
            end = depart - int(rng.uniform(1.5, 2.5) * HOUR)
            if end > start + 30 * MINUTE:
                self.session(rng, u, out, start, end, geo, ctx, ctx.public_ip, scale * (end - start) / (8 * HOUR),
                             full=True)
        # landed: a check of mail from the hotel or from home
        start = arrive + int(rng.uniform(1.0, 2.0) * HOUR)
        dest_ctx = DayContext(ctx.kind, dest, True, ctx.midnight, dest_ip, f"10.250.{u // 250 % 250}.{u % 250 + 2}",
                              ctx.host, start, start, 0)
        self.session(rng, u, out, start, start + int(rng.uniform(10, 50) * MINUTE), geo_of(dest), dest_ctx, dest_ip,
                     0.1, full=False)

    def sign_in(self, rng: random.Random, u: int, out: list[Record], t: int, geo, ctx: DayContext, public_ip: str,
                failures: int | None = None) -> None:
        """Logon to the workstation (or VPN) and to single sign-on, with the odd mistyped password."""
        ua = self.org.users[u].user_agent
        host = ctx.host
        if failures is None:
            failures = 0
            if rng.random() < self.typo_rate:
                failures = rng.choices((1, 2, 3), (0.7, 0.22, 0.08))[0]
        if ctx.remote:
            ip, dhost, app, producer, ok, bad, ltype = public_ip, "vpn-gw-01", "vpn", "vpn", "session-start", \
                "auth-failed", 0
        else:
            ip, dhost, app, producer, ok, bad, ltype = ctx.internal_ip, host, "windows", "winevent", "4624", "4625", 2
        t0 = t - failures * int(rng.uniform(6, 20) * SECOND)
        for i in range(failures):
            out.append((t0 + i * int(rng.uniform(5, 18) * SECOND), u, LOGON, FAILURE, ip, host, dhost, "",
                        app, geo, 0, 0, "", "", bad, producer, ltype, BAD_PASSWORD))
        out.append((t, u, LOGON, SUCCESS, ip, host, dhost, "", app, geo, 0, 0, "", "", ok, producer, ltype,
                    ""))
        out.append((t + int(rng.uniform(20, 300) * SECOND), u, LOGON, SUCCESS, public_ip, host, "", "",
                    "okta", geo, 0, 0, "", ua, "user.session.start", "okta", 0, ""))

    def session(self, rng: random.Random, u: int, out: list[Record], t0: int, t1: int, geo, ctx: DayContext,
                public_ip: str, scale: float, full: bool) -> None:
        if t1 - t0 < 5 * MINUTE:
            return
        user = self.org.users[u]
        habits = self._habits(u)
        rnd = rng.random
        ua = user.user_agent
        host = ctx.host
        internal = ctx.internal_ip
        self.sign_in(rng, u, out, t0, geo, ctx, public_ip)
        a = t0 + 6 * MINUTE
        span = max(MINUTE, t1 - a - 2 * MINUTE)

        for app in rng.choices(habits.apps, cum_weights=habits.app_cw, k=poisson(rng, 30 * scale) + 1):
            out.append((a + int(rnd() * span), u, APP_ACCESS, SUCCESS, public_ip, host, "", "", app, geo,
                        0, 0, "", ua, "user.authentication.sso", "okta", 0, ""))
        if rnd() < (0.03 if full else 0.01) and habits.rare_apps:
            app = rng.choice(habits.rare_apps)
            for _ in range(rng.randint(1, 3)):
                out.append((a + int(rnd() * span), u, APP_ACCESS, SUCCESS, public_ip, host, "", "", app,
                            geo, 0, 0, "", ua, "user.authentication.sso", "okta", 0, ""))

        dept = user.department
        intensity = scale * self.file_intensity.get(dept, 1.0)
        files = self.org.files[u]
        nfiles = len(files)
        for etype, lam, mu, sigma, which in _FILE_OPS:
            n = poisson(rng, lam * intensity)
            if not n:
                continue
            for app, producer, actions in rng.choices(habits.file_apps, cum_weights=habits.file_cw, k=n):
                obj = files[int(rnd() * nfiles)] if rnd() < 0.85 else new_file_name(rng, dept)
                size, count = (file_size(rng, mu, sigma), 1) if mu else (0, 1)
                if etype == FILE_DOWNLOAD and rnd() < 0.03:  # a folder fetched as one archive
                    count = rng.randint(2, 25)
                    size *= count
                out.append((a + int(rnd() * span), u, etype, SUCCESS, public_ip, host, "", "", app, geo,
                            size, count, obj, ua, actions[which], producer, 0, ""))
        if not full:
            return

        privileged = user.department == "it"
        for name, ip, producer, action, ltype in rng.choices(
                habits.servers, cum_weights=habits.server_cw, k=poisson(rng, 12 * scale * (2 if privileged else 1))):
            ok = rnd() > 0.01
            out.append((a + int(rnd() * span), u, HOST_ACCESS, SUCCESS if ok else FAILURE, internal, host,
                        name, ip, "", geo, 0, 0, "", "", action if ok else ("4625" if ltype else "Failed publickey"),
                        producer, ltype, "" if ok else "access denied"))
        if privileged:
            for name, ip, *_ in rng.choices(habits.servers, cum_weights=habits.server_cw, k=poisson(rng, 6 * scale)):
                out.append((a + int(rnd() * span), u, PRIVILEGE_USE, SUCCESS, internal, host, name, ip, "",
                            geo, 0, 0, "SeDebugPrivilege", "", "4672", "winevent", 0, ""))
        if user.department in ("it", "hr"):
            users = self.org.users
            for _ in range(poisson(rng, 1.5 * scale)):
                other = users[int(rnd() * len(users))].name
                out.append((a + int(rnd() * span), u, ACCOUNT_CHANGE, SUCCESS, internal, host,
                            DOMAIN_CONTROLLER, "", "", geo, 0, 0, other, "", "4738", "winevent", 0, ""))
        for _ in range(poisson(rng, 2.0)):  # unlocking the screen after breaks
            out.append((a + int(rnd() * span), u, LOGON, SUCCESS, internal, host, host, "", "windows", geo,
                        0, 0, "", "", "4624", "winevent", 7, ""))
        if rnd() < 1 / 60:
            out.append((a + int(rnd() * span), u, PASSWORD_CHANGE, SUCCESS, internal, host,
                        DOMAIN_CONTROLLER, "", "", geo, 0, 0, user.name, "", "4723", "winevent", 0, ""))
        if ctx.remote:
            out.append((t1, u, LOGOFF, SUCCESS, public_ip, host, "vpn-gw-01", "", "vpn", geo, 0, 0, "", "",
                        "session-end", "vpn", 0, ""))
        else:
            out.append((t1, u, LOGOFF, SUCCESS, internal, host, host, "", "windows", geo, 0, 0, "", "",
                        "4634", "winevent", 2, ""))


# (event type, events per day at scale 1, lognormal mu and sigma of the size (0: no size), action index)
_FILE_OPS = (
    (FILE_DOWNLOAD, 20.0, 12.2, 1.7, 0),
    (FILE_UPLOAD, 6.0, 11.8, 1.6, 1),
    (FILE_SHARE, 1.5, 0.0, 0.0, 3),
    (FILE_DELETE, 2.5, 0.0, 0.0, 2),
)
