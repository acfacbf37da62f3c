"""Per-user baselines shared between the replicas of one fire (table scorer_baselines).

Peer groups and the shrinkage toward peer and tenant rates need something of
every user, but each replica scores only the users of its buckets. So a replica
loads the baselines of its own buckets, publishes them (committed at once,
outside its scoring transaction), and reads from the other replicas of the fire
what it needs of their buckets, in two passes that never hold another replica's
arrays whole:

1. collect: every user's behaviour profile (peers.behaviour_profile, about a
   fifteenth of a user's baseline arrays), for the peer clustering;
2. fetch: after clustering, one bucket's baseline arrays at a time, added into the
   peer-group sums (baseline.group_sums) and dropped.

A publication is one blob: a 16-byte prefix (header and profile lengths), a JSON
header locating each bucket's users and arrays, the profiles, then one npz per
bucket. Both passes read slices of it (substring), not the whole of it.

A publication is valid for exactly one state of the data: the features version
(scorer_cursors.features_version, moved by every aggregation that changed
user_hour_features, in the same transaction), the day, the scored hours (their users
join the peer clustering), the baseline settings and the blob's format, all in
`state`. A bucket nobody publishes (its replica died, or it was scored for this
fire already) is loaded by the replica that needs it, so waiting only ever costs
time, never correctness.
"""

from __future__ import annotations

import io
import json
import struct
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
FORMAT = "bucketed-2"  # in the state: a replica of another version never reads this blob layout
_PREFIX = struct.Struct("<QQ")


@dataclass
class Shared:
    """What collect gives of one bucket: its users, their profiles, and where its arrays are."""

    users: list[str]
    profile: np.ndarray  # [U, PROFILE]
    row: list[int]  # the publication's buckets
    at: tuple[int, int]  # the bucket's arrays in the blob: offset, length


def state(conn: Connection, tenant: str, day: datetime, hours: tuple[datetime, datetime], baseline_days: int,
          min_baseline_days: int) -> str:
    """The data state a day's baselines depend on, read in the scoring transaction's snapshot."""
    version = conn.execute(text("SELECT features_version FROM scorer_cursors WHERE tenant = :tenant"),
                           {"tenant": tenant}).scalar_one_or_none()
    return "|".join([FORMAT, str(version), day.isoformat(), hours[0].isoformat(), hours[1].isoformat(),
                     str(baseline_days), str(min_baseline_days)])


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def read_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """One npz of a blob: a bucket's baseline arrays, or the profiles."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def pack(parts: dict[int, Part]) -> tuple[list[str], bytes]:
    """The users (by bucket, then name) and the blob of some buckets' parts."""
    users: list[str] = []
    profiles: list[np.ndarray] = []
    segments: list[bytes] = []
    header: dict[str, list] = {"buckets": []}  # [bucket, first user, end user, offset after the profiles, length]
    at = 0
    for b in sorted(parts):
        names, arrays = parts[b]
        segment = _npz(arrays)
        header["buckets"].append([b, len(users), len(users) + len(names), at, len(segment)])
        users += names
        # Per bucket, as every replica computes it: the same bits wherever it is computed.
        profiles.append(behaviour_profile(arrays))
        segments.append(segment)
        at += len(segment)
    head = json.dumps(header).encode()
    profile = _npz({"profile": np.vstack(profiles)})
    return users, b"".join([_PREFIX.pack(len(head), len(profile)), head, profile, *segments])


def publish(auto: Connection, tenant: str, key: str, run_id, n: int, buckets: list[int], users: list[str],
            blob: bytes) -> None:
    """Commits the pack() of `buckets` (of N) for `key`; `auto` is an autocommit connection.

    The same buckets in the same state are the same arrays, whoever loaded them: the
    first publication stands.
    """
    auto.execute(text("DELETE FROM scorer_baselines WHERE tenant = :tenant AND created_at < now() - :keep"),
                 {"tenant": tenant, "keep": KEEP})
    auto.execute(
        text("""INSERT INTO scorer_baselines (tenant, state, buckets, n, run_id, users, arrays)
                VALUES (:tenant, :state, :buckets, :n, :run_id, :users, :arrays)
                ON CONFLICT (tenant, state, buckets) DO NOTHING"""),
        {"tenant": tenant, "state": key, "buckets": sorted(buckets), "n": n, "run_id": str(run_id),
         "users": users, "arrays": blob},
    )


def _slice(auto: Connection, tenant: str, key: str, n: int, row: list[int], offset: int,
           length: int) -> bytes | None:
    """Bytes [offset, offset + length) of a publication's blob; None once it is gone."""
    blob = auto.execute(
        text("""SELECT substring(arrays FROM :start FOR :length) FROM scorer_baselines
                WHERE tenant = :tenant AND state = :state AND n = :n AND buckets = CAST(:row AS int[])"""),
        {"tenant": tenant, "state": key, "n": n, "row": row, "start": offset + 1, "length": length},
    ).scalar_one_or_none()
    return None if blob is None else bytes(blob)


def read_index(row: list[int], users: list[str], start: bytes) -> dict[int, Shared]:
    """The buckets of a publication from its first bytes (prefix, header and profiles)."""
    head_len, profile_len = _PREFIX.unpack(start[:_PREFIX.size])
    header = json.loads(start[_PREFIX.size:_PREFIX.size + head_len])
    base = _PREFIX.size + head_len + profile_len
    profiles = read_arrays(start[_PREFIX.size + head_len:base])["profile"]
    return {b: Shared(list(users[u0:u1]), profiles[u0:u1], row, (base + offset, length))
            for b, u0, u1, offset, length in header["buckets"]}


def _published(auto: Connection, tenant: str, key: str, n: int, missing: set[int]) -> dict[int, Shared]:
    rows = auto.execute(
        text("""SELECT buckets, users, substring(arrays FROM 1 FOR :prefix) FROM scorer_baselines
                WHERE tenant = :tenant AND state = :state AND n = :n AND buckets && CAST(:missing AS int[])"""),
        {"tenant": tenant, "state": key, "n": n, "missing": sorted(missing), "prefix": _PREFIX.size},
    ).all()
    found: dict[int, Shared] = {}
    for row, users, prefix in rows:
        row = list(row)
        if not (missing - set(found)).intersection(row):
            continue
        head_len, profile_len = _PREFIX.unpack(bytes(prefix))
        start = _slice(auto, tenant, key, n, row, 0, _PREFIX.size + head_len + profile_len)
        if start is None:
            continue
        for b, one in read_index(row, users, start).items():
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
            lost = sorted(missing - awaited)
            users, blob = pack(load(lost))
            publish(auto, tenant, key, run_id, n, lost, users, blob)
            shared.update(read_index(lost, users, blob))
            missing &= awaited
        if missing:
            time.sleep(POLL_SECONDS)
    return shared


def fetch(auto: Connection, tenant: str, key: str, n: int, one: Shared) -> dict[str, np.ndarray] | None:
    """The baseline arrays of a collected bucket; None if its publication is gone (past KEEP)."""
    blob = _slice(auto, tenant, key, n, one.row, *one.at)
    return None if blob is None else read_arrays(blob)
