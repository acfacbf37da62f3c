"""Cases: opening one over incidents, commenting, assigning, closing (services/query/README.md, "Cases").

Every change writes a timeline entry with its actor in the same transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row

from services.query import review as reviews
from services.query.filters import parse_id
from services.query.store import cases as store
from services.query.store import incidents as incident_store
from services.query.users import keyset_page
from ueba import paging
from ueba.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, check_text
from ueba.messages import ENUM_LEVEL
from ueba.risk import risk_level
from ueba.v1 import cases_pb2, query_pb2

MAX_INCIDENTS = 100
MAX_TITLE = 300
MAX_COMMENT = 4000
MAX_OWNER = 128
OPEN_STATUSES = {cases_pb2.CASE_STATUS_NEW: "new", cases_pb2.CASE_STATUS_IN_PROGRESS: "in_progress"}
STATUSES = {**OPEN_STATUSES, cases_pb2.CASE_STATUS_CLOSED: "closed"}
REASONS = {cases_pb2.CLOSE_REASON_TRUE_POSITIVE: "true_positive", cases_pb2.CLOSE_REASON_BENIGN: "benign",
           cases_pb2.CLOSE_REASON_FALSE_POSITIVE: "false_positive"}
UPDATABLE = ("owner", "status", "severity")


@dataclass
class CaseView:
    row: Row
    incident_ids: list[str]
    comments: int


def views(conn: Connection, tenant: str, rows: list[Row]) -> list[CaseView]:
    ids = [r.id for r in rows]
    incidents = store.incident_ids(conn, tenant, ids)
    comments = store.comment_counts(conn, tenant, ids)
    return [CaseView(r, incidents[r.id], comments.get(r.id, 0)) for r in rows]


def _case(conn: Connection, tenant: str, case_id: str, lock: bool = True) -> Row:
    row = store.get(conn, tenant, parse_id("id", case_id, "a case"), lock=lock)
    if row is None:
        raise NotFound(f"case {case_id} not found")
    return row


def _severity(value: int, field: str = "severity") -> str:
    if value not in ENUM_LEVEL:
        raise InvalidArgument(f"{field}: give a risk level (low, medium, high, critical)")
    return ENUM_LEVEL[value]


def _owner(value: str) -> str:
    owner = check_text("owner", value, MAX_OWNER).strip()
    if owner and not owner.isprintable():
        raise InvalidArgument("owner: printable characters only")
    return owner


def open_case(conn: Connection, tenant: str, req, actor: str, now: datetime) -> CaseView:
    if not req.incident_ids:
        raise InvalidArgument("incident_ids: give the incidents the case is about")
    if len(req.incident_ids) > MAX_INCIDENTS:
        raise InvalidArgument(f"incident_ids: more than {MAX_INCIDENTS}")
    ids = sorted({parse_id(f"incident_ids[{n}]", v, "an incident") for n, v in enumerate(req.incident_ids)})
    found = incident_store.by_ids(conn, tenant, ids)
    missing = sorted(set(ids) - {r.id for r in found})
    if missing:
        raise NotFound(f"incident_ids: {len(missing)} unknown incidents, e.g. {', '.join(missing[:3])}")
    strongest = max(found, key=lambda r: (r.risk_score, r.last_seen))
    title = check_text("title", req.title, MAX_TITLE).strip() or strongest.title
    severity = _severity(req.severity) if req.severity else risk_level(strongest.risk_score)
    owner = _owner(req.owner)
    comment = check_text("comment", req.comment, MAX_COMMENT).strip()
    row = store.create(conn, tenant, {"title": title, "severity": severity, "owner": owner, "created_by": actor,
                                      "created_at": now, "updated_at": now})
    attached = store.attach(conn, tenant, row.id, ids)
    if len(attached) != len(ids):
        taken = store.cases_of(conn, tenant, sorted(set(ids) - set(attached)))
        incident, other = next(iter(sorted(taken.items())))
        raise AlreadyExists(f"incident_ids: incident {incident} is in case {other} already")
    store.add_entry(conn, tenant, row.id, actor, now, "opened", title,
                    {"incidents": ids, "severity": severity, "owner": owner})
    if comment:
        store.add_entry(conn, tenant, row.id, actor, now, "comment", comment)
    return CaseView(row, ids, 1 if comment else 0)


def list_cases(conn: Connection, tenant: str, req, size: int) -> tuple[list[CaseView], str]:
    statuses = []
    for n, status in enumerate(req.statuses):
        if status not in STATUSES:
            raise InvalidArgument(f"statuses[{n}]: unknown or unspecified case status {status}")
        statuses.append(STATUSES[status])
    owner = _owner(req.owner) or None
    fp = paging.fingerprint(tenant, "cases", sorted(statuses), owner)
    after = paging.decode(fp, req.page_token, (datetime, str)).key if req.page_token else None
    rows = store.page(conn, tenant, tuple(statuses), owner, after, size + 1)
    rows, token = keyset_page(rows, size, fp, lambda r: [r.updated_at, r.id])
    return views(conn, tenant, rows), token


def get_case(conn: Connection, tenant: str, case_id: str) -> tuple[CaseView, list[Row], list[Row]]:
    """(the case, its incidents, its timeline)."""
    row = _case(conn, tenant, case_id, lock=False)
    view = views(conn, tenant, [row])[0]
    return view, incident_store.by_ids(conn, tenant, view.incident_ids), store.entries(conn, tenant, row.id)


def comment(conn: Connection, tenant: str, req, actor: str, now: datetime) -> CaseView:
    text = check_text("text", req.text, MAX_COMMENT).strip()
    if not text:
        raise InvalidArgument("text: required")
    row = _case(conn, tenant, req.id)
    store.add_entry(conn, tenant, row.id, actor, now, "comment", text)
    return views(conn, tenant, [store.change(conn, tenant, row.id, {"updated_at": now})])[0]


def update(conn: Connection, tenant: str, req, actor: str, now: datetime) -> CaseView:
    """Changes the fields the mask names; a field already at its value writes nothing. A closed case
    given an open status is reopened (its findings keep the reviews the closing gave them)."""
    if not req.update_mask:
        raise InvalidArgument(f"update_mask: name the fields to change ({', '.join(UPDATABLE)})")
    unknown = [f for f in req.update_mask if f not in UPDATABLE]
    if unknown:
        raise InvalidArgument(f"update_mask: {unknown[0]!r} cannot be changed (fields: {', '.join(UPDATABLE)})")
    row = _case(conn, tenant, req.id)
    wanted = {}
    if "owner" in req.update_mask:
        wanted["owner"] = _owner(req.owner)
    if "severity" in req.update_mask:
        wanted["severity"] = _severity(req.severity)
    if "status" in req.update_mask:
        if req.status not in OPEN_STATUSES:
            raise InvalidArgument("status: give new or in progress (close a case with CloseCase)")
        wanted["status"] = OPEN_STATUSES[req.status]
    elif row.status == "closed":
        raise FailedPrecondition(f"case {row.id} is closed: reopen it (status) before changing it")
    changes = {k: v for k, v in wanted.items() if getattr(row, k) != v}
    if not changes:
        return views(conn, tenant, [row])[0]
    for field, value in sorted(changes.items()):
        kind = "assigned" if field == "owner" else field
        store.add_entry(conn, tenant, row.id, actor, now, kind, f"{field}: {getattr(row, field)!r} -> {value!r}",
                        {"from": getattr(row, field), "to": value})
    if changes.get("status") and row.status == "closed":
        changes.update(close_reason=None, closed_at=None)
    return views(conn, tenant, [store.change(conn, tenant, row.id, {**changes, "updated_at": now})])[0]


def close(conn: Connection, tenant: str, req, actor: str, now: datetime, window_days: int):
    """Closes the case; as false positive it also reviews every finding of its incidents as one.
    (the case, findings reviewed, risk changes)."""
    if req.reason not in REASONS:
        raise InvalidArgument("reason: give true positive, benign or false positive")
    reason = REASONS[req.reason]
    text = check_text("comment", req.comment, MAX_COMMENT).strip()
    row = _case(conn, tenant, req.id)
    if row.status == "closed":
        raise FailedPrecondition(f"case {row.id} is closed already (as {row.close_reason.replace('_', ' ')})")
    changed, risk_changes = [], []
    if reason == "false_positive":
        incident_ids = store.incident_ids(conn, tenant, [row.id])[row.id]
        findings = incident_store.finding_ids(conn, tenant, incident_ids)
        changed, risk_changes = reviews.apply(
            conn, tenant, findings, query_pb2.REVIEW_ACTION_FALSE_POSITIVE, text or f"case {row.id} closed as false positive",
            actor, now, window_days,
        )
        store.add_entry(conn, tenant, row.id, actor, now, "findings_reviewed",
                        f"{len(changed)} findings marked false positive",
                        {"anomalies": len(changed), "risk": [
                            {"user": c.user, "before": c.risk_before, "after": c.risk_after} for c in risk_changes]})
    store.add_entry(conn, tenant, row.id, actor, now, "closed", text, {"reason": reason, "from": row.status})
    closed = store.change(conn, tenant, row.id, {"status": "closed", "close_reason": reason, "closed_at": now,
                                                  "updated_at": now})
    return views(conn, tenant, [closed])[0], len(changed), risk_changes
