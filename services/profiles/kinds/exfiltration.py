"""Data exfiltration: upload volume to an application the user (and the peers or the
whole organisation) never used, or far above the user's usual daily volume."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from services.profiles.kinds.base import HistoryNeeds, ProfileDetector, human_bytes, human_duration
from services.profiles.kinds.params import Param, choice, positive_int, positive_number
from services.profiles.records import EventRecord
from services.profiles.windows import BurstWindows, Entry
from ueba.store.anomalies import AnomalyRecord

DAY = 86400.0
PRUNE_EVERY = 100_000
MAX_EVIDENCE_EVENTS = 50


class DataExfiltrationProfile(ProfileDetector):
    kind = "data_exfiltration"
    default_dimension = "data"
    title = "Data exfiltration"
    parameters = (
        Param("min_bytes", positive_int, 100 * 1024 * 1024, "upload volume to one application within the interval below which nothing is raised"),
        Param("interval_seconds", positive_int, 86400, "length of the sliding window"),
        Param("baseline_days", positive_int, 30, "days of history that define 'never used' and 'usual'"),
        Param("multiplier", positive_number, 10.0, "volume above this many times the user's usual daily upload volume is far above the usual"),
        Param("novelty_scope", choice("user", "peers", "organisation"), "peers",
              "who must never have used the application: the user, also the user's department, or nobody at all"),
        Param("min_history_days", positive_int, 7, "users seen for less than this are still learning and raise nothing"),
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.min_bytes = p["min_bytes"]
        self.interval = float(p["interval_seconds"])
        self.baseline = p["baseline_days"] * DAY
        self.multiplier = p["multiplier"]
        self.scope = p["novelty_scope"]
        self.min_history = p["min_history_days"] * DAY
        self._user_first: dict[str, float] = {}
        self._department: dict[str, str] = {}
        self._app_users: dict[str, dict[str, list[float]]] = {}  # app -> user -> [first, last]
        self._daily: dict[str, dict[int, int]] = {}  # user -> day number -> uploaded bytes
        self._windows = BurstWindows(self.interval)
        self._count = 0
        self._newest = float("-inf")

    def fired_windows(self, group: str) -> BurstWindows:
        return self._windows

    @classmethod
    def lookback_seconds(cls, params: dict[str, Any]) -> float:
        return float(params["interval_seconds"])

    @classmethod
    def history_needs(cls, params: dict[str, Any]) -> HistoryNeeds:
        return HistoryNeeds(seen_entities=("application",), days=params["baseline_days"], daily_uploads=True)

    def accepts(self, e: EventRecord) -> bool:
        return bool(e.application) and super().accepts(e)

    # --- history ------------------------------------------------------------
    def seed_users(self, rows: Iterable[tuple[str, str | None, datetime]]) -> None:
        for user, department, first in rows:
            ts = first.timestamp()
            if ts < self._user_first.get(user, float("inf")):
                self._user_first[user] = ts
            if department:
                self._department[user] = department

    def seed_entities(self, rows: Iterable[tuple[str, str, str, datetime, datetime]]) -> None:
        for user, entity_type, entity, first, last in rows:
            if entity_type == "application":
                self._use(user, entity, first.timestamp())
                self._use(user, entity, last.timestamp())

    def seed_daily_uploads(self, rows: Iterable[tuple[str, datetime, int]]) -> None:
        for user, day, volume in rows:
            days = self._daily.setdefault(user, {})
            n = int(day.timestamp() // DAY)
            days[n] = days.get(n, 0) + int(volume)

    # --- evaluation -----------------------------------------------------------
    def _use(self, user: str, app: str, ts: float) -> None:
        users = self._app_users.setdefault(app.lower(), {})
        span = users.get(user)
        if span is None:
            users[user] = [ts, ts]
        else:
            span[0] = min(span[0], ts)
            span[1] = max(span[1], ts)

    def _novel(self, user: str, app: str, since: float) -> tuple[bool, int]:
        """Whether nobody in scope used `app` before `since`; and how many other users did."""
        users = self._app_users.get(app, {})
        before = {u for u, (first, last) in users.items() if first < since and last >= since - self.baseline}
        others = len(before - {user})
        if user in before:
            return False, others
        if self.scope == "user":
            return True, others
        if self.scope == "organisation":
            return not before, others
        department = self._department.get(user)
        peers = {u for u in before if department and self._department.get(u) == department}
        return not peers, others

    def _usual(self, user: str, since: float) -> float:
        """Mean daily upload volume on the user's upload days of the baseline before `since`."""
        last_day = int(since // DAY)
        first_day = int((since - self.baseline) // DAY)
        volumes = [v for d, v in self._daily.get(user, {}).items() if first_day <= d < last_day and v > 0]
        return sum(volumes) / len(volumes) if volumes else 0.0

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        user, ts = e.user, e.ts
        self._count += 1
        if ts > self._newest:
            self._newest = ts
        if self._count % PRUNE_EVERY == 0:
            self._prune()
        first = self._user_first.get(user)
        if first is None or ts < first:
            first = self._user_first[user] = ts
        if e.department:
            self._department[user] = e.department
        app = e.application.lower()
        # _use, inlined: every event with an application comes here.
        users = self._app_users.get(app)
        if users is None:
            users = self._app_users[app] = {}
        span = users.get(user)
        if span is None:
            users[user] = [ts, ts]
        elif ts > span[1]:
            span[1] = ts
        elif ts < span[0]:
            span[0] = ts
        if e.event_type != "file_upload" or e.bytes <= 0 or e.outcome == "failure":
            return []
        day = int(e.ts // DAY)
        daily = self._daily.setdefault(e.user, {})
        daily[day] = daily.get(day, 0) + e.bytes
        if e.ts - first < self.min_history:
            return []
        found: dict[str, Any] = {}

        def reached(window) -> bool:
            volume = sum(x.weight for x in window)
            if volume < self.min_bytes:
                return False  # the common case: decided without looking at history
            since = window[0].ts
            # Opening the application just before the uploads is part of the same act.
            novel, others = self._novel(e.user, app, since - self.interval)
            usual = self._usual(e.user, since)
            found.update(novel=novel, others=others, usual=usual)
            return novel or volume > self.multiplier * usual

        burst = self._windows.add(f"user:{e.user}:{app}", Entry(e.ts, e.event_id, weight=e.bytes), reached)
        if not burst:
            return []
        novel, others, usual = found["novel"], found["others"], found["usual"]
        entries = burst.entries
        volume = int(sum(x.weight for x in entries))
        if novel:
            who = {"user": "the user", "peers": "the user or the department", "organisation": "anyone in the organisation"}[self.scope]
            why = f"an application {who} had not used in {self.params['baseline_days']} days"
        else:
            why = f"{volume / usual:,.0f} times the usual daily volume of {human_bytes(usual)}" if usual else "with no uploads before"
        return [self.fire(
            user=e.user, group=burst.group, at=entries[-1].ts, start=burst.start, end=burst.end,
            description=f"{e.user} uploaded {human_bytes(volume)} to {e.application} within "
            f"{human_duration(self.interval)}: {why}",
            evidence={
                "event_ids": [x.item for x in entries[:MAX_EVIDENCE_EVENTS]],
                "application": e.application,
                "bytes": volume,
                "min_bytes": self.min_bytes,
                "novel_application": novel,
                "novelty_scope": self.scope,
                "other_users_of_application": others,
                "usual_daily_bytes": round(usual),
                "multiplier": self.multiplier,
                "interval_seconds": int(self.interval),
            },
        )]

    def retained(self) -> int:
        return (super().retained() + sum(len(u) for u in self._app_users.values())
                + sum(len(d) for d in self._daily.values()))

    def _prune(self) -> None:
        cutoff = self._newest - self.baseline - self.interval
        for app, users in list(self._app_users.items()):
            for user in [u for u, span in users.items() if span[1] < cutoff]:
                del users[user]
            if not users:
                del self._app_users[app]
        day_cutoff = int(cutoff // DAY)
        for user, days in self._daily.items():
            for d in [d for d in days if d < day_cutoff]:
                del days[d]
