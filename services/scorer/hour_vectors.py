"""Each user-hour's stored features as one float8 array (`user_hour_vectors`), written with the hours.

A row per tenant, user and hour that has any model row in `user_hour_features`: `models` (bit
`baseline.MODEL_BIT`: the model has a row) and `vals`: every stored feature in `baseline.COLUMNS`
order as aggregation stored it (uncapped; 0 where its model has no row). The same-weekday sums,
the day a user's learning ends in and the scored window read these: a float8 array element
instead of a jsonb field parsed per feature, one row an hour instead of one a model
(services/scorer/README.md, "Where a 10,000-user run goes").
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from services.scorer.baseline import MODEL_BIT, hourly_value, stored_features

_BITS = " ".join(f"WHEN '{model}' THEN {bit}" for model, bit in MODEL_BIT.items())
# A user-hour has at most one row per model (the primary key): max() is that row's value.
_VALS = ", ".join(f"coalesce(max({hourly_value(feat)}) FILTER (WHERE f.model = '{m.name}'), 0)"
                  for m, feat in stored_features())

_INSERT = f"""INSERT INTO user_hour_vectors (tenant, user_name, hour, models, vals)
    SELECT f.tenant, f.user_name, f.hour, coalesce(bit_or(CASE f.model {_BITS} END), 0), ARRAY[{_VALS}]::float8[]
    FROM user_hour_features f
    {{join}}
    WHERE {{where}}
    GROUP BY f.tenant, f.user_name, f.hour
    {{order}}"""


def refresh_dirty_hours(conn: Connection, tenant: str) -> None:
    """Rewrites the user-hours in `scorer_dirty` (features.refresh), in its transaction, after their
    hourly rows were written, so the vectors are never out of step with them."""
    conn.execute(
        text(
            """DELETE FROM user_hour_vectors v USING scorer_dirty d
            WHERE v.tenant = :tenant AND v.user_name = d.user_name AND v.hour = d.hour"""
        ),
        {"tenant": tenant},
    )
    join = "JOIN scorer_dirty d ON f.user_name = d.user_name AND f.hour = d.hour"
    conn.execute(text(_INSERT.format(join=join, where="f.tenant = :tenant", order="")), {"tenant": tenant})


def rebuild(conn: Connection) -> int:
    """Every tenant's vectors from the hourly rows (the migration's backfill; a change of the stored
    features needs a migration that calls this again). Returns the rows written. In time order, as
    aggregation writes them: a day's rows then lie together, and the reads of a few days find them so."""
    conn.execute(text("DELETE FROM user_hour_vectors"))
    return conn.execute(text(_INSERT.format(join="", where="TRUE", order="ORDER BY f.tenant, f.hour, f.user_name"))).rowcount
