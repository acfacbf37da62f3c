"""Data exfiltration: uploads to an application the user (and the peers or the whole
organisation) never used, weighed by their volume and by how rare the application is in the
organisation; or upload volume far above the user's usual daily volume."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
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


@dataclass(slots=True)
class NovelUpload:
    """Uploads to a new application inside a fired window: the finding grows with them."""

    app: str
    start: float
    end: float
    others: int
    users: int
    volume: int = 0
    last: float = 0.0
    event_ids: list[str] = field(default_factory=list)


def rarity(others: int, users: int) -> float:
    """1 when nobody else in the organisation used the application, falling to 0 when everyone
    did; logarithmic, so the first few other users weigh most (one other of 200 keeps 0.87, a
    twentieth 0.55, a quarter 0.26)."""
    if users <= 1:
        return 1.0
    return max(0.0, 1.0 - math.log1p(others) / math.log1p(users))


class DataExfiltrationProfile(ProfileDetector):
    kind = "data_exfiltration"
    default_dimension = "data"
    title = "Data exfiltration"
    parameters = (
        Param("min_bytes", positive_int, 100 * 1024 * 1024,
              "upload volume to a known application within the interval below which nothing is raised; a new "
              "application's finding reaches its full weight here"),
        Param("novel_min_bytes", positive_int, 1024 * 1024,
              "upload volume to an application new to the user (in the novelty scope) that is a finding, weighted "
              "by volume (half at this, full at min_bytes) and by how few others in the organisation used it"),
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
        self.novel_min = min(p["novel_min_bytes"], self.min_bytes)
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
        self._growing: dict[str, NovelUpload] = {}  # window group -> the novel finding it holds
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
        own = users.get(user)
        if own is not None and own[0] < since and own[1] >= since - self.baseline:
            return False, len(users) - 1  # the common case: the user's own application
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
        return self._upload(e, app)

    def _upload(self, e: EventRecord, app: str) -> list[AnomalyRecord]:
        """An upload of a user past learning: the window it completes, or the finding it grows."""
        found: dict[str, Any] = {}

        def reached(window) -> bool:
            volume = sum(x.weight for x in window)
            if volume < self.novel_min:
                return False  # the common case: decided without looking at history
            since = window[0].ts
            # Opening the application just before the uploads is part of the same act.
            novel, others = self._novel(e.user, app, since - self.interval)
            found.update(novel=novel, others=others)
            if novel:
                return True
            if volume < self.min_bytes:
                return False
            usual = found["usual"] = self._usual(e.user, since)
            return volume > self.multiplier * usual

        group = f"user:{e.user}:{app}"
        burst = self._windows.add(group, Entry(e.ts, e.event_id, weight=e.bytes), reached)
        if not burst:
            return self._grow(group, e)
        if found["novel"]:
            upload = NovelUpload(e.application, burst.start, burst.end, found["others"], len(self._user_first))
            for x in burst.entries:
                self._add_upload(upload, x.ts, x.item, int(x.weight))
            if len(self._growing) >= 4096:
                self._forget_grown()
            self._growing[group] = upload
            return [self._novel_record(e.user, group, upload)]
        return [self._volume_record(e, burst, found["others"], found["usual"])]

    # --- findings -------------------------------------------------------------
    def _grow(self, group: str, e: EventRecord) -> list[AnomalyRecord]:
        """An upload inside a new application's fired window: the finding is raised again, heavier."""
        upload = self._growing.get(group)
        if upload is None or not upload.start <= e.ts < upload.end:
            return []
        self._add_upload(upload, e.ts, e.event_id, e.bytes)
        return [self._novel_record(e.user, group, upload)]

    @staticmethod
    def _add_upload(upload: NovelUpload, ts: float, event_id: str, size: int) -> None:
        upload.volume += size
        upload.last = max(upload.last, ts)
        if len(upload.event_ids) < MAX_EVIDENCE_EVENTS:
            upload.event_ids.append(event_id)

    def _novel_weight(self, upload: NovelUpload) -> tuple[float, float]:
        """(volume weight, rarity): half at novel_min_bytes rising with the log of the volume to
        one at min_bytes; and how rare the application is in the organisation."""
        if self.min_bytes > self.novel_min:
            span = math.log(self.min_bytes / self.novel_min)
            volume = 0.5 + 0.5 * min(1.0, max(0.0, math.log(upload.volume / self.novel_min) / span))
        else:
            volume = 1.0
        return volume, rarity(upload.others, upload.users)

    def _novel_record(self, user: str, group: str, upload: NovelUpload) -> AnomalyRecord:
        volume_weight, rare = self._novel_weight(upload)
        risk = max(1, round(self.spec.risk_score * volume_weight * rare))
        who = {"user": "the user", "peers": "the user or the department", "organisation": "anyone in the organisation"}[self.scope]
        used_by = f"{upload.others} of {upload.users} users" if upload.others else "nobody else"
        record = self.fire(
            user=user, group=group, at=upload.last, start=upload.start, end=upload.end, risk_score=risk,
            description=f"{user} uploaded {human_bytes(upload.volume)} to {upload.app} within "
            f"{human_duration(self.interval)}: an application {who} had not used in {self.params['baseline_days']} "
            f"days ({used_by} in the organisation did)",
            evidence={
                "event_ids": list(upload.event_ids),
                "application": upload.app,
                "bytes": upload.volume,
                "min_bytes": self.min_bytes,
                "novel_min_bytes": self.novel_min,
                "novel_application": True,
                "novelty_scope": self.scope,
                "other_users_of_application": upload.others,
                "organisation_users": upload.users,
                "volume_weight": round(volume_weight, 3),
                "rarity": round(rare, 3),
                "interval_seconds": int(self.interval),
            },
        )
        return replace(record, refresh=True)

    def _volume_record(self, e: EventRecord, burst, others: int, usual: float) -> AnomalyRecord:
        entries = burst.entries
        volume = int(sum(x.weight for x in entries))
        why = f"{volume / usual:,.0f} times the usual daily volume of {human_bytes(usual)}" if usual else "with no uploads before"
        return self.fire(
            user=e.user, group=burst.group, at=entries[-1].ts, start=burst.start, end=burst.end,
            description=f"{e.user} uploaded {human_bytes(volume)} to {e.application} within "
            f"{human_duration(self.interval)}: {why}",
            evidence={
                "event_ids": [x.item for x in entries[:MAX_EVIDENCE_EVENTS]],
                "application": e.application,
                "bytes": volume,
                "min_bytes": self.min_bytes,
                "novel_application": False,
                "novelty_scope": self.scope,
                "other_users_of_application": others,
                "usual_daily_bytes": round(usual),
                "multiplier": self.multiplier,
                "interval_seconds": int(self.interval),
            },
        )

    def _forget_grown(self) -> None:
        for group in [g for g, u in self._growing.items() if u.end < self._newest]:
            del self._growing[group]

    def retained(self) -> int:
        return (super().retained() + sum(len(u) for u in self._app_users.values())
                + sum(len(d) for d in self._daily.values()) + len(self._growing))

    def _prune(self) -> None:
        cutoff = self._newest - self.baseline - self.interval
        for app, users in list(self._app_users.items()):
            for user in [u for u, span in users.items() if span[1] < cutoff]:
                del users[user]
            if not users:
                del self._app_users[app]
        self._forget_grown()
        day_cutoff = int(cutoff // DAY)
        for user, days in self._daily.items():
            for d in [d for d in days if d < day_cutoff]:
                del days[d]
