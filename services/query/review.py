"""ReviewAnomalies: acknowledge, resolve, mark false positive or reopen, and each user's risk before and after."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from services.query.anomalies import parse_id
from services.query.filters import criteria, is_empty
from services.query.store import review as store
from ueba.errors import InvalidArgument, NotFound, check_text
from ueba.risk import OPEN_STATUS, open_scores, user_risk
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


def review(
    conn: Connection, tenant: str, req, actor: str, now: datetime, window_days: int, user_mode: str
) -> tuple[int, list[RiskChange]]:
    """Reviews the anomalies `req` names, in the caller's transaction; (anomalies changed, risk changes)."""
    if req.action not in TARGET_STATUS:
        raise InvalidArgument("action: give acknowledge, resolve, false positive or reopen")
    comment = check_text("comment", req.comment, MAX_COMMENT)
    target = TARGET_STATUS[req.action]
    selection = _selection(conn, tenant, req, now, user_mode)
    reviewed = {"reviewed_by": actor, "reviewed_at": now, "review_comment": comment or None}
    if target == OPEN_STATUS:
        reviewed = {"reviewed_by": None, "reviewed_at": None, "review_comment": None}
    changed = store.set_status(conn, tenant, selection, target, reviewed)
    if not changed:
        return 0, []
    details = {"to": target, "comment": comment, "review": str(uuid.uuid4())}
    store.record(conn, tenant, now, actor, f"anomaly.{ACTION_NAME[req.action]}", changed, details)
    return len(changed), _risk_changes(conn, tenant, changed, target, now, window_days)


def _selection(conn: Connection, tenant: str, req, now: datetime, user_mode: str):
    """The anomaly ids of the request (all of which must exist), or the criteria of its filter."""
    if req.ids:
        if len(req.ids) > MAX_IDS:
            raise InvalidArgument(f"ids: more than {MAX_IDS}; review by filter instead")
        ids = sorted({parse_id(f"ids[{i}]", v) for i, v in enumerate(req.ids)})
        found = store.existing_ids(conn, tenant, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"ids: {len(missing)} unknown anomalies, e.g. {', '.join(missing[:3])}")
        return ids
    if not req.HasField("filter") or is_empty(req.filter):
        raise InvalidArgument("ids or filter: give anomaly ids or a filter (a range, status or query) to review")
    return criteria(req.filter, now, user_mode)


def _risk_changes(conn: Connection, tenant: str, changed, target: str, now: datetime, window_days: int) -> list[RiskChange]:
    """Each user's risk now (over the open anomalies stored) and before (plus those closed, or minus those reopened)."""
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
    return changes
