"""Failed logins: brute force on one account, password spray from one address,
and the success that follows either (raised higher: the guess worked)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

from services.profiles.kinds.base import ProfileDetector, human_duration
from services.profiles.kinds.params import Param, boolean, non_negative_int, positive_int, score
from services.profiles.records import EventRecord
from services.profiles.windows import BurstWindows, Entry, at_once
from ueba.store.anomalies import AnomalyRecord

MAX_EVIDENCE_EVENTS = 50


class Attempt(NamedTuple):
    """What the windows keep of a logon: enough for the evidence."""

    event_id: str
    user: str
    source_ip: str | None
    time: datetime


class FailedLoginsProfile(ProfileDetector):
    kind = "failed_logins"
    default_dimension = "authentication"
    event_types = frozenset({"logon"})
    title = "Failed logins"
    parameters = (
        Param("count", positive_int, 10, "failed logons of one user within the interval that raise an anomaly"),
        Param("interval_seconds", positive_int, 600, "length of the sliding window"),
        Param("spray_users", non_negative_int, 10, "distinct users failing from one source address within the interval (password spray); 0: off"),
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
        # Consumed failures are kept: a success right after them counts them.
        # Bounded well above the thresholds: a success after a long brute force counts (and lists)
        # its latest failures.
        self._users = BurstWindows(self.interval, keep_consumed=True, max_entries=max(256, 4 * self.count))
        self._sources = BurstWindows(self.interval, keep_consumed=True, max_entries=max(256, 4 * self.spray_users))
        self._successes = BurstWindows(self.interval)

    def fired_windows(self, group: str) -> BurstWindows | None:
        kind = group.partition(":")[0]
        return {"user": self._users, "source": self._sources, "user-success": self._successes,
                "source-success": self._successes}.get(kind)

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        if e.outcome == "failure":
            return self._failure(e)
        if e.outcome == "success":
            return self._success(e)
        return []

    def _failure(self, e: EventRecord) -> list[AnomalyRecord]:
        out = []
        attempt = Attempt(e.event_id, e.user, e.source_ip, e.time)
        burst = self._users.add(f"user:{e.user}", Entry(e.ts, attempt), lambda w: len(w) >= self.count)
        if burst:
            attempts = [x.item for x in burst.entries]
            sources = sorted({x.source_ip for x in attempts if x.source_ip})
            out.append(self.fire(
                user=e.user, group=burst.group, at=burst.entries[-1].ts, start=burst.start, end=burst.end,
                description=f"{len(attempts)} failed logons for {e.user} within {human_duration(self.interval)} "
                f"(threshold {self.count})" + (f" from {', '.join(sources[:3])}" if sources else ""),
                evidence=self._evidence(attempts, threshold=self.count, sources=sources),
            ))
        if self.spray_users and e.source_ip and not (e.trusted_source and self.params["spray_ignore_trusted"]):
            burst = self._sources.add(
                f"source:{e.source_ip}", Entry(e.ts, attempt, key=e.user), lambda w: len({x.key for x in w}) >= self.spray_users
            )
            if burst:
                attempts = [x.item for x in burst.entries]
                per_user = Counter(x.user for x in attempts)
                # The spray is about an address; it is charged to its most tried account.
                target = sorted(per_user.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
                out.append(self.fire(
                    user=target, group=burst.group, at=burst.entries[-1].ts, start=burst.start, end=burst.end,
                    description=f"password spray: {len(per_user)} accounts failed to log on from {e.source_ip} "
                    f"within {human_duration(self.interval)} (threshold {self.spray_users})",
                    evidence=self._evidence(attempts, threshold=self.spray_users, source_ip=e.source_ip, users=sorted(per_user)),
                ))
        return out

    def _success(self, e: EventRecord) -> list[AnomalyRecord]:
        out = []
        since = e.ts - self.interval
        success = Attempt(e.event_id, e.user, e.source_ip, e.time)
        failures = self._users.recent(f"user:{e.user}", since, e.ts)
        if len(failures) >= self.count:
            burst = self._successes.add(f"user-success:{e.user}", Entry(e.ts), at_once)
            if burst:
                out.append(self.fire(
                    user=e.user, group=burst.group, at=e.ts, start=failures[0].ts, end=e.ts, risk_score=self.success_risk,
                    description=f"successful logon for {e.user} after {len(failures)} failed logons within "
                    f"{human_duration(self.interval)}" + (f" from {e.source_ip}" if e.source_ip else ""),
                    evidence=self._evidence([x.item for x in failures] + [success], threshold=self.count,
                                            success_event_id=e.event_id),
                    variant="success",
                ))
        if self.spray_users and e.source_ip:
            failures = self._sources.recent(f"source:{e.source_ip}", since, e.ts)
            users = sorted({x.key for x in failures})
            if len(users) >= self.spray_users:
                burst = self._successes.add(f"source-success:{e.source_ip}:{e.user}", Entry(e.ts), at_once)
                if burst:
                    out.append(self.fire(
                        user=e.user, group=burst.group, at=e.ts, start=failures[0].ts, end=e.ts, risk_score=self.success_risk,
                        description=f"successful logon for {e.user} from {e.source_ip} during a password spray "
                        f"against {len(users)} accounts",
                        evidence=self._evidence([x.item for x in failures] + [success], threshold=self.spray_users,
                                                source_ip=e.source_ip, users=users, success_event_id=e.event_id),
                        variant="success",
                    ))
        return out

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
