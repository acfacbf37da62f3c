"""Per-user baselines shared between the replicas of one fire (tables scorer_baselines,
scorer_baseline_buckets).

Peer groups and the shrinkage toward peer and tenant rates need something of
every user, but each replica scores only the users of its buckets. So a replica
loads the baselines of its own buckets, publishes them (committed at once,
outside its scoring transaction), and reads from the other replicas of the fire
what it needs of their buckets, in two passes that never hold another replica's
arrays whole:

1. collect: every user's behaviour profile (peers.behaviour_profile, 51 numbers
   against a user's 752 of baseline arrays), for the peer clustering; a row of
   scorer_baselines per published set of buckets holds its users and profiles;
2. fetch: after clustering, one bucket's baseline arrays at a time (a row of
   scorer_baseline_buckets each), added into the peer-group sums
   (baseline.group_sums) and dropped.

A publication is valid for exactly one state of the data: the features version
(scorer_cursors.features_version, moved by every aggregation that changed
user_hour_features, in the same transaction), the day, the scored hours (their users
join the peer clustering), the baseline settings and the layout of what is
published, all in `state`. A bucket nobody publishes (its replica died, or it was
scored for this fire already) is loaded by the replica that needs it, so waiting
only ever costs time, never correctness.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import numpy as np
from sqlalchemy import Connection, text

from services.scorer.baseline import Part
from services.scorer.peers import behaviour_profile

POLL_SECONDS = 0.2
WAIT_LIMIT_SECONDS = 300.0  # a live replica that takes longer than this is loaded for, not waited for
KEEP = timedelta(hours=1)  # publications only serve the fire being scored
FORMAT = "bucket-rows"  # in the state: a replica of another version never reads this layout


@dataclass
class Shared:
    """What collect gives of one bucket: its users and their profiles (the arrays: fetch)."""

    users: list[str]
    profile: np.ndarray  # [U, PROFILE]


def state(conn: Connection, tenant: str, day: datetime, hours: tuple[datetime, datetime], baseline_days: int,
          min_baseline_days: int) -> str:
    """The data state a day's baselines depend on, read in the scoring transaction's snapshot."""
    version = conn.execute(text("SELECT features_version FROM scorer_cursors WHERE tenant = :tenant"),
                           {"tenant": tenant}).scalar_one_or_none()
    return "|".join([FORMAT, str(version), day.isoformat(), hours[0].isoformat(), hours[1].isoformat(),
                     str(baseline_days), str(min_baseline_days)])


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def read_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """An npz as published: a bucket's baseline arrays, or a set of buckets' profiles."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def pack_profiles(parts: dict[int, Part]) -> tuple[list[str], bytes]:
    """The users (by bucket, then name) of some buckets' parts and the npz of their profiles."""
    users: list[str] = []
    spans, profiles = [], []
    for b in sorted(parts):
        names, arrays = parts[b]
        spans.append((b, len(users), len(users) + len(names)))
        users += names
        # Per bucket, as every replica computes it: the same bits wherever it is computed.
        profiles.append(behaviour_profile(arrays))
    spans_array = np.array(spans, dtype=np.int64).reshape(-1, 3)  # bucket, first user, end user
    return users, pack_arrays({"profile": np.vstack(profiles), "spans": spans_array})


def read_index(users: list[str], blob: bytes) -> dict[int, Shared]:
    """The buckets of a publication: their users and profiles."""
    z = read_arrays(blob)
    return {int(b): Shared(list(users[u0:u1]), z["profile"][u0:u1]) for b, u0, u1 in z["spans"].tolist()}


def publish(auto: Connection, tenant: str, key: str, run_id, n: int, parts: dict[int, Part]) -> dict[int, Shared]:
    """Commits `parts`, one per bucket asked for (empty or not), of N for `key`, and returns what
    collect gives of them; `auto` is an autocommit connection.

    The arrays go first, a bucket with users at a time: whoever sees the profiles
    finds the arrays. The same buckets in the same state are the same arrays, whoever loaded
    them: the first publication stands.
    """
    for table in ("scorer_baselines", "scorer_baseline_buckets"):
        auto.execute(text(f"DELETE FROM {table} WHERE tenant = :tenant AND created_at < now() - :keep"),
                     {"tenant": tenant, "keep": KEEP})
    for b in sorted(b for b, (names, _) in parts.items() if names):
        auto.execute(
            text("""INSERT INTO scorer_baseline_buckets (tenant, state, n, bucket, arrays)
                    VALUES (:tenant, :state, :n, :bucket, :arrays)
                    ON CONFLICT (tenant, state, n, bucket) DO NOTHING"""),
            {"tenant": tenant, "state": key, "n": n, "bucket": b, "arrays": pack_arrays(parts[b][1])},
        )
    users, profiles = pack_profiles(parts)
    auto.execute(
        text("""INSERT INTO scorer_baselines (tenant, state, buckets, n, run_id, users, arrays)
                VALUES (:tenant, :state, :buckets, :n, :run_id, :users, :arrays)
                ON CONFLICT (tenant, state, buckets) DO NOTHING"""),
        {"tenant": tenant, "state": key, "buckets": sorted(parts), "n": n, "run_id": str(run_id),
         "users": users, "arrays": profiles},
    )
    return read_index(users, profiles)


def _published(auto: Connection, tenant: str, key: str, n: int, missing: set[int]) -> dict[int, Shared]:
    rows = auto.execute(
        text("""SELECT users, arrays FROM scorer_baselines
                WHERE tenant = :tenant AND state = :state AND n = :n AND buckets && CAST(:missing AS int[])"""),
        {"tenant": tenant, "state": key, "n": n, "missing": sorted(missing)},
    ).all()
    found: dict[int, Shared] = {}
    for users, profiles in rows:
        for b, one in read_index(users, bytes(profiles)).items():
            if b in missing:
                found.setdefault(b, one)
    return found


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
            load: Callable[[list[int]], dict[int, Part]]) -> dict[int, Shared]:
    """Users and profiles of every bucket not in `have`: published ones, waited for while other
    runs of this fire are scoring them, the rest loaded here with `load(buckets) -> {bucket: Part}`
    (every bucket asked for, empty or not) and published."""
    shared: dict[int, Shared] = {}
    missing = set(range(n)) - have
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while missing:
        # Who is still working first: a run that finishes in between has published before.
        awaited = _awaited(auto, tenant, run_id, missing, have, fire) if time.monotonic() < deadline else set()
        found = _published(auto, tenant, key, n, missing)
        shared.update(found)
        missing -= set(found)
        if missing - awaited:
            shared.update(publish(auto, tenant, key, run_id, n, load(sorted(missing - awaited))))
            missing &= awaited
        if missing:
            time.sleep(POLL_SECONDS)
    return shared


def fetch(auto: Connection, tenant: str, key: str, n: int, bucket: int) -> dict[str, np.ndarray] | None:
    """The baseline arrays of a collected bucket; None if its publication is gone (past KEEP)."""
    blob = auto.execute(
        text("""SELECT arrays FROM scorer_baseline_buckets
                WHERE tenant = :tenant AND state = :state AND n = :n AND bucket = :bucket"""),
        {"tenant": tenant, "state": key, "n": n, "bucket": bucket},
    ).scalar_one_or_none()
    return None if blob is None else read_arrays(bytes(blob))
