"""Hourly features and entity sightings, aggregated from events in SQL.

Incremental: a run takes the transaction snapshot (`pg_current_snapshot()`)
and processes exactly the events visible now but not in the snapshot the
previous successful run recorded, so an event that commits late, out of txid
order, is neither skipped nor counted twice. entity_seen is updated from those
events; every user-hour they touch is recomputed whole from `events`, which
makes re-aggregating an hour harmless, and so is the day rollup of each such
user-day (day_features.py), in the same transaction. Events with an empty user_name (failures
that name no account, kept for their source) belong to no user and are left out.

Aggregation covers every user of the tenant (whichever replica runs it): the
baselines of every bucket's scoring read these rows, so they must not depend on
which replica got there first. The caller runs this in a REPEATABLE READ
transaction of its own, under the tenant's aggregation lock, with the session
time zone set to UTC (date_trunc and extract work in the session zone), and
stores the returned snapshot (scorer_cursors) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from services.scorer import day_features, hour_vectors

AUTH_EVENT_TYPES = ("logon", "password_change", "privilege_use", "account_change")
DATA_EVENT_TYPES = ("file_download", "file_upload", "file_delete", "file_share")
# Consecutive locations closer in time than this count as this far apart in
# time, so that geolocation jitter between two near-simultaneous events does
# not imply a supersonic trip.
MIN_TRAVEL_HOURS = 0.5


@dataclass
class FeatureRefresh:
    snapshot: str
    new_events: int
    dirty_user_hours: int
    seconds: float = 0.0


def _new_events_filter(previous: str | None) -> str:
    # Constant SQL fragments only; the snapshot itself is a bound parameter. The txid
    # bound is implied by invisibility; stated, it lets the scan use ix_events_txid
    # instead of reading every event of the tenant.
    if previous is None:
        return "TRUE"
    return """(e.txid >= pg_snapshot_xmin(CAST(:previous AS pg_snapshot))
               AND NOT pg_visible_in_snapshot(e.txid, CAST(:previous AS pg_snapshot)))"""


def refresh(conn: Connection, tenant: str, previous_snapshot: str | None) -> FeatureRefresh:
    snapshot = conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()
    params = {"tenant": tenant, "previous": previous_snapshot}
    new = _new_events_filter(previous_snapshot)
    conn.execute(
        text(
            f"""CREATE TEMP TABLE scorer_dirty ON COMMIT DROP AS
            SELECT DISTINCT e.user_name, date_trunc('hour', e.time) AS hour
            FROM events e WHERE e.tenant = :tenant AND {new} AND e.user_name <> ''"""
        ),
        params,
    )
    dirty = conn.execute(text("SELECT count(*), min(hour), max(hour) FROM scorer_dirty")).one()
    if dirty[0] == 0:
        conn.execute(text("DROP TABLE scorer_dirty"))
        return FeatureRefresh(snapshot, 0, 0)
    lo, hi = dirty[1], dirty[2] + timedelta(hours=1)
    # An account failing from an origin changes the spraying count of every other
    # account failing from it in that hour: those user-hours are recomputed too.
    conn.execute(
        text(
            """INSERT INTO scorer_dirty
            SELECT DISTINCT e.user_name, date_trunc('hour', e.time) FROM events e
            WHERE e.tenant = :tenant AND e.outcome = 'failure' AND e.time >= :lo AND e.time < :hi AND e.user_name <> ''
              AND date_trunc('hour', e.time) IN (SELECT DISTINCT hour FROM scorer_dirty)
            EXCEPT SELECT user_name, hour FROM scorer_dirty"""
        ),
        {"tenant": tenant, "lo": lo, "hi": hi},
    )
    dirty_count = conn.execute(text("SELECT count(*) FROM scorer_dirty")).scalar_one()
    conn.execute(text("ANALYZE scorer_dirty"))
    new_events = _update_entity_seen(conn, new, params)
    _stage_events(conn, tenant, lo, hi)
    conn.execute(
        text(
            """DELETE FROM user_hour_features f USING scorer_dirty d
            WHERE f.tenant = :tenant AND f.user_name = d.user_name AND f.hour = d.hour"""
        ),
        params,
    )
    for statement in _MODEL_INSERTS:
        conn.execute(text(statement), {"tenant": tenant, "auth": list(AUTH_EVENT_TYPES), "data": list(DATA_EVENT_TYPES)})
    day_features.refresh_dirty_days(conn, tenant)
    hour_vectors.refresh_dirty_hours(conn, tenant)
    conn.execute(text("DROP TABLE scorer_ev"))
    conn.execute(text("DROP TABLE scorer_dirty"))
    if dirty_count > 10_000:
        analyze_unless_busy(conn, "user_hour_features")  # a bulk load: baselines are read next
        analyze_unless_busy(conn, "user_day_features")
        analyze_unless_busy(conn, "user_hour_vectors")
    return FeatureRefresh(snapshot, new_events, dirty_count)


def analyze_unless_busy(conn: Connection, table: str) -> None:
    """ANALYZE inside a transaction, unless another replica's transaction is analysing the table.

    ANALYZE holds a self-conflicting lock until commit: waiting for it would
    serialise the replicas' runs; their fresh statistics serve this one as well.
    """
    with conn.begin_nested() as savepoint:
        conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
        try:
            conn.execute(text(f"ANALYZE {table}"))  # constant names
        except OperationalError:
            savepoint.rollback()
            return
        conn.execute(text("SET LOCAL lock_timeout = 0"))


def _update_entity_seen(conn: Connection, new: str, params: dict) -> int:
    """First and last sighting per user and entity, from the new events only (exactly once)."""
    conn.execute(
        text(
            f"""CREATE TEMP TABLE scorer_sightings ON COMMIT DROP AS
            SELECT e.user_name, v.entity_type, v.entity, min(e.time) AS first_seen, max(e.time) AS last_seen,
                   count(*) AS seen_count
            FROM events e
            CROSS JOIN LATERAL (VALUES
                ('destination_host', nullif(e.destination_host, '')),
                ('source_ip', host(e.source_ip)),
                ('source_host', lower(nullif(e.source_host, ''))),
                ('country', CASE WHEN e.outcome <> 'failure' THEN nullif(e.country, '') END),
                ('city', CASE WHEN e.outcome <> 'failure' THEN nullif(e.country, '') || '/' || nullif(e.city, '') END),
                ('application', nullif(e.application, '')),
                ('event_type', e.event_type)
            ) AS v(entity_type, entity)
            WHERE e.tenant = :tenant AND {new} AND v.entity IS NOT NULL AND e.user_name <> ''
            GROUP BY e.user_name, v.entity_type, v.entity"""
        ),
        params,
    )
    conn.execute(
        text(
            """INSERT INTO entity_seen (tenant, user_name, entity_type, entity, first_seen, last_seen, seen_count)
            SELECT :tenant, user_name, entity_type, entity, first_seen, last_seen, seen_count FROM scorer_sightings
            ON CONFLICT (tenant, user_name, entity_type, entity) DO UPDATE SET
                first_seen = LEAST(entity_seen.first_seen, excluded.first_seen),
                last_seen = GREATEST(entity_seen.last_seen, excluded.last_seen),
                seen_count = entity_seen.seen_count + excluded.seen_count"""
        ),
        params,
    )
    count = conn.execute(text("SELECT coalesce(sum(seen_count), 0) FROM scorer_sightings WHERE entity_type = 'event_type'")).scalar_one()
    if conn.execute(text("SELECT count(*) > 1000 FROM scorer_sightings")).scalar_one():
        analyze_unless_busy(conn, "entity_seen")  # a bulk load just changed it a lot; plans need fresh stats
    conn.execute(text("DROP TABLE scorer_sightings"))
    return int(count)


def _stage_events(conn: Connection, tenant: str, lo: datetime, hi: datetime) -> None:
    """The events of the dirty user-hours, with novelty flags and the previous location.

    Built in steps through analysed temp tables: right after a bulk load the
    events partitions have no statistics yet, and one misjudged nested loop
    would turn this into a quadratic join.
    """
    params = {"tenant": tenant, "lo": lo, "hi": hi, "min_hours": MIN_TRAVEL_HOURS}
    # The dirty users' events of the dirty span, plus a day before it for the previous location.
    conn.execute(
        text(
            """CREATE TEMP TABLE scorer_raw ON COMMIT DROP AS
            SELECT e.user_name, date_trunc('hour', e.time) AS hour, e.event_id, e.time, e.event_type, e.outcome,
                   nullif(e.destination_host, '') AS destination_host,
                   coalesce(nullif(e.source_host, ''), host(e.source_ip)) AS origin,
                   located.country, located.country || '/' || nullif(e.city, '') AS city,
                   nullif(e.application, '') AS application, e.bytes, greatest(e.file_count, 1) AS files,
                   lower(nullif(e.source_host, '')) AS source_host, host(e.source_ip) AS source_ip,
                   located.latitude, located.longitude,
                   CASE WHEN e.outcome = 'failure' THEN nullif(e.country, '') END AS failed_country
            FROM events e
            -- A failed logon does not place the user anywhere (someone tried the account from
            -- there): location is read from the other events, as the location profiles read it.
            CROSS JOIN LATERAL (SELECT CASE WHEN e.outcome <> 'failure' THEN nullif(e.country, '') END AS country,
                                       CASE WHEN e.outcome <> 'failure' THEN e.latitude END AS latitude,
                                       CASE WHEN e.outcome <> 'failure' THEN e.longitude END AS longitude) located
            WHERE e.tenant = :tenant AND e.time >= CAST(:lo AS timestamptz) - interval '1 day' AND e.time < :hi
              AND e.user_name IN (SELECT DISTINCT user_name FROM scorer_dirty)"""
        ),
        params,
    )
    conn.execute(text("ANALYZE scorer_raw"))
    conn.execute(
        text(
            """CREATE TEMP TABLE scorer_moves ON COMMIT DROP AS
            SELECT event_id, time, dist_km, dist_km / greatest(extract(epoch FROM time - prev_time) / 3600.0, :min_hours) AS speed_kmh
            FROM (
                SELECT event_id, time, prev_time,
                       2 * 6371 * asin(least(1, sqrt(
                           power(sin(radians(latitude - prev_lat) / 2), 2)
                           + cos(radians(prev_lat)) * cos(radians(latitude))
                             * power(sin(radians(longitude - prev_lon) / 2), 2)))) AS dist_km
                FROM (
                    SELECT event_id, time, latitude, longitude,
                           lag(latitude) OVER w AS prev_lat, lag(longitude) OVER w AS prev_lon, lag(time) OVER w AS prev_time
                    FROM scorer_raw WHERE latitude IS NOT NULL AND longitude IS NOT NULL
                    WINDOW w AS (PARTITION BY user_name ORDER BY time, event_id)
                ) ordered
                WHERE prev_lat IS NOT NULL
            ) moves"""
        ),
        params,
    )
    conn.execute(text("ANALYZE scorer_moves"))
    # Accounts failing per origin and hour, over everyone's events (not only the dirty users').
    conn.execute(
        text(
            """CREATE TEMP TABLE scorer_spread ON COMMIT DROP AS
            SELECT coalesce(nullif(e.source_host, ''), host(e.source_ip)) AS origin, date_trunc('hour', e.time) AS hour,
                   count(DISTINCT e.user_name) AS failing_accounts
            FROM events e
            WHERE e.tenant = :tenant AND e.outcome = 'failure' AND e.time >= :lo AND e.time < :hi AND e.user_name <> ''
              AND date_trunc('hour', e.time) IN (SELECT DISTINCT hour FROM scorer_dirty)
            GROUP BY 1, 2"""
        ),
        params,
    )
    conn.execute(text("ANALYZE scorer_spread"))
    conn.execute(
        text(
            """CREATE TEMP TABLE scorer_ev ON COMMIT DROP AS
            SELECT s.user_name, s.hour, s.time, s.event_type, s.outcome, s.destination_host, s.origin, s.country,
                   s.city, s.application, s.bytes, s.files, s.latitude, m.dist_km, m.speed_kmh,
                   coalesce(sp.failing_accounts, 0) AS failing_accounts,
                   coalesce(et.first_seen >= s.hour, false) AS new_event_type,
                   coalesce(dh.first_seen >= s.hour, false) AS new_host,
                   coalesce(oh.first_seen >= s.hour, false) AS new_origin,
                   coalesce(si.first_seen >= s.hour, false) AS new_source_ip, s.source_host, s.source_ip,
                   coalesce(co.first_seen >= s.hour, false) AS new_country,
                   coalesce(ci.first_seen >= s.hour, false) AS new_city,
                   coalesce(ap.first_seen >= s.hour, false) AS new_application, s.failed_country,
                   coalesce(fc.first_seen >= s.hour, s.failed_country IS NOT NULL) AS new_failed_country
            FROM scorer_raw s
            JOIN scorer_dirty d ON d.user_name = s.user_name AND d.hour = s.hour
            LEFT JOIN scorer_moves m ON m.event_id = s.event_id AND m.time = s.time
            LEFT JOIN scorer_spread sp ON s.outcome = 'failure' AND sp.origin = s.origin AND sp.hour = s.hour
            LEFT JOIN entity_seen et ON et.tenant = :tenant AND et.user_name = s.user_name
                 AND et.entity_type = 'event_type' AND et.entity = s.event_type
            LEFT JOIN entity_seen dh ON dh.tenant = :tenant AND dh.user_name = s.user_name
                 AND dh.entity_type = 'destination_host' AND dh.entity = s.destination_host
            LEFT JOIN entity_seen oh ON oh.tenant = :tenant AND oh.user_name = s.user_name
                 AND oh.entity_type = 'source_host' AND oh.entity = s.source_host
            LEFT JOIN entity_seen si ON si.tenant = :tenant AND si.user_name = s.user_name
                 AND si.entity_type = 'source_ip' AND si.entity = s.source_ip
            LEFT JOIN entity_seen co ON co.tenant = :tenant AND co.user_name = s.user_name
                 AND co.entity_type = 'country' AND co.entity = s.country
            LEFT JOIN entity_seen ci ON ci.tenant = :tenant AND ci.user_name = s.user_name
                 AND ci.entity_type = 'city' AND ci.entity = s.city
            LEFT JOIN entity_seen ap ON ap.tenant = :tenant AND ap.user_name = s.user_name
                 AND ap.entity_type = 'application' AND ap.entity = s.application
            LEFT JOIN entity_seen fc ON fc.tenant = :tenant AND fc.user_name = s.user_name
                 AND fc.entity_type = 'country' AND fc.entity = s.failed_country"""
        ),
        params,
    )
    conn.execute(text("ANALYZE scorer_ev"))
    conn.execute(text("DROP TABLE scorer_raw"))
    conn.execute(text("DROP TABLE scorer_moves"))
    conn.execute(text("DROP TABLE scorer_spread"))


_INSERT = "INSERT INTO user_hour_features (tenant, user_name, hour, model, features, event_count) "

# One statement per model; each writes a row only for user-hours the model saw something in.
_MODEL_INSERTS = (
    _INSERT
    + """SELECT :tenant, user_name, hour, 'login_time', jsonb_build_object('events', count(*)), count(*)
    FROM scorer_ev GROUP BY user_name, hour""",
    _INSERT
    + """SELECT :tenant, user_name, hour, 'authentication',
        jsonb_build_object(
            'successes', count(*) FILTER (WHERE event_type = ANY(:auth) AND outcome = 'success'),
            'failures', count(*) FILTER (WHERE outcome = 'failure'),
            'new_event_types', count(DISTINCT event_type) FILTER (WHERE new_event_type),
            'failures_from_new_countries', count(DISTINCT failed_country) FILTER (WHERE new_failed_country)),
        count(*) FILTER (WHERE event_type = ANY(:auth) OR outcome = 'failure')
    FROM scorer_ev GROUP BY user_name, hour
    HAVING count(*) FILTER (WHERE event_type = ANY(:auth) OR outcome = 'failure') > 0 OR bool_or(new_event_type)""",
    _INSERT
    + """SELECT :tenant, user_name, hour, 'impacted_host',
        jsonb_build_object('distinct_hosts', count(*), 'new_hosts', count(*) FILTER (WHERE is_new),
                           'connections', sum(n), 'max_to_one_host', max(n)),
        sum(n)
    FROM (SELECT user_name, hour, destination_host, count(*) AS n, bool_or(new_host) AS is_new
          FROM scorer_ev WHERE destination_host IS NOT NULL GROUP BY 1, 2, 3) per_host
    GROUP BY user_name, hour""",
    _INSERT
    + """SELECT :tenant, user_name, hour, 'origin_host',
        jsonb_build_object('distinct_origins', count(*), 'new_origins', count(*) FILTER (WHERE is_new),
                           'new_source_ips', sum(new_ips), 'max_from_one_origin', max(n),
                           'max_accounts_failing_from_origin', max(failing)),
        sum(n)
    FROM (SELECT user_name, hour, origin, count(*) AS n, bool_or(new_origin) AS is_new,
                 count(DISTINCT source_ip) FILTER (WHERE new_source_ip) AS new_ips,
                 max(failing_accounts) AS failing
          FROM scorer_ev WHERE origin IS NOT NULL GROUP BY 1, 2, 3) per_origin
    GROUP BY user_name, hour""",
    _INSERT
    + """SELECT :tenant, user_name, hour, 'origin_location',
        jsonb_build_object(
            'distinct_countries', count(DISTINCT country),
            'new_countries', count(DISTINCT country) FILTER (WHERE new_country),
            'distinct_cities', count(DISTINCT city),
            'new_cities', count(DISTINCT city) FILTER (WHERE new_city),
            'max_distance_km', round(coalesce(max(dist_km), 0)::numeric, 1),
            'max_speed_kmh', round(coalesce(max(speed_kmh), 0)::numeric, 1)),
        count(*)
    FROM scorer_ev WHERE country IS NOT NULL OR latitude IS NOT NULL GROUP BY user_name, hour""",
    _INSERT
    + """SELECT :tenant, user_name, hour, 'data_movement',
        jsonb_build_object(
            'files_downloaded', coalesce(sum(files) FILTER (WHERE event_type = 'file_download'), 0),
            'bytes_downloaded', coalesce(sum(bytes) FILTER (WHERE event_type = 'file_download'), 0),
            'files_uploaded', coalesce(sum(files) FILTER (WHERE event_type = 'file_upload'), 0),
            'bytes_uploaded', coalesce(sum(bytes) FILTER (WHERE event_type = 'file_upload'), 0),
            'files_deleted', coalesce(sum(files) FILTER (WHERE event_type = 'file_delete'), 0),
            'files_shared', coalesce(sum(files) FILTER (WHERE event_type = 'file_share'), 0),
            'new_applications', count(DISTINCT application) FILTER (WHERE new_application)),
        count(*)
    FROM scorer_ev WHERE event_type = ANY(:data) GROUP BY user_name, hour""",
)
