"""ReviewAnomalies: acknowledge, resolve, mark false positive or reopen, with an audit trail.

One transaction locks the anomalies, changes their status, writes one audit_log
row per anomaly and works out each affected user's risk after the change
(ueba.risk over the open anomalies now stored) and before it (the same scores
plus those this review closed, or minus those it reopened).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from services.query.anomalies import parse_id
from ueba.errors import InvalidArgument, NotFound, check_text
from services.query.filters import anomaly_conditions, is_empty
from ueba.risk import OPEN_STATUS, open_scores, user_risk
from ueba.store.schema import anomalies, audit_log
from ueba.v1 import query_pb2

TARGET_STATUS = {
    query_pb2.REVIEW_ACTION_ACKNOWLEDGE: "acknowledged",
    query_pb2.REVIEW_ACTION_RESOLVE: "resolved",
    query_pb2.REVIEW_ACTION_FALSE_POSITIVE: "false_positive",
    query_pb2.REVIEW_ACTION_REOPEN: OPEN_STATUS,
}
ACTION_NAME = {
    query_pb2.REVIEW_ACTION_ACKNOWLEDGE: "acknowledge",
    query_pb2.REVIEW_ACTION_RESOLVE: "resolve",
    query_pb2.REVIEW_ACTION_FALSE_POSITIVE: "false_positive",
    query_pb2.REVIEW_ACTION_REOPEN: "reopen",
}
MAX_IDS = 10000
MAX_COMMENT = 2000


@dataclass
class RiskChange:
    user: str
    points_before: int
    points_after: int
    risk_before: int
    risk_after: int


def _without(scores: list[int], removed: list[int]) -> list[int]:
    left = list(scores)
    for s in removed:
        if s in left:  # a concurrent change may have closed it again
            left.remove(s)
    return left


def review(conn: Connection, tenant: str, req, actor: str, now: datetime, window_days: int) -> tuple[int, list[RiskChange]]:
    if req.action not in TARGET_STATUS:
        raise InvalidArgument("action: give acknowledge, resolve, false positive or reopen")
    comment = check_text("comment", req.comment, MAX_COMMENT)
    target = TARGET_STATUS[req.action]
    a = anomalies.c
    if req.ids:
        if len(req.ids) > MAX_IDS:
            raise InvalidArgument(f"ids: more than {MAX_IDS}; review by filter instead")
        ids = sorted({parse_id(f"ids[{i}]", v) for i, v in enumerate(req.ids)})
        found = set(conn.execute(select(a.id).where(a.tenant == tenant, a.id.in_(ids))).scalars())
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"ids: {len(missing)} unknown anomalies, e.g. {', '.join(missing[:3])}")
        conditions = [a.tenant == tenant, a.id.in_(ids)]
    else:
        if not req.HasField("filter") or is_empty(req.filter):
            raise InvalidArgument("ids or filter: give anomaly ids or a filter (a range, status or query) to review")
        conditions = anomaly_conditions(req.filter, tenant, now)
    old = (
        select(a.id, a.status.label("old_status"))
        .where(*conditions, a.status != target)
        .order_by(a.id)  # lock in one order so concurrent reviews cannot deadlock
        .with_for_update()
        .subquery("old")
    )
    reviewed = {"reviewed_by": actor, "reviewed_at": now, "review_comment": comment or None}
    if target == OPEN_STATUS:
        reviewed = {"reviewed_by": None, "reviewed_at": None, "review_comment": None}
    changed = conn.execute(
        update(anomalies)
        .where(a.id == old.c.id)
        .values(status=target, **reviewed)
        .returning(a.id, a.user_name, a.risk_score, a.time, old.c.old_status)
    ).all()
    if not changed:
        return 0, []
    batch = str(uuid.uuid4())
    action = f"anomaly.{ACTION_NAME[req.action]}"
    conn.execute(
        insert(audit_log),
        [
            {
                "tenant": tenant,
                "at": now,
                "actor": actor,
                "action": action,
                "target": row.id,
                "details": {"user": row.user_name, "from": row.old_status, "to": target, "comment": comment, "review": batch},
            }
            for row in changed
        ],
    )
    # Scores whose counting toward risk this review switched off (or on, for reopen).
    horizon = now - timedelta(days=window_days)
    switched: dict[str, list[int]] = defaultdict(list)
    for row in changed:
        if row.time > horizon and (row.old_status == OPEN_STATUS) != (target == OPEN_STATUS):
            switched[row.user_name].append(row.risk_score)
    users = sorted({row.user_name for row in changed})
    after = open_scores(conn, tenant, now, window_days, users=users)
    changes = []
    for user in users:
        now_scores = after.get(user, [])
        moved = switched.get(user, [])
        before_scores = _without(now_scores, moved) if target == OPEN_STATUS else now_scores + moved
        p_before, r_before, _ = user_risk(before_scores)
        p_after, r_after, _ = user_risk(now_scores)
        changes.append(RiskChange(user, p_before, p_after, r_before, r_after))
    changes.sort(key=lambda c: (c.points_after - c.points_before, c.user))
    return len(changed), changes
