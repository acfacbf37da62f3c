"""GetSummary's one statement: rollup totals, range edges, riskiest users, users seen, events, staleness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, text

from services.query.store.reads import Reads
from ueba.risk import LEVELS, level_floor

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class SummarySlots:
    """The range cut into the statement's slots; unused slots are empty intervals."""

    start: datetime
    end: datetime
    raw: tuple[Interval, Interval]  # partial hours at the edges, read from anomalies
    hours: tuple[Interval, Interval]  # whole hours, from the hour rollup
    days: Interval  # whole days, from the day rollup
    event_hours: Interval  # the hours whose events are counted


def _level_of(column: str) -> str:
    """SQL naming the risk level of `column`, from ueba.risk's bands."""
    bands = " ".join(f"WHEN {column} >= {level_floor(level)} THEN '{level}'" for level in reversed(LEVELS[1:]))
    return f"CASE {bands} ELSE '{LEVELS[0]}' END"


def _summary_sql(include_ignored: bool) -> str:
    # Two fixed statements rather than a flag parameter, so that each keeps a
    # plan of its own (an anti-join, or none) once psycopg prepares it.
    # A hashed NOT IN reads the ignore list once; NOT EXISTS probed it for each of the tenant's users.
    not_ignored = lambda alias: (
        "" if include_ignored else
        f" AND {alias}.user_name NOT IN (SELECT i.user_name FROM ignored_users i WHERE i.tenant = :tenant)"
    )
    ignored_rows = "" if include_ignored else """
            UNION ALL
            SELECT a.risk_score, a.profile_name, a.dimension, a.status, a.source, count(*), sum(a.risk_score), -1
            FROM anomalies a JOIN ignored_users i ON i.tenant = a.tenant AND i.user_name = a.user_name
            WHERE a.tenant = :tenant AND a.time >= :start AND a.time < :end
            GROUP BY 1, 2, 3, 4, 5"""
    # One index-only range scan per bucket range (an OR of the ranges would be a bitmap scan of the table).
    rollup_ranges = " UNION ALL ".join(
        "SELECT facet, key, anomalies, points FROM anomaly_rollup "
        f"WHERE tenant = :tenant AND grain = '{grain}' AND bucket >= :{lo} AND bucket < :{hi}"
        for grain, lo, hi in (("day", "d0", "d1"), ("hour", "h0", "h1"), ("hour", "h2", "h3"))
    )
    return f"""
    WITH version AS MATERIALIZED (
        SELECT coalesce((SELECT generation FROM query_rollup_versions WHERE tenant = :tenant), 0) AS generation,
               (SELECT count(*) FROM anomaly_rollup WHERE tenant = :tenant AND NOT merged) AS unmerged
    )
    SELECT
        (SELECT generation FROM version) AS generation,
        (SELECT unmerged FROM version) AS unmerged,
        EXISTS (SELECT 1 FROM user_risk_dirty WHERE tenant = :tenant)
            OR EXISTS (SELECT 1 FROM user_risk WHERE tenant = :tenant AND oldest_open <= :horizon) AS stale,
        (SELECT json_agg(json_build_array(facet, key, n, p)) FROM (
            SELECT facet, key, sum(anomalies) AS n, sum(points) AS p FROM ({rollup_ranges}) b
            WHERE (SELECT generation <> :cached_generation OR unmerged <> :cached_unmerged FROM version)
            GROUP BY facet, key) r) AS rolled,
        (SELECT json_agg(json_build_array(score, profile, dimension, status, source, n, p, sign)) FROM (
            SELECT risk_score AS score, profile_name AS profile, dimension, status, source, count(*) AS n,
                   sum(risk_score) AS p, 1 AS sign
            -- The two cut hours as rows joined to anomalies, not an OR of two ranges: the planner
            -- estimates the join alike with and without the bounds, so once psycopg prepares the
            -- statement Postgres keeps one generic plan instead of planning every call (README).
            FROM (VALUES (CAST(:r0 AS timestamptz), CAST(:r1 AS timestamptz)),
                         (CAST(:r2 AS timestamptz), CAST(:r3 AS timestamptz))) AS edge(lo, hi)
            JOIN anomalies ON tenant = :tenant AND time >= edge.lo AND time < edge.hi
            GROUP BY 1, 2, 3, 4, 5{ignored_rows}) e) AS edges,
        (SELECT json_agg(json_build_array(user_name, points, risk, open_anomalies)
                         ORDER BY risk DESC, points DESC, user_name) FROM (
            SELECT user_name, points, risk, open_anomalies FROM user_risk r
            WHERE tenant = :tenant{not_ignored("r")}
            ORDER BY risk DESC, points DESC, user_name LIMIT :top) t) AS riskiest,
        (SELECT json_object_agg(level, n) FROM (
            SELECT {_level_of("risk")} AS level, count(*) AS n FROM user_risk r
            WHERE tenant = :tenant AND risk > 0{not_ignored("r")} GROUP BY 1) l) AS users_by_level,
        (SELECT count(*) FROM users u
         WHERE tenant = :tenant AND first_seen < :end AND last_seen >= :start{not_ignored("u")}) AS users_seen,
        (SELECT coalesce(sum(events), 0) FROM event_counts
         WHERE tenant = :tenant AND hour >= :e0 AND hour < :e1) AS events
    """


SUMMARY_SQL = {flag: text(_summary_sql(flag)) for flag in (False, True)}


def summary_row(
    reads: Reads, tenant: str, slots: SummarySlots, include_ignored: bool, top: int, horizon: datetime,
    cached_version: tuple[int, int],
) -> Row:
    """The statement's one row; its rollup totals (`rolled`) are read only when the version differs from `cached_version`."""
    (r0, r1), (r2, r3) = slots.raw
    (h0, h1), (h2, h3) = slots.hours
    d0, d1 = slots.days
    e0, e1 = slots.event_hours
    params = {
        "tenant": tenant, "start": slots.start, "end": slots.end, "horizon": horizon, "top": top,
        "cached_generation": cached_version[0], "cached_unmerged": cached_version[1],
        "d0": d0, "d1": d1, "h0": h0, "h1": h1, "h2": h2, "h3": h3, "r0": r0, "r1": r1, "r2": r2, "r3": r3,
        "e0": e0, "e1": e1,
    }
    return reads.one(SUMMARY_SQL[bool(include_ignored)], params)
