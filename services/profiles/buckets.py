"""How evaluator replicas share the users: hash-bucket leases and the lanes of a poll (README: "Replicas")."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Protocol

from sqlalchemy import Engine

from services.profiles.kinds import ProfileSpec
from services.profiles.store import events, tailing
from ueba.leases import LeaseManager, LeaseSettings

BUCKET_POOL = "profiles"
GLOBAL_POOL = "profiles-global"
GLOBAL_CONSUMER = "evaluator"
DEFAULT_BUCKETS = LeaseSettings.__dataclass_fields__["buckets"].default

# Kinds whose detectors keep state per user only, whatever their parameters.
_PER_USER_KINDS = frozenset({
    "bulk_download", "bulk_upload", "bulk_delete", "risky_countries", "proximity", "shared_credentials",
})


def per_user(spec: ProfileSpec) -> bool:
    """Whether the profile can be evaluated on a share of the users (else it needs every event)."""
    p = spec.parameters
    if spec.kind in _PER_USER_KINDS:
        return True
    if spec.kind == "failed_logins":
        return not p.get("spray_users")  # spray counts the accounts failing from one address
    if spec.kind == "custom_threshold":
        return p.get("group_by") == "user"
    if spec.kind == "data_exfiltration":
        return False  # a new application's finding weighs how many others in the organisation used it
    if spec.kind == "rare_event":
        return p.get("max_org_share", 0) >= 1  # below 1: how many others used the entity
    return False  # an unknown kind is safe whole


def bucket_consumer(bucket: int) -> str:
    return f"evaluator/b{bucket}"


@dataclass(frozen=True)
class Share:
    """What a replica evaluates now: buckets with their lease tokens, and the global bucket's token."""

    n: int
    buckets: dict[int, int]
    global_token: int | None

    @property
    def empty(self) -> bool:
        return not self.buckets and self.global_token is None

    def consumers(self) -> list[str]:
        out = [bucket_consumer(b) for b in sorted(self.buckets)]
        return out + [GLOBAL_CONSUMER] if self.global_token is not None else out


@dataclass
class Lane:
    """One delta of a poll: the rows after `snapshot` of the users of `buckets` (of N) for the
    per-user detectors and, with `global_`, every row for the global ones."""

    snapshot: str
    high_water: datetime | None
    consumers: list[str]
    n: int
    buckets: frozenset[int]
    global_: bool

    @property
    def per_user(self) -> bool:
        return bool(self.buckets)

    @property
    def users(self) -> events.BucketSet | None:
        """The rows to read: every row for a global lane or every bucket, else the buckets' users."""
        return None if self.global_ or len(self.buckets) == self.n else events.BucketSet(self.n, self.buckets)

    @property
    def sifted(self) -> bool:
        """Whether the per-user detectors take only some of the rows read (a global lane with some buckets)."""
        return self.global_ and 0 < len(self.buckets) < self.n


def plan_lanes(share: Share, cursors: dict[str, tailing.Cursor]) -> list[Lane]:
    """Groups the share's buckets by cursor snapshot; the global cursor joins the group at its
    snapshot, so its holder reads those rows once. Every consumer of the share must have a cursor."""
    groups: dict[str, list[int]] = {}
    for b in sorted(share.buckets):
        groups.setdefault(cursors[bucket_consumer(b)].snapshot, []).append(b)
    lanes = []
    glob = cursors[GLOBAL_CONSUMER] if share.global_token is not None else None
    for snapshot, buckets in groups.items():
        consumers = [bucket_consumer(b) for b in buckets]
        high_water = _latest(cursors[c].high_water for c in consumers)
        if glob is not None and glob.snapshot == snapshot:
            lanes.append(Lane(snapshot, _latest([high_water, glob.high_water]), consumers + [GLOBAL_CONSUMER], share.n,
                              frozenset(buckets), global_=True))
            glob = None
        else:
            lanes.append(Lane(snapshot, high_water, consumers, share.n, frozenset(buckets), global_=False))
    if glob is not None:
        lanes.append(Lane(glob.snapshot, glob.high_water, [GLOBAL_CONSUMER], share.n, frozenset(), global_=True))
    return lanes


def _latest(times) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def ensure_cursors(engine: Engine, n: int, start_from: str) -> None:
    """Creates the N bucket cursors and the global one the first time any replica runs.

    Upgrading from the single evaluator: its cursor ('evaluator') becomes every bucket's, so
    nothing is raised twice or skipped; it stays the global lane's. Otherwise all start at the
    beginning (or now), together. Under an advisory lock, so replicas starting at once agree.
    """
    wanted = [bucket_consumer(b) for b in range(n)]
    with engine.begin() as conn:
        tailing.lock_cursor_creation(conn)
        found = tailing.read_cursors(conn, wanted + [GLOBAL_CONSUMER])
        if all(c in found for c in wanted) and GLOBAL_CONSUMER in found:
            return
        if any(c in found for c in wanted):
            missing = [c for c in wanted if c not in found]
            raise RuntimeError(
                f"profile_cursors lacks {len(missing)} of the {n} bucket cursors (e.g. {missing[0]}): was "
                "UEBA_BUCKETS changed? Stop every profiles replica, delete the 'evaluator/b*' cursors and the "
                "'profiles' lease pool, and start again (the 'evaluator' cursor is taken for all buckets)"
            )
        start = found.get(GLOBAL_CONSUMER) or tailing.Cursor(
            tailing.EMPTY_SNAPSHOT if start_from == "beginning" else tailing.current_snapshot(conn), None)
        tailing.write_cursor(conn, wanted + [GLOBAL_CONSUMER], start)


class Ownership(Protocol):
    heartbeat: float  # how often the share can change

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def share(self) -> Share: ...
    def fenced(self, share: Share): ...


class FixedOwnership:
    """A share without leases or fence, every bucket unless told otherwise: an evaluator run
    in-process (tests, tools), where the caller says who owns what."""

    heartbeat = 0.0

    def __init__(self, n: int = DEFAULT_BUCKETS, buckets: Iterable[int] | None = None, holds_global: bool = True):
        self.n = n
        self.set(range(n) if buckets is None else buckets, holds_global)

    def set(self, buckets: Iterable[int], holds_global: bool) -> None:
        self._share = Share(self.n, {b: 0 for b in buckets}, 0 if holds_global else None)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def share(self) -> Share:
        return self._share

    @contextmanager
    def fenced(self, share: Share) -> Iterator[None]:
        yield


class EvaluatorLeases:
    """The replica's leases in both pools."""

    def __init__(self, engine: Engine, owner: str, settings: LeaseSettings):
        ttl, beat = settings.lease_ttl_seconds, settings.lease_heartbeat_seconds
        self.n = settings.buckets
        self.heartbeat = beat
        self.users = LeaseManager(engine, BUCKET_POOL, owner, settings.buckets, ttl, beat)
        self.everyone = LeaseManager(engine, GLOBAL_POOL, owner, 1, ttl, beat)

    def start(self) -> None:
        self.users.start()
        self.everyone.start()

    def stop(self) -> None:
        self.everyone.stop()
        self.users.stop()

    def share(self) -> Share:
        glob = self.everyone.owned()
        return Share(self.n, self.users.owned(), glob.get(0))

    @contextmanager
    def fenced(self, share: Share) -> Iterator[None]:
        """Commit inside: raises LeaseLost (before the body) if a bucket of the share was taken."""
        with ExitStack() as stack:
            if share.buckets:
                stack.enter_context(self.users.fenced(share.buckets))
            if share.global_token is not None:
                stack.enter_context(self.everyone.fenced({0: share.global_token}))
            yield
