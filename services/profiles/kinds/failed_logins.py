"""Failed logins, charged to whom they are about: a brute force or spray from one source is
the source's finding, growing while the attack goes on; each account it targeted gets a linked
finding at half the score; a success after the failures is the high-risk finding on the account."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from services.profiles.kinds.base import ProfileDetector, human_duration
from services.profiles.kinds.params import Param, boolean, non_negative_int, positive_int, score
from services.profiles.records import EventRecord, utc
from services.profiles.windows import BurstWindows, Entry, at_once
from ueba.store.anomalies import AnomalyRecord

MAX_EVIDENCE_EVENTS = 50
MAX_EVIDENCE_USERS = 100
# An account's finding linked to the source that targeted it weighs this share of the profile's score.
LINKED_SHARE = 0.5


class Attempt(NamedTuple):
    """What the windows keep of a logon: enough for the evidence."""

    event_id: str
    user: str
    source: str | None
    time: datetime


@dataclass
class SourceActivity:
    """One source's run of failures, each within the interval of the one before."""

    start: float
    first: datetime
    last_ts: float
    last: datetime
    count: int = 0
    accounts: Counter = field(default_factory=Counter)
    nameless: int = 0
    event_ids: list[str] = field(default_factory=list)  # the first MAX_EVIDENCE_EVENTS
    fired: bool = False
    restored: bool = False  # read back from a stored finding: the next failure continues it


def source_of(e: EventRecord) -> tuple[str, str] | None:
    """(entity type, name) of where a logon came from: its address, else its host name."""
    if e.source_ip:
        return "ip", e.source_ip
    if e.source_host:
        return "host", e.source_host.lower()
    return None


class FailedLoginsProfile(ProfileDetector):
    kind = "failed_logins"
    default_dimension = "authentication"
    event_types = frozenset({"logon"})
    title = "Failed logins"
    takes_nameless = True  # a failure naming no account is an attempt from its source
    parameters = (
        Param("count", positive_int, 10, "failed logons of one account from one source, or from one source in all, within the interval that raise an anomaly"),
        Param("interval_seconds", positive_int, 600, "length of the sliding window"),
        Param("spray_users", non_negative_int, 10, "distinct users failing from one source within the interval (password spray); 0: findings stay on the accounts"),
        Param("success_risk_score", score, 0, "risk of a successful logon right after such failures; 0: the profile's risk + 25"),
        Param("spray_ignore_trusted", boolean, True, "leave trusted (internal, VPN) source addresses out of spray detection"),
    )

    def __init__(self, spec):
        super().__init__(spec)
        p = self.params
        self.count = p["count"]
        self.interval = float(p["interval_seconds"])
        self.spray_users = p["spray_users"]
        self.success_risk = p["success_risk_score"] or min(100, spec.risk_score + 25)
        self.linked_risk = max(1, round(spec.risk_score * LINKED_SHARE))
        # Consumed failures are kept: a success right after them counts them.
        # Bounded well above the thresholds: a success after a long brute force counts (and lists)
        # its latest failures.
        self._users = BurstWindows(self.interval, keep_consumed=True, max_entries=max(256, 4 * self.count))
        self._sources = BurstWindows(self.interval, keep_consumed=True, max_entries=max(256, 4 * max(self.count, self.spray_users)))
        self._successes = BurstWindows(self.interval)
        self._activities: dict[str, SourceActivity] = {}
        self._newest = float("-inf")

    def fired_windows(self, group: str) -> BurstWindows | None:
        kind = group.partition(":")[0]
        return {"user": self._users, "success": self._successes}.get(kind)

    def restore_fired(self, group: str, start: float) -> None:
        """A source's stored finding restores its activity: the replay's failures continue it (and
        its dedup key), as they continued it live. Its count restarts from the replayed look-back;
        the incident keeps the larger count."""
        kind, _, name = group.partition(":")
        if kind != "source":
            super().restore_fired(group, start)
            return
        when = utc(start)
        self._sources.mark_fired(group, start)
        self._activities[name] = SourceActivity(start=start, first=when, last_ts=start, last=when, fired=True, restored=True)

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        if e.outcome == "failure":
            return self._failure(e)
        if e.outcome == "success" and e.user:
            return self._success(e)
        return []

    def retained(self) -> int:
        return super().retained() + len(self._activities)

    def _charged(self, e: EventRecord) -> tuple[str, str] | None:
        """The source a failure is charged to, or None: the findings stay on the account."""
        source = source_of(e)
        if not self.spray_users or source is None or (e.trusted_source and self.params["spray_ignore_trusted"]):
            return None
        return source

    # --- failures ------------------------------------------------------------------

    def _failure(self, e: EventRecord) -> list[AnomalyRecord]:
        out = []
        charged = self._charged(e)
        source = source_of(e)
        attempt = Attempt(e.event_id, e.user, source[1] if source else None, e.time)
        if e.user:
            group = f"user:{e.user}|{source[1] if source else ''}"
            burst = self._users.add(group, Entry(e.ts, attempt), lambda w: len(w) >= self.count)
            if burst:
                out.append(self._account_burst(e.user, burst, charged))
        if charged is not None:
            out.extend(self._source_failure(e, charged, attempt))
        return out

    def _account_burst(self, user: str, burst, charged: tuple[str, str] | None) -> AnomalyRecord:
        attempts = [x.item for x in burst.entries]
        sources = sorted({x.source for x in attempts if x.source})
        origin = f" from {', '.join(sources[:3])}" if sources else ""
        description = (f"{len(attempts)} failed logons for {user} within {human_duration(self.interval)} "
                       f"(threshold {self.count}){origin}")
        evidence = self._evidence(attempts, threshold=self.count, sources=sources)
        if charged is None:
            return self.fire(user=user, group=burst.group, at=burst.entries[-1].ts, start=burst.start, end=burst.end,
                             description=description, evidence=evidence)
        return self.fire(user=user, group=burst.group, at=burst.entries[-1].ts, start=burst.start, end=burst.end,
                         description=description + f", part of the attack from {charged[1]}", risk_score=self.linked_risk,
                         evidence={**evidence, "source_entity": {"type": charged[0], "entity": charged[1]}})

    def _activity(self, e: EventRecord, name: str) -> SourceActivity:
        act = self._activities.get(name)
        if act is not None and act.restored:
            act.restored = False
            act.last_ts = max(act.last_ts, e.ts)
        if act is None or e.ts - act.last_ts > self.interval:
            act = self._activities[name] = SourceActivity(start=e.ts, first=e.time, last_ts=e.ts, last=e.time)
            if len(self._activities) % 256 == 0:
                self._forget_quiet()
        if e.ts >= act.last_ts:
            act.last_ts, act.last = e.ts, e.time
        act.count += 1
        if e.user:
            act.accounts[e.user] += 1
        else:
            act.nameless += 1
        if len(act.event_ids) < MAX_EVIDENCE_EVENTS:
            act.event_ids.append(e.event_id)
        return act

    def _source_failure(self, e: EventRecord, charged: tuple[str, str], attempt: Attempt) -> list[AnomalyRecord]:
        """The source's finding when its failures reach a threshold, re-raised with the true count while they go on."""
        entity_type, name = charged
        self._newest = max(self._newest, e.ts)
        act = self._activity(e, name)
        reached = self._sources.add(
            f"source:{name}", Entry(e.ts, attempt, key=e.user or None),
            lambda w: len(w) >= self.count or len({x.key for x in w if x.key}) >= self.spray_users,
        )
        if not reached and not act.fired:
            return []
        if not act.fired:
            # The finding is keyed by the window that first reached a threshold: a warm-up replay
            # (which restores that window) keys it alike, wherever the run of failures began.
            act.start, act.fired = reached.start, True
        return [self._source_record(entity_type, name, act)]

    def _source_record(self, entity_type: str, name: str, act: SourceActivity) -> AnomalyRecord:
        accounts = sorted(act.accounts, key=lambda u: (-act.accounts[u], u))
        what = "password spray" if len(accounts) >= self.spray_users else "brute force"
        named = ", ".join(accounts[:3]) + (f" and {len(accounts) - 3} more" if len(accounts) > 3 else "")
        against = f" against {named}" if named else ""
        unnamed = f" ({act.nameless} naming no account)" if act.nameless else ""
        record = self.fire(
            user="", group=f"source:{name}", at=act.last_ts, start=act.start, end=act.last_ts,
            description=f"{what} from {name}: {act.count} failed logons{unnamed}{against} "
            f"from {act.first:%H:%M:%S} to {act.last:%H:%M:%S}",
            evidence={
                "event_ids": list(act.event_ids), "count": act.count, "threshold": self.count,
                "spray_threshold": self.spray_users, "interval_seconds": int(self.interval),
                "first": act.first.isoformat(), "last": act.last.isoformat(), f"source_{entity_type}": name,
                "sources": [name], "users": sorted(accounts[:MAX_EVIDENCE_USERS]), "nameless": act.nameless,
            },
        )
        return replace(record, entity_type=entity_type, entity=name, refresh=True)

    def _forget_quiet(self) -> None:
        horizon = self._newest - 2 * self.interval
        for name in [n for n, a in self._activities.items() if a.last_ts < horizon]:
            del self._activities[name]

    # --- successes -------------------------------------------------------------------

    def _success(self, e: EventRecord) -> list[AnomalyRecord]:
        """The account's high-risk finding: a success right after a brute force of it, or from a source under attack."""
        since = e.ts - self.interval
        source = source_of(e)
        charged = self._charged(e)
        failures = [x.item for x in self._users.recent(f"user:{e.user}|{source[1] if source else ''}", since, e.ts)]
        act = self._activities.get(charged[1]) if charged else None
        attacking = act is not None and act.fired and e.ts - act.last_ts <= self.interval
        if len(failures) < self.count and not attacking:
            return []
        origin = source[1] if source else ""
        burst = self._successes.add(f"success:{e.user}|{origin}", Entry(e.ts), at_once)
        if not burst:
            return []
        success = Attempt(e.event_id, e.user, origin or None, e.time)
        if attacking:
            failures = [Attempt(i, "", origin, act.first) for i in act.event_ids][: MAX_EVIDENCE_EVENTS - 1]
            description = (f"successful logon for {e.user} from {origin} during an attack of {act.count} failed logons "
                           f"against {len(act.accounts)} accounts")
        else:
            description = (f"successful logon for {e.user} after {len(failures)} failed logons within "
                           f"{human_duration(self.interval)}" + (f" from {origin}" if origin else ""))
        extra: dict[str, Any] = {"success_event_id": e.event_id, "sources": [origin] if origin else []}
        if attacking:
            extra["count"] = act.count + 1  # the attack's every failure, and the success
        if charged is not None:
            extra["source_entity"] = {"type": charged[0], "entity": charged[1]}
        start = (act.start if attacking else self._first_ts(failures, e))
        return [self.fire(
            user=e.user, group=burst.group, at=e.ts, start=start, end=e.ts, risk_score=self.success_risk,
            description=description, evidence=self._evidence(failures + [success], threshold=self.count, **extra),
            variant="success",
        )]

    @staticmethod
    def _first_ts(failures: list[Attempt], e: EventRecord) -> float:
        return failures[0].time.timestamp() if failures else e.ts

    def _evidence(self, events: list[Attempt], threshold: int, **extra: Any) -> dict[str, Any]:
        return {
            "event_ids": [x.event_id for x in events[:MAX_EVIDENCE_EVENTS]],
            "count": len(events),
            "threshold": threshold,
            "interval_seconds": int(self.interval),
            "first": events[0].time.isoformat(),
            "last": events[-1].time.isoformat(),
            **extra,
        }
