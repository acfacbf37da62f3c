"""Bringing a fresh detector up to the state a long-running one would have (README: "State across restarts")."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection

from services.profiles.kinds import ProfileDetector
from services.profiles.store import events, history


def warm_detector(
    conn: Connection,
    detector: ProfileDetector,
    until: datetime,
    *,
    until_inclusive: bool,
    visible_in: str | None = None,
    buckets: events.BucketSet | None = None,
    fired_from_store: bool = False,
) -> int:
    """Replays history before `until` (of the users in `buckets`, when given) into the detector;
    returns the events replayed. With `fired_from_store`, the windows the profile fired (its
    stored anomalies) are restored first, so the replay rebuilds the windows the live detector had."""
    tenant = detector.spec.tenant
    params = detector.params
    lookback = timedelta(seconds=type(detector).lookback_seconds(params))
    replay_from = until - lookback
    if fired_from_store:
        carried = replay_from - timedelta(seconds=type(detector).fired_carry_seconds(params))
        for group, start, end in history.fired_windows(conn, tenant, detector.spec.id, carried, until, lookback, buckets):
            detector.restore_fired(group, start.timestamp(), end.timestamp())
    needs = type(detector).history_needs(params)
    if needs is not None:
        since = until - timedelta(days=needs.days)
        if needs.users:
            detector.seed_users(history.user_history(conn, tenant, since, until, visible_in, buckets))
        if needs.seen_entities:
            detector.seed_entities(
                history.entity_history(conn, tenant, needs.seen_entities, since, until, visible_in, buckets))
        if needs.daily_uploads:
            # The replay below adds the last stretch itself.
            detector.seed_daily_uploads(history.daily_upload_history(conn, tenant, since, replay_from, visible_in, buckets))
        for interval in needs.failure_spread:
            # Up to the replay, which adds its own windows.
            detector.seed_failure_spread(interval, history.failure_spread_history(
                conn, tenant, since, replay_from, interval,
                include_trusted=not params.get("spray_ignore_trusted", True),
                applications=[a.lower() for a in detector.spec.applications], visible_in=visible_in))
    replayed = 0
    for event in history.replay_events(
        conn, tenant, replay_from, until, event_types=detector.event_types,
        until_inclusive=until_inclusive, visible_in=visible_in, buckets=buckets,
    ):
        if detector.accepts(event):
            detector.observe(event)
        replayed += 1
    return replayed
