"""The per-user-day rollup of `user_hour_features` (`user_day_features`), written with the hours.

A row per tenant, user and UTC day: the active hours (login_time rows), which hours of
day were active (bit h), the first active hour, and `sums`: for every stored feature in
`baseline.COLUMNS` order its capped sum, then its capped sum of squares. The baseline
reads these instead of every hour's jsonb (services/scorer/README.md, "Where a
10,000-user run goes").
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from services.scorer.baseline import ACTIVITY_MODEL, learned, stored_features

_ACT = f"f.model = '{ACTIVITY_MODEL}'"
# The same capped values the hourly baseline sums (baseline.learned), per model's rows.
_SUMS = ", ".join(
    [f"coalesce(sum({learned(feat)}) FILTER (WHERE f.model = '{m.name}'), 0)" for m, feat in stored_features()]
    + [f"coalesce(sum({learned(feat)} ^ 2) FILTER (WHERE f.model = '{m.name}'), 0)" for m, feat in stored_features()]
)

_INSERT = f"""INSERT INTO user_day_features
    (tenant, user_name, day, active_hours, active_hours_of_day, first_active, sums)
    SELECT f.tenant, f.user_name, date_trunc('day', f.hour, 'UTC'),
           count(*) FILTER (WHERE {_ACT}),
           coalesce(bit_or(1 << extract(hour FROM f.hour AT TIME ZONE 'UTC')::int) FILTER (WHERE {_ACT}), 0),
           min(f.hour) FILTER (WHERE {_ACT}),
           ARRAY[{_SUMS}]::float8[]
    FROM user_hour_features f
    {{join}}
    WHERE {{where}}
    GROUP BY f.tenant, f.user_name, date_trunc('day', f.hour, 'UTC')"""


def refresh_dirty_days(conn: Connection, tenant: str) -> None:
    """Recomputes the days of the user-hours in `scorer_dirty` (features.refresh), in its transaction,
    after their hours were written, so the rollup is never out of step with them."""
    conn.execute(
        text(
            """CREATE TEMP TABLE scorer_dirty_days ON COMMIT DROP AS
            SELECT DISTINCT user_name, date_trunc('day', hour, 'UTC') AS day FROM scorer_dirty"""
        )
    )
    conn.execute(text("ANALYZE scorer_dirty_days"))
    conn.execute(
        text(
            """DELETE FROM user_day_features r USING scorer_dirty_days d
            WHERE r.tenant = :tenant AND r.user_name = d.user_name AND r.day = d.day"""
        ),
        {"tenant": tenant},
    )
    join = """JOIN scorer_dirty_days d ON f.user_name = d.user_name
              AND f.hour >= d.day AND f.hour < d.day + interval '1 day'"""
    conn.execute(text(_INSERT.format(join=join, where="f.tenant = :tenant")), {"tenant": tenant})
    conn.execute(text("DROP TABLE scorer_dirty_days"))


def rebuild(conn: Connection) -> int:
    """Every tenant's rollup from the hourly rows (the migration's backfill; a change of the stored
    features or their caps needs a migration that calls this again). Returns the rows written."""
    conn.execute(text("DELETE FROM user_day_features"))
    return conn.execute(text(_INSERT.format(join="", where="TRUE"))).rowcount
