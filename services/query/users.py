"""Users: the risk-ordered list, one user's detail, daily anomaly scores, the ignore list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, literal, or_, select
from sqlalchemy.dialects.postgresql import distinct_on, insert

from services.query import paging
from services.query.errors import InvalidArgument, NotFound, check_text
from services.query.filters import like_pattern, not_ignored
from services.query.summary import DAY, ceil_to
from services.query.vocab import ENUM_LEVEL, canonical_user, level_band
from ueba.risk import OPEN_STATUS, open_scores, user_risk
from ueba.store.schema import anomalies, audit_log, ignored_users, peer_groups, user_risk as user_risk_table, user_scores, users


def required_user(field: str, value: str) -> str:
    name = canonical_user(check_text(field, value))
    if not name:
        raise InvalidArgument(f"{field}: required")
    return name


@dataclass
class Learning:
    learning: bool
    baseline_days: int
    last_score: float
    last_day: date | None


def learning_of(first_seen: datetime | None, latest_score: Any, now: datetime, min_days: int) -> Learning:
    """The scorer's latest verdict when there is one, else baseline days since first seen."""
    days = max(0, (now - first_seen).days) if first_seen else 0
    if latest_score is not None:
        return Learning(bool(latest_score.learning), days, float(latest_score.score), latest_score.day)
    return Learning(days < min_days, days, 0.0, None)


def latest_scores(conn: Connection, tenant: str, names: list[str]) -> dict[str, Any]:
    if not names:
        return {}
    s = user_scores.c
    q = (
        select(s.user_name, s.day, s.score, s.learning)
        .where(s.tenant == tenant, s.user_name.in_(names))
        .ext(distinct_on(s.user_name))
        .order_by(s.user_name, s.day.desc())
    )
    return {row.user_name: row for row in conn.execute(q)}


def peer_group_names(conn: Connection, tenant: str) -> dict[str, str]:
    p = peer_groups.c
    return dict(conn.execute(select(p.id, p.name).where(p.tenant == tenant)).all())


# --- ListUsers -------------------------------------------------------------

def list_users(conn: Connection, tenant: str, req, size: int):
    u = select(users).where(users.c.tenant == tenant).subquery("u")
    r = select(user_risk_table).where(user_risk_table.c.tenant == tenant).subquery("r")
    name = func.coalesce(u.c.user_name, r.c.user_name)
    risk = func.coalesce(r.c.risk, 0)
    points = func.coalesce(r.c.points, 0)
    q = select(
        name.label("user_name"),
        risk.label("risk"),
        points.label("points"),
        func.coalesce(r.c.open_anomalies, 0).label("open_anomalies"),
        u.c.department,
        u.c.peer_group_id,
        u.c.first_seen,
        u.c.last_seen,
    ).select_from(u.join(r, u.c.user_name == r.c.user_name, full=True))
    if req.min_risk_level:
        if req.min_risk_level not in ENUM_LEVEL:
            raise InvalidArgument(f"min_risk_level: unknown risk level {req.min_risk_level}")
        q = q.where(risk >= level_band(ENUM_LEVEL[req.min_risk_level])[0])
    if req.department:
        q = q.where(func.lower(u.c.department) == check_text("department", req.department).lower())
    if req.peer_group:
        group = check_text("peer_group", req.peer_group)
        ids = select(peer_groups.c.id).where(peer_groups.c.tenant == tenant, peer_groups.c.name == group)
        q = q.where(or_(u.c.peer_group_id == group, u.c.peer_group_id.in_(ids)))
    if req.user_prefix:
        prefix = canonical_user(check_text("user_prefix", req.user_prefix))
        q = q.where(name.like(like_pattern(prefix)[1:], escape="\\"))
    if not req.include_ignored:
        q = q.where(not_ignored(literal(tenant), name))
    fp = paging.fingerprint(tenant, req.min_risk_level, req.department, req.peer_group, req.user_prefix, req.include_ignored)
    if req.page_token:
        cursor = paging.decode(fp, req.page_token, (int, int, str))
        r0, p0, n0 = cursor.key
        q = q.where(or_(risk < r0, and_(risk == r0, points < p0), and_(risk == r0, points == p0, name > n0)))
    rows = conn.execute(q.order_by(risk.desc(), points.desc(), name).limit(size + 1)).all()
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_token = paging.encode(fp, paging.PageToken([int(last.risk), int(last.points), last.user_name], datetime.now().astimezone()))
    return rows, next_token


# --- GetUser -------------------------------------------------------------------

@dataclass
class UserView:
    name: str
    points: int
    risk: int
    open_anomalies: int
    open_by_profile: list[tuple[str, int]]
    row: Any
    learning: Learning
    peer_group: str
    ignored: bool
    recent: list


def get_user(conn: Connection, tenant: str, name: str, now: datetime, window_days: int, min_days: int, recent_limit: int) -> UserView:
    row = conn.execute(select(users).where(users.c.tenant == tenant, users.c.user_name == name)).first()
    a = anomalies.c
    recent = conn.execute(
        select(anomalies).where(a.tenant == tenant, a.user_name == name).order_by(a.time.desc(), a.id.desc()).limit(recent_limit)
    ).all()
    if row is None and not recent:
        raise NotFound(f"user {name!r} not found")
    scores = open_scores(conn, tenant, now, window_days, users=[name]).get(name, [])
    points, risk, _level = user_risk(scores)
    by_profile = conn.execute(
        select(a.profile_name, func.count())
        .where(a.tenant == tenant, a.user_name == name, a.status == OPEN_STATUS, a.time > now - timedelta(days=window_days))
        .group_by(a.profile_name)
        .order_by(func.count().desc(), a.profile_name)
    ).all()
    latest = latest_scores(conn, tenant, [name]).get(name)
    learning = learning_of(row.first_seen if row else None, latest, now, min_days)
    peer = ""
    if row is not None and row.peer_group_id:
        peer = peer_group_names(conn, tenant).get(row.peer_group_id, row.peer_group_id)
    ignored = conn.execute(
        select(func.count()).where(ignored_users.c.tenant == tenant, ignored_users.c.user_name == name)
    ).scalar_one() > 0
    return UserView(name, points, risk, len(scores), [(p, c) for p, c in by_profile], row, learning, peer, ignored, recent)


# --- ListUserScores --------------------------------------------------------------

def list_user_scores(conn: Connection, tenant: str, req, start: datetime | None, end: datetime | None, size: int):
    s = user_scores.c
    q = select(s.user_name, s.day, s.score, s.learning, s.scored_hours).where(s.tenant == tenant)
    # A day belongs to the range when its midnight (UTC) does.
    if start is not None:
        q = q.where(s.day >= ceil_to(start, DAY).date())
    if end is not None:
        q = q.where(s.day < ceil_to(end, DAY).date())
    names = [required_user(f"users[{i}]", v) for i, v in enumerate(req.users)]
    if names:
        q = q.where(s.user_name.in_(names))
    if req.min_score:
        q = q.where(s.score >= req.min_score)
    if not names and not req.include_ignored:
        q = q.where(not_ignored(s.tenant, s.user_name))
    fp = paging.fingerprint(tenant, start, end, names, req.min_score, req.include_ignored)
    if req.page_token:
        cursor = paging.decode(fp, req.page_token, (str, str))
        user0, day0 = cursor.key[0], date.fromisoformat(cursor.key[1])
        q = q.where(or_(s.user_name > user0, and_(s.user_name == user0, s.day > day0)))
    rows = conn.execute(q.order_by(s.user_name, s.day).limit(size + 1)).all()
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_token = paging.encode(fp, paging.PageToken([last.user_name, last.day.isoformat()], datetime.now().astimezone()))
    return rows, next_token


# --- ignore list -------------------------------------------------------------------

def add_ignored(conn: Connection, tenant: str, name: str, reason: str, actor: str, now: datetime):
    stmt = insert(ignored_users).values(tenant=tenant, user_name=name, reason=reason, added_by=actor, added_at=now)
    row = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant", "user_name"],
            set_={"reason": stmt.excluded.reason, "added_by": stmt.excluded.added_by, "added_at": stmt.excluded.added_at},
        ).returning(ignored_users)
    ).one()
    conn.execute(insert(audit_log).values(tenant=tenant, at=now, actor=actor, action="ignore.add", target=name, details={"reason": reason}))
    return row


def remove_ignored(conn: Connection, tenant: str, name: str, actor: str, now: datetime) -> None:
    gone = conn.execute(
        delete(ignored_users).where(ignored_users.c.tenant == tenant, ignored_users.c.user_name == name).returning(ignored_users.c.user_name)
    ).first()
    if gone is None:
        raise NotFound(f"user {name!r} is not on the ignore list")
    conn.execute(insert(audit_log).values(tenant=tenant, at=now, actor=actor, action="ignore.remove", target=name, details={}))


def list_ignored(conn: Connection, tenant: str, token: str, size: int):
    i = ignored_users.c
    fp = paging.fingerprint(tenant, "ignored")
    q = select(ignored_users).where(i.tenant == tenant)
    if token:
        q = q.where(i.user_name > paging.decode(fp, token, (str,)).key[0])
    rows = conn.execute(q.order_by(i.user_name).limit(size + 1)).all()
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        next_token = paging.encode(fp, paging.PageToken([rows[-1].user_name], datetime.now().astimezone()))
    return rows, next_token
