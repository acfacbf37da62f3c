"""Reviews: acknowledge, resolve, mark false positive or reopen anomalies (and their incidents), and each user's risk before and after."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from services.query.filters import criteria, is_empty, parse_id
from services.query.store import review as store
from ueba.errors import FailedPrecondition, InvalidArgument, NotFound, check_text
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
class ReviewOutcome:
    updated: int  # changed, or with a dry run: would change
    risk_changes: list["RiskChange"]
    matched: int  # selected, changed or not
    already: int  # selected and already in the target status
    target: str


@dataclass
class RiskChange:
    user: str
    points_before: int
    points_after: int
    risk_before: int
    risk_after: int


def review(
    conn: Connection, tenant: str, req, actor: str, now: datetime, window_days: int, user_mode: str
) -> ReviewOutcome:
    """Reviews the anomalies `req` names, in the caller's transaction.

    With `dry_run` it only counts. With `expected_count` any other number of changed
    anomalies raises FailedPrecondition, which rolls the caller's transaction back: the
    count is checked on the rows as changed under their locks, not on an earlier read.
    """
    action = check_action(req.action)
    comment = check_text("comment", req.comment, MAX_COMMENT)
    target = TARGET_STATUS[action]
    selection = _selection(conn, tenant, req, now, user_mode)
    by_status = store.status_counts(conn, tenant, selection)
    matched = sum(by_status.values())
    if req.dry_run:
        return ReviewOutcome(matched - by_status.get(target, 0), [], matched, by_status.get(target, 0), target)
    changed, changes = apply(conn, tenant, selection, action, comment, actor, now, window_days)
    if req.HasField("expected_count") and len(changed) != req.expected_count:
        raise FailedPrecondition(
            f"expected_count: {req.expected_count} anomalies were expected to change but {len(changed)} would; "
            "the selection changed since it was counted, so nothing was changed"
        )
    return ReviewOutcome(len(changed), changes, matched, max(0, matched - len(changed)), target)


def check_action(action: int) -> int:
    if action not in TARGET_STATUS:
        raise InvalidArgument("action: give acknowledge, resolve, false positive or reopen")
    return action


def apply(
    conn: Connection, tenant: str, selection, action: int, comment: str, actor: str, now: datetime, window_days: int
) -> tuple[list, list[RiskChange]]:
    """Moves the selected anomalies to the action's status, their incidents with them, and audits it.

    Returns the changed rows and each account's risk before and after. An incident
    is open while one of its findings is: closing its last open finding gives it
    this review's status, reopening one reopens it.
    """
    target = TARGET_STATUS[action]
    reviewed = {"reviewed_by": actor, "reviewed_at": now, "review_comment": comment or None}
    if target == OPEN_STATUS:
        reviewed = {"reviewed_by": None, "reviewed_at": None, "review_comment": None}

    def write() -> list:
        changed = store.set_status(conn, tenant, selection, target, reviewed)
        if changed:
            store.sync_incidents(conn, tenant, {r.incident_id for r in changed if r.incident_id}, target, reviewed, now)
            details = {"to": target, "comment": comment, "review": str(uuid.uuid4())}
            store.record(conn, tenant, now, actor, f"anomaly.{ACTION_NAME[action]}", changed, details)
        return changed

    return with_risk_changes(conn, tenant, selection, target, now, window_days, write)


def with_risk_changes(
    conn: Connection, tenant: str, selection, target: str | None, now: datetime, window_days: int, write
) -> tuple[list, list[RiskChange]]:
    """Runs `write` (which changes the selected anomalies and returns the changed rows) between two
    readings of the risk of the accounts it touches; (changed rows, each account's risk before and after).

    `target` is the status the write moves anomalies to (those already there are not touched), None
    when it changes no status.
    """
    users = store.affected_users(conn, tenant, selection, target)
    before = open_scores(conn, tenant, now, window_days, users=users)
    changed = write()
    if not changed:
        return [], []
    users = sorted(set(users) | {r.user_name for r in changed if r.user_name})
    after = open_scores(conn, tenant, now, window_days, users=users)
    return changed, _risk_changes(users, before, after)


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


def _risk_changes(users: list[str], before: dict[str, list[int]], after: dict[str, list[int]]) -> list[RiskChange]:
    """Each account's risk before and after the review (an incident counts once, at its strongest open finding)."""
    changes = []
    for user in users:
        p_before, r_before, _ = user_risk(before.get(user, []))
        p_after, r_after, _ = user_risk(after.get(user, []))
        changes.append(RiskChange(user, p_before, p_after, r_before, r_after))
    changes.sort(key=lambda c: (c.points_after - c.points_before, c.user))
    return changes
