"""Peer groups: the department where users have one, else clusters of baseline behaviour.

A department with at least `min_size` members is a group. Everyone else is
clustered with k-means on a normalised profile of their baseline: log rates of
every stored feature per active hour, and their share of activity by hour of
day. Clustering is seeded, so the same baseline always gives the same groups.

Scoring reads other users only through their group's sums (baseline.GroupSums),
so a replica needs of everyone else just the profile clustering sees and, one
bucket at a time, the arrays that add into the sums (Everyone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import numpy as np

from services.scorer.baseline import COLUMN, COLUMNS, GroupSums, group_sums

CLUSTER_SIZE = 20  # aim for about this many users per cluster
MAX_CLUSTERS = 50
_EVENTS = COLUMN[("login_time", "events")]
PROFILE = len(COLUMNS) + 24 + 1  # behaviour_profile's width


@dataclass
class PeerGroup:
    id: str
    name: str
    method: str  # "department" or "clustering"
    members: list[str]
    profile: dict


@dataclass
class PeerAssignment:
    group: np.ndarray  # [U] group index per user of Everyone.users
    groups: list[PeerGroup]


def behaviour_profile(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """[U, PROFILE] what clustering sees of each user, from one bucket's baseline arrays.

    Always computed per bucket (baseline_share publishes it so), so that every
    replica clusters on the same bits.
    """
    n_all, s_all, a_hod = arrays["n_all"], arrays["s_all"], arrays["a_hod"]
    n = np.maximum(n_all, 1.0)[:, None]
    rates = np.log1p(s_all / n)
    hours = a_hod / np.maximum(a_hod.sum(axis=1, keepdims=True), 1.0)
    return np.hstack([rates, hours, np.log1p(n_all)[:, None]])


def assign(users: list[str], profile: np.ndarray, departments: dict[str, str | None], min_size: int) -> PeerAssignment:
    """Groups for every user of the day (`users` sorted, `profile` their behaviour_profile rows)."""
    by_dept: dict[str, list[int]] = {}
    for i, u in enumerate(users):
        dept = (departments.get(u) or "").strip()
        if dept:
            by_dept.setdefault(dept, []).append(i)
    group = np.full(len(users), -1, dtype=np.int64)
    groups: list[PeerGroup] = []
    for dept in sorted(by_dept):
        members = by_dept[dept]
        if len(members) >= min_size:
            group[members] = len(groups)
            groups.append(PeerGroup(f"department:{dept}", dept, "department", [users[i] for i in members], {}))
    rest = np.flatnonzero(group < 0)
    if rest.size:
        k = int(min(MAX_CLUSTERS, max(1, round(rest.size / CLUSTER_SIZE))))
        if k == 1:
            labels = np.zeros(rest.size, dtype=np.int64)
        else:
            # scikit-learn is imported here, not at start: it is most of the scorer's start-up time,
            # and only departments too small to be a peer group need it.
            from sklearn.cluster import KMeans
            from sklearn.preprocessing import StandardScaler

            scaled = StandardScaler().fit_transform(profile[rest])
            labels = KMeans(n_clusters=k, n_init=3, random_state=0).fit_predict(scaled)
        for label in range(int(labels.max()) + 1):
            members = rest[labels == label]
            if members.size == 0:
                continue
            group[members] = len(groups)
            name = f"cluster {label + 1}"
            groups.append(PeerGroup(f"cluster:{label + 1}", name, "clustering", [users[i] for i in members], {}))
    return PeerAssignment(group, groups)


def describe(assignment: PeerAssignment, sums: GroupSums) -> None:
    """Each group's profile (stored in peer_groups) from its members' sums."""
    for g, pg in enumerate(assignment.groups):
        size = len(pg.members)
        n = max(sums.n_all[g], 1.0)
        pg.profile = {"active_hours_per_member": round(float(sums.n_all[g] / size), 1) if size else 0.0,
                      "events_per_active_hour": round(float(sums.s_all[g, _EVENTS] / n), 2)}


@dataclass
class Everyone:
    """What scoring some of a tenant's users reads of every user of the day, short of group sums.

    Profiles of everyone for the clustering; the baseline arrays only through
    `arrays`, one bucket at a time, so that they need not all be held at once.
    """

    users: list[str]  # sorted
    profile: np.ndarray  # [U, PROFILE]
    first_hour: np.ndarray  # [U]
    buckets: dict[int, np.ndarray]  # bucket -> its rows of `users`, in user order (buckets with users only)
    arrays: Callable[[int], dict[str, np.ndarray]]  # bucket -> its users' baseline arrays, in user order

    @property
    def nbytes(self) -> int:
        return self.profile.nbytes + self.first_hour.nbytes + sum(r.nbytes for r in self.buckets.values())

    def rows_of(self, users: list[str]) -> np.ndarray:
        index = {u: i for i, u in enumerate(self.users)}
        return np.fromiter((index[u] for u in users), dtype=np.int64, count=len(users))


def everyone(profiles: dict[int, tuple[list[str], np.ndarray]], first_hour: Callable[[list[str]], np.ndarray],
             arrays: Callable[[int], dict[str, np.ndarray]]) -> Everyone:
    """From each bucket's users (sorted) and behaviour profiles."""
    users = sorted(u for names, _ in profiles.values() for u in names)
    index = {u: i for i, u in enumerate(users)}
    profile = np.zeros((len(users), PROFILE))
    buckets = {}
    for b in sorted(profiles):
        names, rows_profile = profiles[b]
        if names:
            rows = np.fromiter((index[u] for u in names), dtype=np.int64, count=len(names))
            profile[rows] = rows_profile
            buckets[b] = rows
    return Everyone(users, profile, first_hour(users), buckets, arrays)


def peer_groups(people: Everyone, departments: dict[str, str | None], min_size: int, day: datetime,
                baseline: int) -> tuple[PeerAssignment, GroupSums]:
    """The groups of everyone and their sums, added bucket by bucket in bucket order (see GroupSums)."""
    assignment = assign(people.users, people.profile, departments, min_size)
    groups = len(assignment.groups)
    sums = GroupSums.zeros(groups)
    for b in sorted(people.buckets):
        rows = people.buckets[b]
        sums = sums.plus(group_sums(people.arrays(b), people.first_hour[rows], assignment.group[rows], groups, day,
                                    baseline))
    describe(assignment, sums)
    return assignment, sums
