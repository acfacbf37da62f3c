"""Users: the risk-ordered list, one user's detail, daily anomaly scores, the ignore list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, delete, func, literal, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on, insert

from ueba import paging
from services.query.convert import anomaly_json_sql
from ueba.errors import InvalidArgument, NotFound, check_text
from services.query.filters import like_pattern, not_ignored
from services.query.reads import Reads
from services.query.summary import DAY, ceil_to
from services.query.vocab import ENUM_LEVEL, canonical_user, level_band
from ueba.risk import OPEN_STATUS, user_risk
from ueba.store.schema import audit_log, ignored_users, peer_groups, user_risk as user_risk_table, user_scores, users


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

class LatestScore(NamedTuple):
    day: date
    score: float
    learning: bool


@dataclass
class UserView:
    name: str
    points: int
    risk: int
    open_anomalies: int
    open_by_profile: list[tuple[str, int]]
    department: str
    first_seen: datetime | None
    last_seen: datetime | None
    learning: Learning
    peer_group: str
    ignored: bool
    recent: list  # anomalies as JSON arrays (convert.anomaly_from_json)


# Everything GetUser shows, in one statement. The open anomalies are read through
# the partial index on status = 'new', which is why that literal is in the SQL.
_USER_SQL = text(f"""
    SELECT u.user_name IS NOT NULL AS known, u.department, u.first_seen, u.last_seen, u.peer_group_id,
           (SELECT p.name FROM peer_groups p WHERE p.tenant = :tenant AND p.id = u.peer_group_id) AS peer_group_name,
           (SELECT json_agg({anomaly_json_sql()} ORDER BY anomalies.time DESC, anomalies.id DESC) FROM (
                SELECT * FROM anomalies WHERE tenant = :tenant AND user_name = :user
                ORDER BY time DESC, id DESC LIMIT :recent) anomalies) AS recent,
           (SELECT array_agg(risk_score) FROM anomalies
            WHERE tenant = :tenant AND user_name = :user AND status = '{OPEN_STATUS}' AND time > :horizon) AS open_scores,
           (SELECT json_agg(json_build_array(profile_name, n) ORDER BY n DESC, profile_name) FROM (
                SELECT profile_name, count(*) AS n FROM anomalies
                WHERE tenant = :tenant AND user_name = :user AND status = '{OPEN_STATUS}' AND time > :horizon
                GROUP BY profile_name) p) AS open_by_profile,
           s.day AS score_day, s.score, s.learning AS score_learning,
           EXISTS (SELECT 1 FROM ignored_users WHERE tenant = :tenant AND user_name = :user) AS ignored
    FROM (SELECT 1) one
    LEFT JOIN users u ON u.tenant = :tenant AND u.user_name = :user
    LEFT JOIN LATERAL (
        SELECT day, score, learning FROM user_scores WHERE tenant = :tenant AND user_name = :user
        ORDER BY day DESC LIMIT 1) s ON true
""")


def get_user(reads: Reads, tenant: str, name: str, now: datetime, window_days: int, min_days: int, recent_limit: int) -> UserView:
    row = reads.one(_USER_SQL, {
        "tenant": tenant, "user": name, "recent": recent_limit, "horizon": now - timedelta(days=window_days),
    })
    recent = row.recent or []
    if not row.known and not recent:
        raise NotFound(f"user {name!r} not found")
    scores = row.open_scores or []
    points, risk, _level = user_risk(scores)
    latest = LatestScore(row.score_day, row.score, row.score_learning) if row.score_day is not None else None
    learning = learning_of(row.first_seen, latest, now, min_days)
    peer = (row.peer_group_name or row.peer_group_id or "") if row.known else ""
    by_profile = [(p, n) for p, n in row.open_by_profile or ()]
    return UserView(
        name, points, risk, len(scores), by_profile, row.department or "", row.first_seen, row.last_seen,
        learning, peer, bool(row.ignored), recent,
    )


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
