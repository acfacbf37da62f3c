"""A replica that holds a quarter of the buckets scores its users to the bit like one run over all.

No database: the replica's view of the other buckets goes through the same
publication format (baseline_share.pack_profiles, pack_arrays) and the same per-bucket group sums
(peers.peer_groups) as in a run. The data are random non-integer sums, so that
adding in another order gives other bits; the test checks that it would.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np

from services.scorer import baseline_share, peers, scoring
from services.scorer.baseline import (
    BASELINE_ARRAYS,
    COLUMNS,
    DayData,
    GroupSums,
    by_bucket,
    group_sums,
    part_of,
)
from services.scorer.models import AGGREGATED

DAY = datetime(2026, 3, 30, tzinfo=timezone.utc)
BASELINE = 30
USERS = 2_000
N = 8
OWN = (2, 5)  # a quarter of the buckets
MIN_PEER_GROUP = 5


def _tenant(rng: np.random.Generator) -> tuple[DayData, dict[str, int], dict[str, str | None]]:
    """Every user's baselines and one window hour each, a bucket per user, and departments."""
    U, J = USERS, len(COLUMNS)
    users = sorted(f"user{i:05d}" for i in range(U))
    n_all = rng.integers(0, 400, U).astype(float)
    rate = rng.gamma(0.5, 3.0, (U, J)) * rng.choice([1e-3, 1.0, 1e4], (U, J))  # counts, ratios and bytes
    s_all = rate * n_all[:, None]
    n_how = np.floor(rng.uniform(0, 4.999, (U, 24)))
    day_h = (np.datetime64(DAY.replace(tzinfo=None)) - np.datetime64("1970-01-01T00:00:00")) / np.timedelta64(1, "h")
    data = DayData(
        day=DAY, users=users, first_hour=day_h - rng.uniform(0, 60 * 24, U),
        n_all=n_all, s_all=s_all, q_all=s_all * rate * rng.uniform(1.0, 3.0, (U, J)),
        n_set=np.floor(n_all * rng.uniform(0, 1, U)), s_set=s_all * rng.uniform(0, 0.1, (U, J)),
        n_how=n_how, s_how=n_how[:, :, None] * rate[:, None, :] * rng.uniform(0.5, 1.5, (U, 24, J)),
        a_hod=np.floor(rng.uniform(0, 30, (U, 24))),
        w_user=np.arange(U), w_hour=rng.integers(0, 24, U),
    )
    data.w_time = [DAY.replace(hour=int(h)) for h in data.w_hour]
    data.x = np.floor(rate * rng.uniform(0, 3, (U, J)))
    data.present = {m.name: rng.uniform(0, 1, U) < 0.8 for m in AGGREGATED}
    bucket = {u: int(b) for u, b in zip(users, rng.integers(0, N, U))}
    # Big departments are groups; small ones and no department are clustered.
    departments = {u: (f"dept{int(d)}" if d < 30 else None) for u, d in zip(users, rng.integers(0, 60, U))}
    departments.update({u: "tiny" for u in users[:3]})
    return data, bucket, departments


def _subset(data: DayData, rows: np.ndarray) -> DayData:
    """The users of `rows` with their window rows, as load_day of their buckets returns them."""
    keep = np.flatnonzero(np.isin(data.w_user, rows))
    remap = np.full(len(data.users), -1, dtype=np.int64)
    remap[rows] = np.arange(rows.size)
    return dataclasses.replace(
        data, users=[data.users[i] for i in rows], first_hour=data.first_hour[rows],
        **{name: getattr(data, name)[rows] for name in BASELINE_ARRAYS},
        w_user=remap[data.w_user[keep]], w_hour=data.w_hour[keep], w_time=[data.w_time[i] for i in keep],
        x=data.x[keep], present={m: p[keep] for m, p in data.present.items()})


def _first_hour(data: DayData):
    index = {u: i for i, u in enumerate(data.users)}
    return lambda users: data.first_hour[[index[u] for u in users]]


def _everyone(data: DayData, rows: dict[int, np.ndarray], first_hour) -> peers.Everyone:
    """Every bucket from `data` itself, as a run over every bucket sees it (runs.Scorer._load_day)."""
    def arrays(b):
        return part_of(data, rows[b])[1]

    profiles = {b: ([data.users[i] for i in r], peers.behaviour_profile(arrays(b))) for b, r in rows.items()}
    return peers.everyone(profiles, first_hour, arrays)


def _replica(data: DayData, rows: dict[int, np.ndarray], first_hour) -> tuple[DayData, peers.Everyone, list[int]]:
    """The own buckets held whole; the others through their publication, one bucket's arrays at a time."""
    own = _subset(data, np.sort(np.concatenate([rows[b] for b in OWN])))
    own_rows = by_bucket(own.users, {u: b for b in OWN for u in (data.users[i] for i in rows[b])})
    others = [b for b in range(N) if b not in OWN]
    # What collect gives of the others (users and profiles, as their publication holds them) ...
    users, blob = baseline_share.pack_profiles({b: part_of(data, rows[b]) for b in others})
    shared = baseline_share.read_index(users, blob)
    del users, blob
    fetched: list[int] = []

    def arrays(b):
        if b in OWN:
            return part_of(own, own_rows[b])[1]
        # ... and what fetch gives: one bucket's published arrays.
        got = baseline_share.read_arrays(baseline_share.pack_arrays(part_of(data, rows[b])[1]))
        fetched.append(sum(a.nbytes for a in got.values()))
        return got

    profiles = {b: ([own.users[i] for i in r], peers.behaviour_profile(part_of(own, r)[1]))
                for b, r in own_rows.items()}
    profiles.update((b, (one.users, one.profile)) for b, one in shared.items())
    return own, peers.everyone(profiles, first_hour, arrays), fetched


def _rates(data: DayData, people: peers.Everyone, departments):
    assignment, sums = peers.peer_groups(people, departments, MIN_PEER_GROUP, DAY, BASELINE)
    rates = scoring.shrunk_rates(data, assignment.group[people.rows_of(data.users)], sums, BASELINE)
    return assignment, sums, rates


def test_a_quarter_replica_scores_its_users_bit_for_bit_like_a_full_run_and_holds_about_a_quarter():
    data, bucket, departments = _tenant(np.random.default_rng(7))
    rows = by_bucket(data.users, bucket)
    first_hour = _first_hour(data)

    full_people = _everyone(data, rows, first_hour)
    full_assignment, full_sums, full_rates = _rates(data, full_people, departments)
    own, people, fetched = _replica(data, rows, first_hour)
    assignment, sums, rates = _rates(own, people, departments)

    # The same groups, the same sums, and for the replica's users the same rates and scores.
    assert np.array_equal(assignment.group, full_assignment.group)
    assert [g.profile for g in assignment.groups] == [g.profile for g in full_assignment.groups]
    assert len(assignment.groups) > 20 and any(g.method == "clustering" for g in assignment.groups)
    for f in dataclasses.fields(GroupSums):
        assert np.array_equal(getattr(sums, f.name), getattr(full_sums, f.name)), f.name
    mine = full_people.rows_of(own.users)
    for f in dataclasses.fields(scoring.Rates):
        assert np.array_equal(getattr(rates, f.name), getattr(full_rates, f.name)[mine]), f.name
    own_scores = scoring.score_day(own, rates, np.arange(own.w_user.size))
    full_window = np.flatnonzero(np.isin(data.w_user, mine))
    full_scores = scoring.score_day(data, full_rates, full_window)
    assert [s.model.name for s in own_scores] == [s.model.name for s in full_scores]
    for a, b in zip(own_scores, full_scores):
        assert np.array_equal(a.score, b.score)
        assert np.array_equal(a.expected, b.expected) and np.array_equal(a.share, b.share)

    # The data make order matter: the replica's own buckets added first would give other bits.
    group = full_assignment.group
    reordered = GroupSums.zeros(len(full_assignment.groups))
    for b in [*OWN, *(b for b in range(N) if b not in OWN)]:
        r = rows[b]
        reordered = reordered.plus(group_sums(part_of(data, r)[1], data.first_hour[r], group[r],
                                              len(full_assignment.groups), DAY, BASELINE))
    assert not np.array_equal(reordered.s_how, full_sums.s_how)

    # Memory: numpy arrays a day holds (runs' figure `baseline_bytes`).
    full_bytes = data.baseline_nbytes + full_people.nbytes + full_sums.nbytes
    replica_bytes = own.baseline_nbytes + people.nbytes + sums.nbytes
    share = len(own.users) / len(data.users)
    print(f"\n{USERS} users, {N} buckets, replica holds {len(OWN)}: {len(own.users)} users ({share:.3f}); "
          f"full run {full_bytes:,} B (baseline arrays {data.baseline_nbytes:,}), replica {replica_bytes:,} B "
          f"(own arrays {own.baseline_nbytes:,}, everyone's profiles {people.nbytes:,}, group sums {sums.nbytes:,}) "
          f"= {replica_bytes / full_bytes:.3f} of the full run; one other bucket's arrays at a time while "
          f"summing, at most {max(fetched):,} B")
    assert replica_bytes < (share + 0.1) * full_bytes
    assert max(fetched) < 0.2 * data.baseline_nbytes
