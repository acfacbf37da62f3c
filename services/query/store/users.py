"""Users: the risk-ordered list, one user's detail, daily anomaly scores, the ignore list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on, insert

from services.query.store.conditions import not_ignored, starts_with
from services.query.store.json_rows import anomaly_json_sql
from services.query.store.reads import Reads
from ueba.risk import OPEN_STATUS
from ueba.store.schema import audit_log, ignored_users, peer_groups, user_risk, user_scores, users


def latest_scores(conn: Connection, tenant: str, names: list[str]) -> dict[str, Any]:
    """Each user's latest day score: (user_name, day, score, learning) by name."""
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


@dataclass(frozen=True)
class UserListing:
    """Which users ListUsers shows; None means any."""

    min_risk: int | None
    department: str | None  # lower case
    peer_group: str | None  # a group id or name
    name_prefix: str | None
    include_ignored: bool


def list_users(conn: Connection, tenant: str, listing: UserListing, after: list[Any] | None, limit: int) -> list[Row]:
    """Users by risk, points descending, then name, past the key (risk, points, name) `after`."""
    u = select(users).where(users.c.tenant == tenant).subquery("u")
    r = select(user_risk).where(user_risk.c.tenant == tenant).subquery("r")
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
    if listing.min_risk is not None:
        q = q.where(risk >= listing.min_risk)
    if listing.department is not None:
        q = q.where(func.lower(u.c.department) == listing.department)
    if listing.peer_group is not None:
        ids = select(peer_groups.c.id).where(peer_groups.c.tenant == tenant, peer_groups.c.name == listing.peer_group)
        q = q.where(or_(u.c.peer_group_id == listing.peer_group, u.c.peer_group_id.in_(ids)))
    if listing.name_prefix is not None:
        q = q.where(starts_with(name, listing.name_prefix))
    if not listing.include_ignored:
        q = q.where(not_ignored(tenant, name))
    if after is not None:
        r0, p0, n0 = after
        q = q.where(or_(risk < r0, and_(risk == r0, points < p0), and_(risk == r0, points == p0, name > n0)))
    return conn.execute(q.order_by(risk.desc(), points.desc(), name).limit(limit)).all()


# Everything GetUser shows, in one statement. The open anomalies are read through
# the partial index on status = 'new', which is why that literal is in the SQL.
_USER_SQL = text(f"""
    SELECT u.user_name IS NOT NULL AS known, u.department, u.first_seen, u.last_seen, u.peer_group_id,
           (SELECT p.name FROM peer_groups p WHERE p.tenant = :tenant AND p.id = u.peer_group_id) AS peer_group_name,
           (SELECT json_agg({anomaly_json_sql()} ORDER BY anomalies.time DESC, anomalies.id DESC) FROM (
                SELECT * FROM anomalies WHERE tenant = :tenant AND user_name = :user
                ORDER BY time DESC, id DESC LIMIT :recent) anomalies) AS recent,
           (SELECT array_agg(strongest) FROM (  -- an incident counts once, at its strongest finding
                SELECT max(risk_score) AS strongest FROM anomalies
                WHERE tenant = :tenant AND user_name = :user AND status = '{OPEN_STATUS}' AND time > :horizon
                GROUP BY coalesce(incident_id, id)) i) AS open_scores,
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


def user_detail(reads: Reads, tenant: str, name: str, horizon: datetime, recent_limit: int) -> Row:
    """One row: the user's record, recent anomalies, open scores since `horizon` and per profile, latest day score."""
    return reads.one(_USER_SQL, {"tenant": tenant, "user": name, "recent": recent_limit, "horizon": horizon})


@dataclass(frozen=True)
class ScoreListing:
    """Which day scores ListUserScores shows; None and empty mean any."""

    first_day: date | None
    end_day: date | None  # exclusive
    names: list[str]
    min_score: float
    include_ignored: bool


def user_scores_page(conn: Connection, tenant: str, listing: ScoreListing, after: list[Any] | None, limit: int) -> list[Row]:
    """Day scores by user and day, past the key (user, day) `after`."""
    s = user_scores.c
    q = select(s.user_name, s.day, s.score, s.learning, s.scored_hours).where(s.tenant == tenant)
    if listing.first_day is not None:
        q = q.where(s.day >= listing.first_day)
    if listing.end_day is not None:
        q = q.where(s.day < listing.end_day)
    if listing.names:
        q = q.where(s.user_name.in_(listing.names))
    if listing.min_score:
        q = q.where(s.score >= listing.min_score)
    if not listing.names and not listing.include_ignored:
        q = q.where(not_ignored(tenant, s.user_name))
    if after is not None:
        user0, day0 = after
        q = q.where(or_(s.user_name > user0, and_(s.user_name == user0, s.day > day0)))
    return conn.execute(q.order_by(s.user_name, s.day).limit(limit)).all()


# --- ignore list -------------------------------------------------------------------

def add_ignored(conn: Connection, tenant: str, name: str, reason: str, actor: str, now: datetime) -> Row:
    stmt = insert(ignored_users).values(tenant=tenant, user_name=name, reason=reason, added_by=actor, added_at=now)
    row = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant", "user_name"],
            set_={"reason": stmt.excluded.reason, "added_by": stmt.excluded.added_by, "added_at": stmt.excluded.added_at},
        ).returning(ignored_users)
    ).one()
    conn.execute(insert(audit_log).values(tenant=tenant, at=now, actor=actor, action="ignore.add", target=name, details={"reason": reason}))
    return row


def remove_ignored(conn: Connection, tenant: str, name: str, actor: str, now: datetime) -> bool:
    """False when the user was not on the list (and nothing was written)."""
    gone = conn.execute(
        delete(ignored_users).where(ignored_users.c.tenant == tenant, ignored_users.c.user_name == name).returning(ignored_users.c.user_name)
    ).first()
    if gone is None:
        return False
    conn.execute(insert(audit_log).values(tenant=tenant, at=now, actor=actor, action="ignore.remove", target=name, details={}))
    return True


def ignored_page(conn: Connection, tenant: str, after: str | None, limit: int) -> list[Row]:
    i = ignored_users.c
    q = select(ignored_users).where(i.tenant == tenant)
    if after is not None:
        q = q.where(i.user_name > after)
    return conn.execute(q.order_by(i.user_name).limit(limit)).all()
