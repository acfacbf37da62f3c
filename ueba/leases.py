"""Hash-bucket leases: replicas of a service split users into N buckets through Postgres.

A user belongs to bucket `ueba_bucket(tenant, user, N)` (a SQL function, migration
0008: hashtextextended, so SQL filters with `ueba_bucket(...) = ANY(:mine)` and no
table stores a bucket). Each replica runs a LeaseManager for its pool:

- every heartbeat, in one transaction, it renews its membership and its leases,
  releases buckets above its fair share ceil(N / live members) (so a replica that
  comes back gets its share again), and claims free or expired buckets up to the
  share with `SELECT ... FOR UPDATE SKIP LOCKED` (replicas never wait on each other);
- a replica that dies stops renewing: its membership and leases expire after `ttl`
  and the others claim its buckets at their next heartbeat (within ttl + heartbeat);
- every claim increments the bucket's `token`. A worker takes `owned()` (bucket ->
  token) before it starts and commits its writes under `fence()` / `fenced()`: the
  rows are locked FOR SHARE and their tokens compared, so a replica that was paused
  past its expiry while another took the bucket rolls back instead of writing a
  duplicate.

All times are the database's (`now()`), so replicas' clocks do not matter.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

from sqlalchemy import Connection, Engine, text

from ueba.settings import BaseSettings, SettingsError, env_field
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)


class LeaseConfigError(RuntimeError):
    """The pool in the database was created with another number of buckets."""


class LeaseLost(RuntimeError):
    """A bucket this worker started on is no longer its own (expired and taken, or released)."""


@dataclass(frozen=True)
class LeaseSettings(BaseSettings):
    buckets: int = env_field("UEBA_BUCKETS", 64, "hash buckets users are split into among replicas (fixed per deployment)")
    lease_ttl_seconds: float = env_field(
        "UEBA_LEASE_TTL_SECONDS", 30.0, "a replica's buckets are taken over this long after its last heartbeat"
    )
    lease_heartbeat_seconds: float = env_field("UEBA_LEASE_HEARTBEAT_SECONDS", 10.0, "how often a replica renews its leases")

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.buckets <= 4096:
            raise SettingsError(f"UEBA_BUCKETS={self.buckets}: 1 to 4096")
        if self.lease_heartbeat_seconds <= 0:
            raise SettingsError(f"UEBA_LEASE_HEARTBEAT_SECONDS={self.lease_heartbeat_seconds}: must be positive")
        # One late heartbeat must not cost the leases.
        if self.lease_ttl_seconds < 2 * self.lease_heartbeat_seconds:
            raise SettingsError(
                f"UEBA_LEASE_TTL_SECONDS={self.lease_ttl_seconds}: at least twice UEBA_LEASE_HEARTBEAT_SECONDS "
                f"({self.lease_heartbeat_seconds})"
            )


def new_owner_id(service: str) -> str:
    """Unique per process start: a restarted replica is a new member."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def buckets_of(conn: Connection, tenant: str, users: Iterable[str], buckets: int) -> dict[str, int]:
    """The bucket of each user, computed by the same SQL function the filters use."""
    names = list(users)
    if not names:
        return {}
    rows = conn.execute(
        text("SELECT u, ueba_bucket(:tenant, u, :n) FROM unnest(CAST(:users AS text[])) AS u"),
        {"tenant": tenant, "users": names, "n": buckets},
    )
    return dict(rows.all())


class LeaseManager(PeriodicWorker):
    """Leases of one replica in one pool; start()/stop() for ServiceServer(background=...)."""

    def __init__(self, engine: Engine, pool: str, owner: str, buckets: int, ttl: float, heartbeat: float):
        self.engine = engine
        self.pool = pool
        self.owner = owner
        self.buckets = buckets
        self.ttl = ttl
        self.heartbeat = heartbeat
        self._owned: dict[int, int] = {}
        self._renewed_at = 0.0  # monotonic time of the last successful heartbeat
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        super().__init__()
        self.thread_name = f"leases-{pool}"
        self.join_seconds = heartbeat + 5

    # -- lifecycle -----------------------------------------------------------------------------

    def ensure_pool(self) -> None:
        """Creates the pool's rows, or refuses when the pool has another N."""
        with self.engine.begin() as conn:
            conn.execute(
                text("""INSERT INTO work_leases (pool, bucket, buckets)
                        SELECT :pool, b, :n FROM generate_series(0, :n - 1) AS b
                        ON CONFLICT (pool, bucket) DO NOTHING"""),
                {"pool": self.pool, "n": self.buckets},
            )
            found = conn.execute(
                text("SELECT count(*), min(buckets), max(buckets) FROM work_leases WHERE pool = :pool"), {"pool": self.pool}
            ).one()
        if tuple(found) != (self.buckets, self.buckets, self.buckets):
            raise LeaseConfigError(
                f"lease pool {self.pool!r} has {found[0]} buckets in the database (created with N={found[2]}) but "
                f"UEBA_BUCKETS={self.buckets}: every replica must use the same N; changing it needs all replicas "
                f"stopped and the pool's rows deleted"
            )

    def start(self) -> None:
        self.ensure_pool()
        self.beat()
        super().start()

    def stop(self) -> None:
        """Releases every bucket and leaves the pool, so others take over at once."""
        super().stop()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text("""UPDATE work_leases SET owner = NULL, expires_at = now(), heartbeat_at = NULL
                            WHERE pool = :pool AND owner = :owner"""),
                    {"pool": self.pool, "owner": self.owner},
                )
                conn.execute(text("DELETE FROM work_lease_members WHERE pool = :pool AND owner = :owner"),
                             {"pool": self.pool, "owner": self.owner})
        except Exception:  # the leases expire anyway
            log.exception("releasing leases failed", extra={"pool": self.pool})
        with self._lock:
            self._owned = {}

    @property
    def interval(self) -> float:
        return self.heartbeat

    def run_once(self) -> None:
        # A failed beat is logged and retried at the next one: leases outlive one miss.
        self.beat()

    # -- what a worker sees --------------------------------------------------------------------

    def owned(self) -> dict[int, int]:
        """Buckets held (bucket -> token) as of the last heartbeat; none once that is older than the ttl."""
        with self._lock:
            if time.monotonic() - self._renewed_at > self.ttl:
                return {}
            return dict(self._owned)

    def hold(self, buckets: Iterable[int]) -> "_Busy":
        """Marks buckets as being worked on: rebalancing releases other buckets first."""
        return _Busy(self, set(buckets))

    def fence(self, conn: Connection, tokens: Mapping[int, int]) -> None:
        """In a READ COMMITTED write transaction: raises LeaseLost unless every bucket still has its token.

        The rows stay locked FOR SHARE until the caller commits, so no claim can slip
        between this check and the commit. Call it last, just before committing.
        """
        wanted = sorted(tokens)
        rows = conn.execute(
            text("""SELECT bucket, token FROM work_leases
                    WHERE pool = :pool AND owner = :owner AND bucket = ANY(CAST(:buckets AS int[]))
                    ORDER BY bucket FOR SHARE"""),
            {"pool": self.pool, "owner": self.owner, "buckets": wanted},
        ).all()
        held = dict(rows)
        lost = [b for b in wanted if held.get(b) != tokens[b]]
        if lost:
            raise LeaseLost(f"{self.owner} no longer holds buckets {lost} of pool {self.pool!r}")

    @contextmanager
    def fenced(self, tokens: Mapping[int, int]) -> Iterator[None]:
        """fence() for a REPEATABLE READ writer (whose snapshot cannot lock rows renewed since).

        The check and its FOR SHARE locks live in a transaction of their own that stays
        open while the body commits the caller's transaction: as long as the body runs,
        no claim can change the buckets' tokens.
        """
        with self.engine.connect() as conn, conn.begin():
            self.fence(conn, tokens)
            yield

    # -- the heartbeat -------------------------------------------------------------------------

    def beat(self) -> dict[int, int]:
        """Renews, rebalances and claims in one transaction; returns the buckets now held."""
        params = {"pool": self.pool, "owner": self.owner, "ttl": self.ttl}
        with self.engine.begin() as conn:
            conn.execute(
                text("""INSERT INTO work_lease_members (pool, owner, expires_at)
                        VALUES (:pool, :owner, now() + make_interval(secs => :ttl))
                        ON CONFLICT (pool, owner) DO UPDATE SET expires_at = excluded.expires_at"""),
                params,
            )
            conn.execute(text("DELETE FROM work_lease_members WHERE pool = :pool AND expires_at < now()"), params)
            live = conn.execute(text("SELECT count(*) FROM work_lease_members WHERE pool = :pool"), params).scalar_one()
            share = math.ceil(self.buckets / max(live, 1))
            # SKIP LOCKED everywhere: a row locked by our own worker's fence (or a rival's
            # claim) is left alone this beat, so the heartbeat never waits on a transaction.
            conn.execute(
                text("""UPDATE work_leases SET expires_at = now() + make_interval(secs => :ttl), heartbeat_at = now()
                        WHERE pool = :pool AND (pool, bucket) IN (
                            SELECT pool, bucket FROM work_leases WHERE pool = :pool AND owner = :owner
                            FOR UPDATE SKIP LOCKED)"""),
                params,
            )
            held = dict(conn.execute(
                text("SELECT bucket, token FROM work_leases WHERE pool = :pool AND owner = :owner"), params).all())
            if len(held) > share:
                with self._lock:
                    busy = set(self._busy)
                # Idle buckets first, highest numbers first; busy ones wait for a later beat.
                extra = sorted((b for b in held if b not in busy), reverse=True)[: len(held) - share]
                released = conn.execute(
                    text("""UPDATE work_leases SET owner = NULL, expires_at = now(), heartbeat_at = NULL
                            WHERE pool = :pool AND (pool, bucket) IN (
                                SELECT pool, bucket FROM work_leases
                                WHERE pool = :pool AND owner = :owner AND bucket = ANY(CAST(:extra AS int[]))
                                FOR UPDATE SKIP LOCKED)
                            RETURNING bucket"""),
                    {**params, "extra": extra},
                ).scalars().all()
                for b in released:
                    held.pop(b, None)
                if released:
                    log.info("released buckets", extra={"pool": self.pool, "buckets": sorted(released), "share": share})
            elif len(held) < share:
                claimed = conn.execute(
                    text("""UPDATE work_leases SET owner = :owner, token = token + 1, heartbeat_at = now(),
                                expires_at = now() + make_interval(secs => :ttl)
                            WHERE pool = :pool AND (pool, bucket) IN (
                                SELECT pool, bucket FROM work_leases
                                WHERE pool = :pool AND (owner IS NULL OR expires_at < now())
                                ORDER BY bucket LIMIT :wanted FOR UPDATE SKIP LOCKED)
                            RETURNING bucket, token"""),
                    {**params, "wanted": share - len(held)},
                ).all()
                held.update(dict(claimed))
                if claimed:
                    log.info("claimed buckets", extra={"pool": self.pool, "buckets": sorted(b for b, _ in claimed),
                                                       "share": share})
        with self._lock:
            self._owned = held
            self._renewed_at = time.monotonic()
        return dict(held)


class _Busy:
    def __init__(self, manager: LeaseManager, buckets: set[int]):
        self.manager, self.buckets = manager, buckets

    def __enter__(self) -> "_Busy":
        with self.manager._lock:
            self.manager._busy |= self.buckets
        return self

    def __exit__(self, *exc) -> None:
        with self.manager._lock:
            self.manager._busy -= self.buckets
