"""Per-user baselines shared between the replicas of one fire (table scorer_baselines).

Peer groups and the shrinkage toward peer and tenant rates need every user's
baseline sums, but each replica scores only the users of its buckets. So a
replica loads the baselines of its own buckets, publishes them (committed at
once, outside its scoring transaction), and reads the other buckets' from the
other replicas of the fire. Loading them from user_hour_features means scanning
and summing weeks of hourly JSON; reading them back is a few small blobs.

A publication is valid for exactly one state of the data: the features version
(scorer_cursors.features_version, moved by every aggregation that changed
user_hour_features, in the same transaction), the day, the scored hours (their users
join the peer clustering) and the baseline settings, all in `state`. A bucket
nobody publishes (its replica died, or it was scored for this fire already) is
loaded by the replica that needs it, so waiting only ever costs time, never
correctness.
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, text

from services.scorer.baseline import BASELINE_ARRAYS

POLL_SECONDS = 0.2
WAIT_LIMIT_SECONDS = 300.0  # a live replica that takes longer than this is loaded for, not waited for
KEEP = timedelta(hours=1)  # publications only serve the fire being scored

Part = tuple[list[str], dict[str, np.ndarray]]


def state(conn: Connection, tenant: str, day: datetime, hours: tuple[datetime, datetime], baseline_days: int,
          min_baseline_days: int) -> str:
    """The data state a day's baselines depend on, read in the scoring transaction's snapshot."""
    version = conn.execute(text("SELECT features_version FROM scorer_cursors WHERE tenant = :tenant"),
                           {"tenant": tenant}).scalar_one_or_none()
    return "|".join([str(version), day.isoformat(), hours[0].isoformat(), hours[1].isoformat(),
                     str(baseline_days), str(min_baseline_days)])


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **{name: arrays[name] for name in BASELINE_ARRAYS})
    return out.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {name: z[name] for name in BASELINE_ARRAYS}


def publish(auto: Connection, tenant: str, key: str, run_id, n: int, buckets: list[int], part: Part) -> None:
    """Commits the baselines of `buckets` (of N) for `key`; `auto` is an autocommit connection.

    The same buckets in the same state are the same arrays, whoever loaded them: the
    first publication stands.
    """
    users, arrays = part
    auto.execute(text("DELETE FROM scorer_baselines WHERE tenant = :tenant AND created_at < now() - :keep"),
                 {"tenant": tenant, "keep": KEEP})
    auto.execute(
        text("""INSERT INTO scorer_baselines (tenant, state, buckets, n, run_id, users, arrays)
                VALUES (:tenant, :state, :buckets, :n, :run_id, :users, :arrays)
                ON CONFLICT (tenant, state, buckets) DO NOTHING"""),
        {"tenant": tenant, "state": key, "buckets": sorted(buckets), "n": n, "run_id": str(run_id),
         "users": users, "arrays": _pack(arrays)},
    )


def _published(auto: Connection, tenant: str, key: str, n: int, missing: set[int]) -> list[tuple[list[int], Part]]:
    rows = auto.execute(
        text("""SELECT buckets, users, arrays FROM scorer_baselines
                WHERE tenant = :tenant AND state = :state AND n = :n AND buckets && CAST(:missing AS int[])"""),
        {"tenant": tenant, "state": key, "n": n, "missing": sorted(missing)},
    ).all()
    return [(list(b), (list(u), _unpack(bytes(a)))) for b, u, a in rows]


def _awaited(auto: Connection, tenant: str, run_id, buckets: set[int], have: set[int], fire: datetime) -> set[int]:
    """Those of `buckets` that another run of this fire is scoring while its replica holds them.

    Not a run that also covers one of `have`: it waits for this run's bucket locks (a
    rebalance moved the bucket in between), so it cannot publish before this run commits.
    """
    return set(auto.execute(
        text("""SELECT DISTINCT l.bucket FROM scoring_runs r
                CROSS JOIN LATERAL jsonb_array_elements_text(r.figures -> 'buckets') AS b(v)
                JOIN work_leases l ON l.pool = 'scorer' AND l.bucket = b.v::int
                WHERE r.tenant = :tenant AND r.status = 'running' AND r.id <> CAST(:run_id AS uuid)
                  AND r.figures ->> 'fire' = :fire AND l.owner = r.figures ->> 'owner' AND l.expires_at > now()
                  AND l.bucket = ANY(CAST(:buckets AS int[]))
                  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(r.figures -> 'buckets') AS o(v)
                                  WHERE o.v::int = ANY(CAST(:have AS int[])))"""),
        {"tenant": tenant, "run_id": str(run_id), "buckets": sorted(buckets), "have": sorted(have),
         "fire": fire.isoformat()},
    ).scalars())


def collect(auto: Connection, tenant: str, key: str, run_id, n: int, have: set[int], fire: datetime,
            load) -> list[Part]:
    """The baselines of every bucket not in `have`: published ones, waited for while other runs of
    this fire are scoring them, the rest loaded here with `load(buckets) -> Part` and published."""
    parts: list[Part] = []
    missing = set(range(n)) - have
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while missing:
        # Who is still working first: a run that finishes in between has published before.
        awaited = _awaited(auto, tenant, run_id, missing, have, fire) if time.monotonic() < deadline else set()
        for buckets, part in _published(auto, tenant, key, n, missing):
            if missing & set(buckets):
                parts.append(part)
                missing -= set(buckets)
        if missing - awaited:
            lost = sorted(missing - awaited)
            part = load(lost)
            publish(auto, tenant, key, run_id, n, lost, part)
            parts.append(part)
            missing &= awaited
        if missing:
            time.sleep(POLL_SECONDS)
    return parts
