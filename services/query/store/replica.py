"""Where a read goes: the streaming read replica (UEBA_QUERY_READ_DATABASE_URL) or the primary (README: read replica)."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, text

from services.query.store.reads import Reads
from ueba.worker import PeriodicWorker

log = logging.getLogger(__name__)

LAG_SECONDS = Gauge(
    "ueba_query_replica_lag_seconds", "How far the read replica's replay is behind the primary", multiprocess_mode="livemax"
)
LAG_BYTES = Gauge("ueba_query_replica_lag_bytes", "WAL the read replica has not replayed yet", multiprocess_mode="livemax")
REPLICA_UP = Gauge("ueba_query_replica_up", "1 while the last replica sample succeeded", multiprocess_mode="livemin")
READS = Counter("ueba_query_reads_total", "Read calls by the database that served them", ["database"])
ON_REPLICA, ON_PRIMARY = READS.labels("replica"), READS.labels("primary")

# A sample older than this many intervals means the sampler is stuck on a hanging replica.
OUTDATED_INTERVALS = 5

_PRIMARY_POSITION = text("SELECT pg_current_wal_lsn()::text")
_REPLAY_POSITION = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8"
)


def parse_lsn(lsn: str) -> int:
    """A WAL position 'X/Y' as one number, so that positions compare and subtract."""
    high, _sep, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class ReplayPosition:
    taken: float  # time.monotonic() of the sample
    replayed: int  # WAL position the replica has replayed (math.inf when the read database is no standby)
    lag_seconds: float
    lag_bytes: int


def replay_position(primary_lsn: int, in_recovery: bool, replay_lsn: str | None, since_replay: float | None,
                    taken: float) -> ReplayPosition:
    """The sample from the two servers' answers (the primary's asked first)."""
    if not in_recovery or replay_lsn is None:
        # The read URL names a database that replays nothing (the primary itself, a pooler in front of it).
        return ReplayPosition(taken, math.inf, 0.0, 0)
    replayed = parse_lsn(replay_lsn)
    if replayed >= primary_lsn:
        return ReplayPosition(taken, replayed, 0.0, 0)
    # Behind: as old as the last transaction it replayed (unknown before the first one: too old).
    lag = math.inf if since_replay is None else max(0.0, since_replay)
    return ReplayPosition(taken, replayed, lag, primary_lsn - replayed)


def replica_usable(sample: ReplayPosition | None, written: int | None, max_lag: float, max_age: float, now: float) -> bool:
    """Whether a read may go to the replica: a fresh sample, lag within bounds, the tenant's last write replayed."""
    if sample is None or now - sample.taken > max_age:
        return False
    if max_lag > 0 and sample.lag_seconds > max_lag:
        return False
    return written is None or sample.replayed >= written


class ReadRouting(PeriodicWorker):
    """The primary's and the replica's read connections, and which one a tenant's read uses now.

    Without a replica engine every read goes to the primary and nothing is sampled.
    """

    thread_name = "query-replica-sampler"

    def __init__(self, primary: Engine, pool_size: int, replica: Engine | None = None, max_lag: float = 30.0,
                 interval: float = 0.5):
        self.primary = primary
        self.primary_reads = Reads(primary, pool_size)
        self.replica = replica
        self.replica_reads = Reads(replica, pool_size) if replica is not None else None
        self.max_lag = max_lag
        self.interval = interval
        self._lock = threading.Lock()
        self._sample: ReplayPosition | None = None
        self._written: dict[str, int] = {}  # tenant -> primary WAL position after its last write here
        super().__init__()
        self._failing = False

    # --- routing -------------------------------------------------------------------

    def _on_replica(self, tenant: str) -> bool:
        if self.replica is None:
            return False
        with self._lock:
            usable = replica_usable(self._sample, self._written.get(tenant), self.max_lag,
                                    self.interval * OUTDATED_INTERVALS, time.monotonic())
        (ON_REPLICA if usable else ON_PRIMARY).inc()
        return usable

    def reads(self, tenant: str) -> Reads:
        """The single-statement reads (store/reads.py) for this tenant's call."""
        if self.replica_reads is not None and self._on_replica(tenant):
            return self.replica_reads
        return self.primary_reads

    def engine(self, tenant: str) -> Engine:
        """The engine for this tenant's reads of several statements."""
        if self.replica is not None and self._on_replica(tenant):
            return self.replica
        return self.primary

    def wrote(self, tenant: str) -> None:
        """After a commit on the primary: the tenant reads from the primary until the replica has replayed it."""
        if self.replica is None:
            return
        with self.primary.connect() as conn:
            position = parse_lsn(conn.execute(_PRIMARY_POSITION).scalar_one())
        with self._lock:
            self._written[tenant] = max(position, self._written.get(tenant, 0))

    # --- sampling --------------------------------------------------------------------

    def sample_once(self) -> ReplayPosition:
        assert self.replica is not None
        with self.primary.connect() as conn:
            primary_lsn = parse_lsn(conn.execute(_PRIMARY_POSITION).scalar_one())
        with self.replica.connect() as conn:
            in_recovery, replay_lsn, since_replay = conn.execute(_REPLAY_POSITION).one()
        sample = replay_position(primary_lsn, in_recovery, replay_lsn, since_replay, time.monotonic())
        with self._lock:
            self._sample = sample
            self._written = {t: p for t, p in self._written.items() if p > sample.replayed}
        LAG_SECONDS.set(sample.lag_seconds)
        LAG_BYTES.set(sample.lag_bytes)
        REPLICA_UP.set(1)
        return sample

    def run_once(self) -> None:
        try:
            self.sample_once()
        except Exception:  # the replica (or the primary) is unreachable: reads use the primary meanwhile
            REPLICA_UP.set(0)
            if not self._failing:
                log.warning("read replica unavailable; reading from the primary", exc_info=True)
            self._failing = True
            return
        if self._failing:
            log.info("read replica available again")
        self._failing = False

    # Owned by the server: sampling runs while it serves, connections close when it stops.
    def start(self) -> None:
        if self.replica is None:
            return
        self.run_once()  # so that the first calls may already use the replica
        super().start()

    def stop(self) -> None:
        super().stop()
        self.primary_reads.stop()
        if self.replica_reads is not None:
            self.replica_reads.stop()
        if self.replica is not None:
            self.replica.dispose()
