"""Peer groups: the department where users have one, else clusters of baseline behaviour.

A department with at least `min_size` members is a group. Everyone else is
clustered with k-means on a normalised profile of their baseline: log rates of
every stored feature per active hour, and their share of activity by hour of
day. Clustering is seeded, so the same baseline always gives the same groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from services.scorer.baseline import DayData

CLUSTER_SIZE = 20  # aim for about this many users per cluster
MAX_CLUSTERS = 50


@dataclass
class PeerGroup:
    id: str
    name: str
    method: str  # "department" or "clustering"
    members: list[str]
    profile: dict


@dataclass
class PeerAssignment:
    group: np.ndarray  # [U] group index per user of the day's data
    groups: list[PeerGroup]


def behaviour_profile(data: DayData) -> np.ndarray:
    n = np.maximum(data.n_all, 1.0)[:, None]
    rates = np.log1p(data.s_all / n)
    hours = data.a_hod / np.maximum(data.a_hod.sum(axis=1, keepdims=True), 1.0)
    return np.hstack([rates, hours, np.log1p(data.n_all)[:, None]])


def assign(data: DayData, departments: dict[str, str | None], min_size: int) -> PeerAssignment:
    users = data.users
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
            profile = StandardScaler().fit_transform(behaviour_profile(data)[rest])
            labels = KMeans(n_clusters=k, n_init=3, random_state=0).fit_predict(profile)
        for label in range(int(labels.max()) + 1):
            members = rest[labels == label]
            if members.size == 0:
                continue
            group[members] = len(groups)
            name = f"cluster {label + 1}"
            groups.append(PeerGroup(f"cluster:{label + 1}", name, "clustering", [users[i] for i in members], {}))
    for g, pg in enumerate(groups):
        members = group == g
        n = max(data.n_all[members].sum(), 1.0)
        pg.profile = {"active_hours_per_member": round(float(data.n_all[members].mean()), 1) if members.any() else 0.0,
                      "events_per_active_hour": round(float(data.s_all[members].sum(0)[_events_column()] / n), 2)}
    return PeerAssignment(group, groups)


def _events_column() -> int:
    from services.scorer.baseline import COLUMN

    return COLUMN[("login_time", "events")]
