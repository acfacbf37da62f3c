"""Failed logins, charged to whom they are about: a brute force, spray or stuffing from one source
is the source's finding, growing while the attack goes on; each existing account it targeted gets
a linked finding at half the score; a success after the failures is the high-risk finding on the
account (README: "Failed logins")."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from services.profiles.kinds.base import HistoryNeeds, ProfileDetector, human_duration
from services.profiles.kinds.params import Param, boolean, non_negative_int, positive_int, score, share
from services.profiles.kinds.trust import TRUSTED_NETWORKS
from services.profiles.records import EventRecord, utc
from services.profiles.source_spread import SourceSpread
from services.profiles.windows import BurstWindows, Entry, at_once
from ueba.risk import decades_risk
from ueba.store.anomalies import AnomalyRecord

MAX_EVIDENCE_EVENTS = 50
MAX_EVIDENCE_USERS = 100  # also the linked findings one activity raises at most
MAX_TARGET_EVENTS = 10
# An account's finding linked to the source that targeted it weighs this share of the profile's score.
LINKED_SHARE = 0.5
# A failure for an account the target system does not know puts no account at risk.
UNKNOWN_ACCOUNT = "unknown_user"
PENDING_SWEEP = 256


class Attempt(NamedTuple):
    """What the windows keep of a logon: enough for the evidence."""

    event_id: str
    user: str
    source: str | None
    time: datetime
    destination: str | None = None
    known: bool = True  # the target system knows the account: a failure for it puts the account at risk


class Success(NamedTuple):
    """A successful logon still being judged: failures of its own second may follow it in the stream."""

    attempt: Attempt
    ts: float
    charged: tuple[str, str] | None


@dataclass
class Target:
    """An existing account one source's activity failed on: its linked finding's evidence."""

    first: datetime
    last: datetime
    event_ids: list[str] = field(default_factory=list)


@dataclass
class SourceActivity:
    """One source's run of failures, each within the interval of the one before (within the long
    window's, once that window fired it: a slow spray goes on at its own pace)."""

    start: float
    first: datetime
    last_ts: float
    last: datetime
    span: float  # the window it is judged on: the interval, or the long window it fired on
    count: int = 0
    accounts: Counter = field(default_factory=Counter)
    targets: dict[str, Target] = field(default_factory=dict)  # the first MAX_EVIDENCE_USERS existing accounts
    destinations: set[str] = field(default_factory=set)
    nameless: int = 0
    event_ids: list[str] = field(default_factory=list)  # the first MAX_EVIDENCE_EVENTS
    fired: bool = False
    spray_threshold: int = 0  # the tenant's figure when it fired
    restored: bool = False  # read back from a stored finding: the next failure continues it


def source_of(e: EventRecord) -> tuple[str, str] | None:
    """(entity type, name) of where a logon came from: its address, else its host name."""
    if e.source_ip:
        return "ip", e.source_ip
    if e.source_host:
        return "host", e.source_host.lower()
    return None


def elapsed(seconds: float) -> str:
    """A slow run's length as read: "8.2 hours", "40 minutes"."""
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{round(seconds / 60)} minutes"


def span_of(first: datetime, last: datetime) -> str:
    """From when to when, with the dates when a slow run crosses midnight."""
    when = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M:%S"
    return f"{first:{when}} to {last:{when}}"


def end_of_second(ts: float) -> float:
    """The latest time in the whole second of `ts`: logs that stamp whole seconds do not order
    the events inside one, so a failure of the same second may be written after the success it preceded."""
    return math.nextafter(math.floor(ts) + 1.0, -math.inf)


class FailedLoginsProfile(ProfileDetector):
    kind = "failed_logins"
    default_dimension = "authentication"
    event_types = frozenset({"logon"})
    title = "Failed logins"
    takes_nameless = True  # a failure naming no account is an attempt from its source
    parameters = (
        Param("count", positive_int, 10, "failed logons of one account from one source, or from one source in all, within the interval that raise an anomaly"),
        Param("interval_seconds", positive_int, 600, "length of the sliding window"),
        Param("spray_users", non_negative_int, 5, "the fewest distinct accounts failing from one source within the interval that make a password spray, whatever the organisation's own figure; 0: findings stay on the accounts"),
        Param("spray_quantile", share, 0.995, "a spray also exceeds the distinct failed accounts of this share of the tenant's source-windows; 0: spray_users alone"),
        Param("spray_baseline_days", positive_int, 30, "days of source-windows the tenant's figure is learned from"),
        Param("spray_interval_seconds", non_negative_int, 86400, "the long window of a slow spray: distinct accounts (or hosts) failing from one source within it, judged like the interval's against the tenant's source-windows of that length (same floor and quantile); 0, or not longer than the interval: off"),
        Param("success_risk_score", score, 0, "risk of a successful logon right after such failures; 0: the profile's risk + 25"),
        Param("spray_ignore_trusted", boolean, True, "leave trusted (internal, VPN) source addresses out of spray detection"),
        TRUSTED_NETWORKS,
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
        self._spread = SourceSpread(self.interval, p["spray_quantile"], self.spray_users, p["spray_baseline_days"])
        # The long window only asks how many accounts a source failed on: a slow spray's pace is
        # below any count, and its threshold is learned over source-windows of its own length.
        self.slow_interval = self.long_window(p)
        self._slow = self._slow_spread = None
        if self.slow_interval:
            self._slow = BurstWindows(self.slow_interval, self.interval, max_entries=max(256, 4 * self.spray_users))
            self._slow_spread = SourceSpread(self.slow_interval, p["spray_quantile"], self.spray_users, p["spray_baseline_days"])
        self._activities: dict[str, SourceActivity] = {}
        self._pending: dict[str, list[Success]] = {}  # origin -> successes of its latest second not yet after an attack
        self._newest = float("-inf")

    @staticmethod
    def long_window(params: dict[str, Any]) -> float:
        """The slow spray's window, or 0: off, or no longer than the interval (it would add nothing)."""
        long = float(params.get("spray_interval_seconds") or 0)
        return long if params.get("spray_users") and long > params["interval_seconds"] else 0.0

    @classmethod
    def lookback_seconds(cls, params: dict[str, Any]) -> float:
        return max(float(params["interval_seconds"]), cls.long_window(params))

    @classmethod
    def fired_carry_seconds(cls, params: dict[str, Any]) -> float:
        return cls.long_window(params)

    @classmethod
    def history_needs(cls, params: dict[str, Any]) -> HistoryNeeds | None:
        if not params.get("spray_users") or not params.get("spray_quantile"):
            return None
        windows = tuple(w for w in (float(params["interval_seconds"]), cls.long_window(params)) if w)
        return HistoryNeeds(days=params["spray_baseline_days"], failure_spread=windows, users=False)

    def seed_failure_spread(self, interval: float, rows) -> None:
        spread = self._spread if interval == self.interval else self._slow_spread
        if spread is not None and spread.interval == interval:
            spread.seed(rows)

    def spray_threshold(self) -> int:
        """Distinct accounts from one source within the interval that make a spray in this tenant now."""
        return self._spread.threshold()

    def slow_spray_threshold(self) -> int:
        """The same within the long window (0: off)."""
        return self._slow_spread.threshold() if self._slow_spread is not None else 0

    def fired_windows(self, group: str) -> BurstWindows | None:
        kind = group.partition(":")[0]
        return {"user": self._users, "success": self._successes}.get(kind)

    def restore_fired(self, group: str, start: float, end: float | None = None) -> None:
        """A source's stored finding restores its activity, last refreshed at `end`: the replay's
        failures continue it (and its dedup key) as they continued it live, unless it had ended.
        Its count restarts from the replayed look-back; the incident keeps the larger count.
        `slow:` names one the long window fired."""
        kind, _, name = group.partition(":")
        if kind not in ("source", "slow"):
            super().restore_fired(group, start, end)
            return
        slow = kind == "slow" and self._slow is not None
        if not slow:
            self._sources.mark_fired(f"source:{name}", start)
        if self._slow is not None:
            self._slow.mark_fired(f"source:{name}", start)
        current = self._activities.get(name)
        if current is not None and current.start > start:
            return  # a later finding of that source holds its activity
        last = start if end is None else max(start, end)
        self._activities[name] = SourceActivity(start=start, first=utc(start), last_ts=last, last=utc(last),
                                                span=self.slow_interval if slow else self.interval,
                                                fired=True, restored=True)

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        if e.outcome == "failure":
            return self._failure(e)
        if e.outcome == "success" and e.user:
            return self._success(e)
        return []

    def retained(self) -> int:
        return (super().retained() + len(self._activities) + self._spread.retained()
                + (self._slow_spread.retained() if self._slow_spread is not None else 0)
                + sum(len(s) for s in self._pending.values()))

    def _charged(self, e: EventRecord) -> tuple[str, str] | None:
        """The source a failure is charged to, or None: the findings stay on the account."""
        source = source_of(e)
        if not self.spray_users or source is None or (self.params["spray_ignore_trusted"] and self.from_trusted(e)):
            return None
        return source

    # --- failures ------------------------------------------------------------------

    def _failure(self, e: EventRecord) -> list[AnomalyRecord]:
        out = []
        charged = self._charged(e)
        source = source_of(e)
        attempt = Attempt(e.event_id, e.user, source[1] if source else None, e.time,
                          e.destination_host.lower() if e.destination_host else None,
                          e.failure_reason != UNKNOWN_ACCOUNT)
        if e.user:
            group = f"user:{e.user}|{source[1] if source else ''}"
            # Charged to a source, the account's finding is the linked one its activity raises.
            reached = None if charged is not None else (lambda w: len(w) >= self.count)
            burst = self._users.add(group, Entry(e.ts, attempt), reached)
            if burst:
                out.append(self._account_burst(e.user, burst))
        if charged is not None:
            if e.user:
                self._spread.add(charged[1], e.user, e.ts)
                if self._slow_spread is not None:
                    self._slow_spread.add(charged[1], e.user, e.ts)
            out.extend(self._source_failure(e, charged, attempt))
        out.extend(self._judge_pending(e, source[1] if source else ""))
        return out

    def _account_burst(self, user: str, burst) -> AnomalyRecord:
        attempts = [x.item for x in burst.entries]
        sources = sorted({x.source for x in attempts if x.source})
        origin = f" from {', '.join(sources[:3])}" if sources else ""
        return self.fire(
            user=user, group=burst.group, at=burst.entries[-1].ts, start=burst.start, end=burst.end,
            description=f"{len(attempts)} failed logons for {user} within {human_duration(self.interval)} "
                        f"(threshold {self.count}){origin}",
            evidence=self._evidence(attempts, threshold=self.count, sources=sources),
        )

    def _activity(self, e: EventRecord, name: str, attempt: Attempt) -> SourceActivity:
        act = self._activities.get(name)
        if act is not None and act.restored:
            if e.ts < act.start:
                # Replayed from before the stored finding restored here: that run was judged live,
                # its own findings restored; this one is not kept.
                return self._count(self._started(e), attempt)
            act.restored = False
        if act is None or e.ts - act.last_ts > act.span:
            act = self._activities[name] = self._started(e)
            if len(self._activities) % 256 == 0:
                self._forget_quiet()
        if e.ts >= act.last_ts:
            act.last_ts, act.last = e.ts, e.time
        return self._count(act, attempt)

    def _started(self, e: EventRecord) -> SourceActivity:
        return SourceActivity(start=e.ts, first=e.time, last_ts=e.ts, last=e.time, span=self.interval)

    def _count(self, act: SourceActivity, a: Attempt) -> SourceActivity:
        act.count += 1
        if a.user:
            act.accounts[a.user] += 1
            if a.known:
                self._target(act, a)
        else:
            act.nameless += 1
        if a.destination and len(act.destinations) < MAX_EVIDENCE_USERS:
            act.destinations.add(a.destination)
        if len(act.event_ids) < MAX_EVIDENCE_EVENTS:
            act.event_ids.append(a.event_id)
        return act

    @staticmethod
    def _target(act: SourceActivity, a: Attempt) -> None:
        target = act.targets.get(a.user)
        if target is None:
            if len(act.targets) >= MAX_EVIDENCE_USERS:
                return
            target = act.targets[a.user] = Target(a.time, a.time)
        target.first, target.last = min(target.first, a.time), max(target.last, a.time)
        if len(target.event_ids) < MAX_TARGET_EVENTS:
            target.event_ids.append(a.event_id)

    def _source_failure(self, e: EventRecord, charged: tuple[str, str], attempt: Attempt) -> list[AnomalyRecord]:
        """The source's finding when its failures reach a threshold, re-raised with the true count while
        they go on, and the linked finding of each existing account it tried, growing alike."""
        entity_type, name = charged
        self._newest = max(self._newest, e.ts)
        act = self._activity(e, name, attempt)
        group, key = f"source:{name}", e.user or None
        spray = self.spray_threshold()
        reached = self._sources.add(group, Entry(e.ts, attempt, key=key),
                                    lambda w: len(w) >= self.count or self._spread_over(w) >= spray)
        slow = slow_spray = None
        if self._slow is not None:
            slow_spray = self.slow_spray_threshold()
            slow = self._slow.add(group, Entry(e.ts, attempt, key=key), lambda w: self._spread_over(w) >= slow_spray)
        if act.fired:
            linked = [e.user] if e.user in act.targets else []
        elif reached:
            # The finding is keyed by the window that first reached a threshold: a warm-up replay
            # (which restores that window) keys it alike, wherever the run of failures began.
            act.start, act.fired, act.spray_threshold = reached.start, True, spray
            if self._slow is not None:
                # Its failures are this finding's: the long window must not raise them again.
                self._slow.mark_fired(group, reached.start)
            # The accounts of that window (a warm-up replays it), then each account as it is tried;
            # one tried only before the window is named in the source's evidence.
            linked = sorted({x.key for x in reached.entries if x.key in act.targets})
        elif slow:
            self._refill(act, slow, slow_spray)
            linked = sorted(act.targets)
        else:
            return []
        return [self._source_record(entity_type, name, act)] + [self._target_record(charged, act, u) for u in linked]

    def _refill(self, act: SourceActivity, burst, threshold: int) -> None:
        """The long window reached its threshold: the activity becomes that window's failures, whatever
        the gaps between them (a run of the interval holds only the last few), and goes on while the
        source keeps failing within the long window."""
        act.start, act.span, act.fired, act.spray_threshold = burst.start, self.slow_interval, True, threshold
        act.first = burst.entries[0].item.time
        act.count, act.nameless = 0, 0
        act.accounts, act.targets, act.destinations, act.event_ids = Counter(), {}, set(), []
        for x in burst.entries:
            self._count(act, x.item)

    @staticmethod
    def _spread_over(window) -> int:
        """The distinct accounts, or hosts (a scan, a fan-out), one source's failures in a window reached."""
        return max(len({x.key for x in window if x.key}), len({x.item.destination for x in window if x.item.destination}))

    def _pattern(self, act: SourceActivity) -> str:
        """What the run of failures looks like: many hosts (a scan); many accounts, none of them taking
        most of the attempts, mostly unknown here (stuffing: lists from elsewhere) or not (a spray);
        else one account tried over and over (a brute force, with a few names tried beside it)."""
        threshold = act.spray_threshold or self.spray_threshold()
        if len(act.destinations) >= threshold:
            return "logon scan"
        named = sum(act.accounts.values())
        if len(act.accounts) >= threshold and 2 * max(act.accounts.values()) < named:
            return "credential stuffing" if 2 * len(act.targets) < len(act.accounts) else "password spray"
        return "brute force"

    def _source_record(self, entity_type: str, name: str, act: SourceActivity) -> AnomalyRecord:
        accounts = sorted(act.accounts, key=lambda u: (-act.accounts[u], u))
        what = self._pattern(act)
        named = ", ".join(accounts[:3]) + (f" and {len(accounts) - 3} more" if len(accounts) > 3 else "")
        against = f" against {named}" if named else ""
        unnamed = f" ({act.nameless} naming no account)" if act.nameless else ""
        hosts = f" on {len(act.destinations)} hosts" if len(act.destinations) > 1 else ""
        slow = act.span != self.interval
        pace = (f" over {elapsed(act.last_ts - act.start)} (slow: judged over {human_duration(act.span)})"
                if slow else "")
        spread = max(len(act.accounts), len(act.destinations))
        # The profile's risk, or more where so wide a run is rarer than that in this tenant: a
        # spray over fifty accounts is not one over five.
        rarity = (self._slow_spread if slow else self._spread).rarity(spread)
        record = self.fire(
            user="", group=f"{'slow' if slow else 'source'}:{name}", at=act.last_ts, start=act.start, end=act.last_ts,
            risk_score=max(self.spec.risk_score, min(100, round(decades_risk(rarity.decades)))),
            description=f"{what} from {name}: {act.count} failed logons{unnamed}{against}{hosts} "
            f"from {span_of(act.first, act.last)}{pace}",
            evidence={
                "event_ids": list(act.event_ids), "count": act.count, "threshold": self.count,
                "spray_threshold": act.spray_threshold, "interval_seconds": int(act.span),
                "first": act.first.isoformat(), "last": act.last.isoformat(), f"source_{entity_type}": name,
                "sources": [name], "users": sorted(accounts[:MAX_EVIDENCE_USERS]), "nameless": act.nameless,
                "pattern": what.replace(" ", "_"), "destinations": sorted(act.destinations),
                "rarity": rarity.evidence(),
            },
        )
        return replace(record, entity_type=entity_type, entity=name, refresh=True)

    def _target_record(self, charged: tuple[str, str], act: SourceActivity, user: str) -> AnomalyRecord:
        entity_type, name = charged
        target, n = act.targets[user], act.accounts[user]
        record = self.fire(
            user=user, group=f"target:{user}|{name}", at=target.last.timestamp(), start=act.start,
            end=target.last.timestamp(), risk_score=self.linked_risk,
            description=f"{n} failed logon{'s' if n != 1 else ''} for {user}, part of the {self._pattern(act)} from {name}",
            evidence={
                "event_ids": list(target.event_ids), "count": n, "first": target.first.isoformat(),
                "last": target.last.isoformat(), "interval_seconds": int(act.span), "sources": [name],
                f"source_{entity_type}": name, "source_entity": {"type": entity_type, "entity": name},
            },
        )
        return replace(record, refresh=True)

    def _forget_quiet(self) -> None:
        for name in [n for n, a in self._activities.items() if a.last_ts < self._newest - 2 * a.span]:
            del self._activities[name]

    # --- successes -------------------------------------------------------------------

    def _success(self, e: EventRecord) -> list[AnomalyRecord]:
        source = source_of(e)
        success = Success(Attempt(e.event_id, e.user, source[1] if source else None, e.time), e.ts, self._charged(e))
        found = self._judge(success)
        if not found:
            self._remember(success)
        return found

    def _remember(self, s: Success) -> None:
        origin = s.attempt.source or ""
        second = math.floor(s.ts)
        self._pending[origin] = [p for p in self._pending.get(origin, ()) if math.floor(p.ts) == second] + [s]
        if len(self._pending) % PENDING_SWEEP == 0:
            newest = max(self._newest, s.ts)
            for o in [o for o, ps in self._pending.items() if ps[-1].ts < newest - 2]:
                del self._pending[o]

    def _judge_pending(self, e: EventRecord, origin: str) -> list[AnomalyRecord]:
        """Successes of this failure's second from its origin, judged again with it counted."""
        pending = self._pending.get(origin)
        if not pending:
            return []
        second = math.floor(e.ts)
        out, left = [], []
        for s in pending:
            if math.floor(s.ts) != second:
                continue
            found = self._judge(s)
            out.extend(found)
            if not found:
                left.append(s)
        if left:
            self._pending[origin] = left
        else:
            del self._pending[origin]
        return out

    def _judge(self, s: Success) -> list[AnomalyRecord]:
        """The account's high-risk finding: a success right after a brute force of it, or from a source
        under attack; failures of the success's own second count as before it."""
        user, origin, ts = s.attempt.user, s.attempt.source or "", s.ts
        until = end_of_second(ts)
        failures = [x.item for x in self._users.recent(f"user:{user}|{origin}", ts - self.interval, until)]
        act = self._activities.get(s.charged[1]) if s.charged else None
        attacking = act is not None and act.fired and act.start <= until and ts - act.last_ts <= act.span
        if len(failures) < self.count and not attacking:
            return []
        burst = self._successes.add(f"success:{user}|{origin}", Entry(ts), at_once)
        if not burst:
            return []
        if attacking:
            failures = [Attempt(i, "", origin, act.first) for i in act.event_ids][: MAX_EVIDENCE_EVENTS - 1]
            description = (f"successful logon for {user} from {origin} during the {self._pattern(act)} of {act.count} "
                           f"failed logons against {len(act.accounts)} accounts")
        else:
            description = (f"successful logon for {user} after {len(failures)} failed logons within "
                           f"{human_duration(self.interval)}" + (f" from {origin}" if origin else ""))
        extra: dict[str, Any] = {"success_event_id": s.attempt.event_id, "sources": [origin] if origin else []}
        if attacking:
            extra["count"] = act.count + 1  # the attack's every failure, and the success
        if s.charged is not None:
            extra["source_entity"] = {"type": s.charged[0], "entity": s.charged[1]}
        start = act.start if attacking else (failures[0].time.timestamp() if failures else ts)
        return [self.fire(
            user=user, group=burst.group, at=ts, start=min(start, ts), end=ts, risk_score=self.success_risk,
            description=description, evidence=self._evidence(failures + [s.attempt], threshold=self.count, **extra),
            variant="success",
        )]

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
