"""Rare events: an action, application, country or host this user has not used in
the last N days (once the user has enough history to say so)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from services.profiles.kinds.base import HistoryNeeds, ProfileDetector
from services.profiles.kinds.params import Param, boolean, choices, positive_int, share, string_list
from services.profiles.kinds.trust import TRUSTED_NETWORKS
from services.profiles.records import EventRecord, utc
from services.profiles.windows import BurstWindows, Entry, at_once
from ueba.store.anomalies import AnomalyRecord

# Entity type -> the events column it reads, and the dimension of its anomalies.
ENTITIES: dict[str, tuple[str, str]] = {
    "action": ("action", "application"),
    "application": ("application", "application"),
    "country": ("country", "location"),
    "host": ("destination_host", "host"),
    "source_host": ("source_host", "host"),
    "source_ip": ("source_ip", "location"),
}
# Entity types that are about where the user acts from: a trusted network's are not news.
ADDRESS_ENTITIES = frozenset({"country", "source_ip"})
DAY = 86400.0
PRUNE_EVERY = 100_000


class RareEventProfile(ProfileDetector):
    kind = "rare_event"
    default_dimension = ""  # per entity type unless the profile sets one
    title = "Rare event"
    parameters = (
        Param("entity_types", choices(*ENTITIES), ["application", "country"], "what must be new: " + ", ".join(ENTITIES)),
        Param("lookback_days", positive_int, 30, "not seen for this user within this many days"),
        Param("min_history_days", positive_int, 7, "users seen for less than this are still learning and raise nothing"),
        Param("suppress_seconds", positive_int, 3600, "one anomaly per user and entity type within this interval"),
        Param("event_types", string_list, [], "event types to look at; empty: every type"),
        Param("include_failures", boolean, False, "also count failed actions"),
        Param("max_org_share", share, 0.05,
              "not rare when more than this share of the organisation's users, or of the user's department, "
              "used it in the lookback (0-1; 1: off)"),
        TRUSTED_NETWORKS,
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.entity_types = tuple(p["entity_types"])
        self.lookback = p["lookback_days"] * DAY
        self.min_history = p["min_history_days"] * DAY
        self.event_types = frozenset(p["event_types"]) or None
        self._user_first: dict[str, float] = {}
        # Entity type -> entity -> user -> last seen: when this user last used it, and how common
        # it is across the organisation.
        self._users_of: dict[str, dict[str, dict[str, float]]] = {t: {} for t in self.entity_types}
        self._columns = tuple((t, ENTITIES[t][0], t == "country", t in ADDRESS_ENTITIES) for t in self.entity_types)
        self.max_share = p["max_org_share"]
        self._department: dict[str, str] = {}
        self._fired = BurstWindows(float(p["suppress_seconds"]))
        self._count = 0
        self._newest = float("-inf")

    @classmethod
    def lookback_seconds(cls, params: dict[str, Any]) -> float:
        return float(params["suppress_seconds"])

    @classmethod
    def history_needs(cls, params: dict[str, Any]) -> HistoryNeeds:
        return HistoryNeeds(seen_entities=tuple(params["entity_types"]), days=params["lookback_days"])

    def accepts(self, e: EventRecord) -> bool:
        return (
            super().accepts(e)
            and (e.outcome != "failure" or self.params["include_failures"])
        )

    def seed_users(self, rows: Iterable[tuple[str, str | None, datetime]]) -> None:
        for user, department, first in rows:
            if department:
                self._department[user] = department
            ts = first.timestamp()
            if ts < self._user_first.get(user, float("inf")):
                self._user_first[user] = ts

    def seed_entities(self, rows: Iterable[tuple[str, str, str, datetime, datetime]]) -> None:
        for user, entity_type, entity, _first, last in rows:
            if entity_type not in self._users_of:
                continue
            users = self._users_of[entity_type].setdefault(entity, {})
            ts = last.timestamp()
            if ts > users.get(user, float("-inf")):
                users[user] = ts

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        user, ts = e.user, e.ts
        first = self._user_first.get(user)
        if first is None or ts < first:
            first = self._user_first[user] = ts
        learning = ts - first < self.min_history
        if e.department:
            self._department[user] = e.department
        out = []
        trusted = None
        for entity_type, column, upper, about_address in self._columns:
            value = getattr(e, column)
            if not value:
                continue
            if about_address:
                if trusted is None:
                    trusted = self.from_trusted(e)
                if trusted:
                    continue
            value = value.upper() if upper else value.lower()
            entities = self._users_of[entity_type]
            users = entities.get(value)
            if users is None:
                users = entities[value] = {}
            last = users.get(user)
            if last is not None and last >= ts:
                continue  # a late event of something already seen after it
            users[user] = ts
            if learning or (last is not None and ts - last <= self.lookback):
                continue
            share = self._share(users, e)
            if share > self.max_share:
                continue  # new to this user, but common in the organisation
            burst = self._fired.add(f"user:{e.user}:{entity_type}", Entry(e.ts), at_once)
            if not burst:
                continue
            days = self.params["lookback_days"]
            when = "for the first time" if last is None else f"for the first time in {(e.ts - last) / DAY:.0f} days"
            label = entity_type.replace("_", " ")
            out.append(self.fire(
                user=e.user, group=f"user:{e.user}:{entity_type}:{value}", at=e.ts, start=e.ts, end=e.ts + 1,
                description=f"{e.user} used {label} {value} {when} (not seen in the last {days} days)",
                dimension=self.spec.dimension or ENTITIES[entity_type][1],
                evidence={
                    "event_ids": [e.event_id],
                    "entity_type": entity_type,
                    "entity": value,
                    "last_seen": utc(last).isoformat() if last is not None else None,
                    "lookback_days": days,
                    "user_first_seen": utc(first).isoformat(),
                    "event_type": e.event_type,
                    "org_share": round(share, 4),
                },
            ))
        self._count += 1
        self._newest = max(self._newest, e.ts)
        if self._count % PRUNE_EVERY == 0:
            self._prune()
        return out

    def retained(self) -> int:
        return super().retained() + sum(len(u) for entities in self._users_of.values() for u in entities.values())

    def _share(self, users: dict[str, float], e: EventRecord) -> float:
        """The larger of the shares of the organisation and of the user's department who used
        this entity within the lookback, besides this user."""
        if self.max_share >= 1:
            return 0.0
        since = e.ts - self.lookback
        others = [u for u, ts in users.items() if ts >= since and u != e.user]
        org = len(others) / max(1, len(self._user_first))
        department = self._department.get(e.user)
        if not department or not others:
            return org
        size = sum(1 for d in self._department.values() if d == department)
        peers = sum(1 for u in others if self._department.get(u) == department)
        return max(org, peers / max(1, size))

    def _prune(self) -> None:
        cutoff = self._newest - self.lookback
        for entities in self._users_of.values():
            for entity, users in list(entities.items()):
                kept = {u: ts for u, ts in users.items() if ts >= cutoff}
                if kept:
                    entities[entity] = kept
                else:
                    del entities[entity]
