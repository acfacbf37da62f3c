"""User-day anomaly scores (`user_scores`): the hourly scores they come from, and their rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, delete, func, select, text

from services.scorer.context import UserScope
from services.scorer.store.scope import SCOPE_SQL, scope_clauses, scope_params
from ueba.store.schema import user_scores


@dataclass(frozen=True)
class HourlyScores:
    """Stored event scores of a window, a column each (hour: whole hours since the epoch)."""

    users: list[str]
    hour: np.ndarray
    model: list[str]
    score: np.ndarray
    learning: np.ndarray
    # The stored features of each score, read only where their deciding feature can change the
    # score's dimension (a mixed model's scores of at least DECISIVE_FROM); None elsewhere.
    features: list[list | None]


# Below this hourly score (under half a decade of surprise) a mixed model's evidence counts in its
# own dimension: too weak to matter, and reading its features costs a JSON transfer per row.
DECISIVE_FROM = 20


@dataclass(frozen=True)
class UserDays:
    """One row per user-day to store; `hour` and `model` name its strongest hourly score."""

    users: list[str]
    days: list[date]
    score: list[float]
    scored_hours: list[int]
    learning: list[bool]
    hour: list[datetime]
    model: list[str]
    # The score of the account's own doing: without rule findings linked to the source that
    # targeted it (a spray's account), which carry their own share into its risk.
    own_score: list[float]


def delete_days(conn: Connection, tenant: str, d0: datetime, d1: datetime, scope: UserScope) -> None:
    conn.execute(delete(user_scores).where(
        user_scores.c.tenant == tenant, user_scores.c.day >= d0.date(), user_scores.c.day < d1.date(),
        *scope_clauses(scope, user_scores)))


def hourly_scores(conn: Connection, tenant: str, d0: datetime, d1: datetime, scope: UserScope,
                  ignored: frozenset[str], models: list[str], mixed: list[str]) -> HourlyScores:
    """Every stored event score of the days from `d0` to `d1` of the scope's users, but the ignored;
    of the `mixed` models' scores from DECISIVE_FROM, their features."""
    # One pass, no joins: after a run's COPY the planner has no statistics for
    # the new rows, and a join misjudged as one row each becomes quadratic. On the
    # driver's cursor: SQLAlchemy's rows cost four times the query at 200,000 of them.
    with conn.connection.driver_connection.cursor(binary=True) as cur:
        cur.execute(
            f"""SELECT t.user_name, CAST(extract(epoch FROM t.hour) AS bigint) / 3600, t.model, t.score, t.learning,
                       CASE WHEN t.score >= %(decisive_from)s AND t.model = ANY(%(mixed)s::text[]) THEN t.features END
                FROM event_scores t
                WHERE t.tenant = %(tenant)s AND t.hour >= %(d0)s AND t.hour < %(d1)s
                  AND t.model = ANY(%(models)s::text[]) AND {SCOPE_SQL}
                  AND NOT t.user_name = ANY(%(ignored)s::text[])""",
            {"tenant": tenant, "d0": d0, "d1": d1, "models": models, "ignored": sorted(ignored),
             "mixed": mixed, "decisive_from": DECISIVE_FROM, **scope_params(scope)},
        )
        rows = cur.fetchall()
    users, hours, names, scores, learning, features = zip(*rows) if rows else ((), (), (), (), (), ())
    return HourlyScores(list(users), np.array(hours, dtype=np.int64), list(names),
                        np.array(scores, dtype=np.float64), np.array(learning, dtype=bool), list(features))


def insert_user_days(conn: Connection, tenant: str, run_id: str, days: UserDays) -> list:
    """Stores the user-days (scores rounded to 2 decimals, as numeric), each with the top three
    features of its strongest hourly score; returns (user, day, score, scored_hours, learning, top_features).

    In user and day order, as the rows of the GROUP BY that computed them in SQL came: readers
    without an ORDER BY (bench.detection ranks tied scores in table order) see the same order."""
    return conn.execute(
        text("""INSERT INTO user_scores (tenant, user_name, day, score, scored_hours, learning, top_features, run_id)
                SELECT :tenant, v.user_name, v.day, round(CAST(v.score AS numeric), 2), v.hours, v.learning,
                       coalesce((SELECT jsonb_agg(f || jsonb_build_object('model', v.model)
                                                  ORDER BY (f ->> 'share')::float8 DESC)
                                 FROM (SELECT f FROM event_scores es, jsonb_array_elements(es.features) AS f
                                       WHERE es.tenant = :tenant AND es.user_name = v.user_name
                                         AND es.hour = v.hour AND es.model = v.model
                                         AND (f ->> 'share')::float8 > 0
                                       ORDER BY (f ->> 'share')::float8 DESC LIMIT 3) top3), '[]'::jsonb),
                       :run_id
                FROM unnest(CAST(:users AS text[]), CAST(:days AS date[]), CAST(:scores AS float8[]),
                            CAST(:hours AS int[]), CAST(:learning AS bool[]), CAST(:best_hours AS timestamptz[]),
                            CAST(:best_models AS text[]))
                     AS v(user_name, day, score, hours, learning, hour, model)
                ORDER BY v.user_name, v.day
                RETURNING user_name, day, score, scored_hours, learning, top_features"""),
        {"tenant": tenant, "run_id": run_id, "users": days.users, "days": days.days, "scores": days.score,
         "hours": days.scored_hours, "learning": days.learning, "best_hours": days.hour, "best_models": days.model},
    ).all()


def scores_of_days(conn: Connection, tenant: str, d0: datetime, d1: datetime, scope: UserScope) -> list:
    """(user, day, score, learning) of the scope's stored user-days from `d0` to `d1`."""
    return conn.execute(select(user_scores.c.user_name, user_scores.c.day, user_scores.c.score,
                               user_scores.c.learning).where(
        user_scores.c.tenant == tenant, user_scores.c.day >= d0.date(), user_scores.c.day < d1.date(),
        *scope_clauses(scope, user_scores))).all()


def day_maxima(conn: Connection, tenant: str, d0: datetime, d1: datetime, ignored: frozenset[str]) -> list[tuple]:
    """(user, day, model, strongest score) of every user past learning, the ignored excepted, from `d0` to `d1`."""
    return conn.execute(
        text("""SELECT user_name, CAST(hour AT TIME ZONE 'UTC' AS date) AS day, model, max(score)
                FROM event_scores
                WHERE tenant = :tenant AND hour >= :d0 AND hour < :d1 AND NOT learning
                  AND NOT user_name = ANY(CAST(:ignored AS text[]))
                GROUP BY 1, 2, 3"""),
        {"tenant": tenant, "d0": d0, "d1": d1, "ignored": sorted(ignored)},
    ).all()


def _linked(alias: str) -> str:
    """SQL: the rule finding `alias` (a row of anomalies) is linked to the source that targeted its
    account (`ueba.store.anomalies`: evidence `source_entity`, in the source's incident)."""
    return f"{alias}.incident_id IS NOT NULL AND {alias}.evidence ? 'source_entity'"


def rule_findings(conn: Connection, tenant: str, d0: datetime, d1: datetime) -> list[tuple]:
    """(user, day, kind, dimension, score, incident, decades, linked) of the rule findings about accounts
    from `d0` to `d1`, those reviewed as false positives excepted; a finding outside any incident is its own.

    A finding linked to the source that targeted the account (a spray's account) counts at the
    strength of the source's finding in its incident, and carries the rarity the source's finding
    measured among the tenant's source-windows (`decades`, else None): the account's day is part of
    that attack, though its risk carries only the linked share."""
    return conn.execute(
        text(f"""SELECT a.user_name, CAST(a.time AT TIME ZONE 'UTC' AS date), a.profile_kind, a.dimension,
                       greatest(a.risk_score, coalesce(src.score, 0)),
                       CAST(coalesce(a.incident_id, a.id) AS text), src.decades, {_linked("a")}
                FROM anomalies a
                LEFT JOIN LATERAL (
                    SELECT max(s.risk_score) AS score, max(CAST(s.evidence -> 'rarity' ->> 'decades' AS float8)) AS decades
                    FROM anomalies s
                    WHERE {_linked("a")}
                      AND s.tenant = a.tenant AND s.incident_id = a.incident_id AND s.source = 'rule'
                      AND s.entity_type <> 'user' AND s.status <> 'false_positive'
                ) src ON true
                WHERE a.tenant = :tenant AND a.source = 'rule' AND a.entity_type = 'user' AND a.user_name <> ''
                  AND a.status <> 'false_positive' AND a.time >= :d0 AND a.time < :d1"""),
        {"tenant": tenant, "d0": d0, "d1": d1},
    ).all()


def reference_days(conn: Connection, tenant: str, d0: date, d1: date) -> list[tuple[str, date, float]]:
    """(user, day, score) of the stored user-days past learning from `d0` to `d1`, but those of accounts a
    source targeted (a rule finding linked to the source that day): their stored score is the
    source's attack, while a model anomaly is judged on the account's own doing
    (`UserDays.own_score`), and fifty sprayed accounts would make every later attack look common."""
    return [(u, d, float(score)) for u, d, score in conn.execute(
        text(f"""SELECT s.user_name, s.day, s.score
                FROM user_scores s
                LEFT JOIN (SELECT DISTINCT a.user_name, CAST(a.time AT TIME ZONE 'UTC' AS date) AS day
                           FROM anomalies a
                           WHERE a.tenant = :tenant AND a.source = 'rule' AND a.entity_type = 'user'
                             AND {_linked("a")}
                             AND a.time >= :d0 AND a.time < CAST(:d1 AS date) + 1) t
                       ON t.user_name = s.user_name AND t.day = s.day
                WHERE s.tenant = :tenant AND s.day >= :d0 AND s.day < :d1 AND NOT s.learning
                  AND t.user_name IS NULL"""),
        {"tenant": tenant, "d0": d0, "d1": d1})]
