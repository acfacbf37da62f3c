"""Users: the risk-ordered list, one user's detail, daily anomaly scores, the ignore list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

from sqlalchemy import Connection

from services.query.store import users as store
from services.query.store.reads import Reads
from services.query.summary import DAY, ceil_to
from services.query.vocab import level_band
from ueba.messages import ENUM_LEVEL
from ueba import paging
from ueba.errors import InvalidArgument, NotFound, check_text
from ueba.names import canonical_user
from ueba.risk import user_risk


def required_user(field: str, value: str, user_mode: str) -> str:
    """The stored form of the account name a caller gave in `field`."""
    name = canonical_user(check_text(field, value), user_mode)
    if not name:
        raise InvalidArgument(f"{field}: required")
    return name


def keyset_page(rows: list, size: int, fp: str, key_of: Callable[[Any], list]) -> tuple[list, str]:
    """The first `size` of `size + 1` rows read, and the token of the next page ('' on the last)."""
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, paging.encode(fp, paging.PageToken(key_of(rows[-1]), datetime.now(timezone.utc)))


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


# --- ListUsers -------------------------------------------------------------

def list_users(conn: Connection, tenant: str, req, size: int, user_mode: str) -> tuple[list, str]:
    if req.min_risk_level and req.min_risk_level not in ENUM_LEVEL:
        raise InvalidArgument(f"min_risk_level: unknown risk level {req.min_risk_level}")
    listing = store.UserListing(
        min_risk=level_band(ENUM_LEVEL[req.min_risk_level])[0] if req.min_risk_level else None,
        department=check_text("department", req.department).lower() if req.department else None,
        peer_group=check_text("peer_group", req.peer_group) if req.peer_group else None,
        name_prefix=canonical_user(check_text("user_prefix", req.user_prefix), user_mode) if req.user_prefix else None,
        include_ignored=req.include_ignored,
    )
    fp = paging.fingerprint(tenant, req.min_risk_level, req.department, req.peer_group, req.user_prefix, req.include_ignored)
    after = paging.decode(fp, req.page_token, (int, int, str)).key if req.page_token else None
    rows = store.list_users(conn, tenant, listing, after, size + 1)
    return keyset_page(rows, size, fp, lambda last: [int(last.risk), int(last.points), last.user_name])


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


def get_user(reads: Reads, tenant: str, name: str, now: datetime, window_days: int, min_days: int, recent_limit: int) -> UserView:
    row = store.user_detail(reads, tenant, name, now - timedelta(days=window_days), recent_limit)
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

def list_user_scores(
    conn: Connection, tenant: str, req, start: datetime | None, end: datetime | None, size: int, user_mode: str
) -> tuple[list, str]:
    names = [required_user(f"users[{i}]", v, user_mode) for i, v in enumerate(req.users)]
    listing = store.ScoreListing(
        # A day belongs to the range when its midnight (UTC) does.
        first_day=ceil_to(start, DAY).date() if start is not None else None,
        end_day=ceil_to(end, DAY).date() if end is not None else None,
        names=names,
        min_score=req.min_score,
        include_ignored=req.include_ignored,
    )
    fp = paging.fingerprint(tenant, start, end, names, req.min_score, req.include_ignored)
    after = None
    if req.page_token:
        user0, day0 = paging.decode(fp, req.page_token, (str, str)).key
        after = [user0, _day(day0)]
    rows = store.user_scores_page(conn, tenant, listing, after, size + 1)
    return keyset_page(rows, size, fp, lambda last: [last.user_name, last.day.isoformat()])


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument("page_token: not a token this service issued") from None


# --- ignore list -------------------------------------------------------------------

def list_ignored(conn: Connection, tenant: str, token: str, size: int) -> tuple[list, str]:
    fp = paging.fingerprint(tenant, "ignored")
    after = paging.decode(fp, token, (str,)).key[0] if token else None
    rows = store.ignored_page(conn, tenant, after, size + 1)
    return keyset_page(rows, size, fp, lambda last: [last.user_name])
