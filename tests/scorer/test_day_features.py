"""The day rollup (user_day_features) and the hour vectors (user_hour_vectors) against the hourly rows they
are made of, on real Postgres data: baselines and scored hours read from them equal those read from every
hourly row, they follow re-aggregation of late events, and an upgraded populated database gets them
backfilled and scores as before."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import psycopg
import pytest
from sqlalchemy import text

from services.scorer import baseline, day_features, hour_vectors
from services.scorer.baseline import COLUMNS, NOVELTY, stored_features
from services.scorer.settings import ScorerSettings
from tests.scorer.conftest import SCORED_DAY, make_scorer
from tests.scorer.helpers import START, Activity
from ueba.db import libpq_url
from ueba.store.migrate import downgrade, upgrade

BEFORE_ROLLUP = "0016_risk_hour_totals"  # before the day rollup and the hour vectors
SETTLER_FIRST = START + timedelta(days=10, hours=10)  # learning ends mid-day, inside the scored day's baseline


def _activity() -> Activity:
    act = Activity()
    for i in range(8):
        act.office_month(f"user{i}", 28, department="sales" if i < 4 else None)
        act.workday(f"user{i}", SCORED_DAY)
    for d in range(10, 28):
        act.workday("settler", START + timedelta(days=d), hours=range(10, 19), hosts=(f"srv-{d % 4}",))
    for d in range(0, 28, 3):  # trips: distances and speeds in tenths of km, new cities, uploads in bytes
        t = START + timedelta(days=d, hours=12, minutes=20)
        act.event("user1", t, "logon", city="leeds", source_ip=f"198.51.100.{d}")
        act.event("user2", t, "file_upload", application=f"app{d}", bytes=123_456_789 * (d + 1), file_count=3)
        act.event("user3", t, "logon", outcome="failure", source_host="sprayer")
    return act


def _late_events() -> Activity:
    """Events that arrive after their hours were aggregated, and a new day."""
    act = Activity()
    for user in ("user0", "user1", "settler"):
        act.event(user, START + timedelta(days=20, hours=11, minutes=50), "host_access", destination_host="late-host")
        act.event(user, START + timedelta(days=20, hours=2), "logon", city="moscow")
    act.event("user4", START + timedelta(days=27, hours=23, minutes=59), "file_download", bytes=7_777, file_count=1)
    return act


@pytest.fixture
def tenant_url(migrated_databases):
    name, url = migrated_databases.new("ueba_dayf")
    _activity().write(url)
    yield url
    migrated_databases.drop(name)


def _hourly_baseline(url: str, day: datetime, settings: ScorerSettings) -> dict[str, dict[str, np.ndarray]]:
    """Per user, what the baseline sums over its hours, computed here from every hourly row."""
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT user_name, hour, model, features FROM user_hour_features WHERE tenant = 'default' AND hour < %s",
            (day,)).fetchall()
    first = {}
    for user, hour, model, _ in rows:
        if model == baseline.ACTIVITY_MODEL:
            first[user] = min(first.get(user, hour), hour)
    b0, J = day - timedelta(days=settings.baseline_days), len(COLUMNS)
    out: dict[str, dict[str, np.ndarray]] = {}
    for user, hour, model, feats in rows:
        if hour < b0:
            continue
        a = out.setdefault(user, {"n_all": np.zeros(1), "n_set": np.zeros(1), "a_hod": np.zeros(24),
                                  "s_all": np.zeros(J), "q_all": np.zeros(J), "s_set": np.zeros(J)})
        settled = user in first and hour >= first[user] + timedelta(days=settings.min_baseline_days)
        if model == baseline.ACTIVITY_MODEL:
            a["n_all"] += 1
            a["a_hod"][hour.hour] += 1
            a["n_set"] += settled
        for j, (m, f) in enumerate(stored_features()):
            if m.name != model:
                continue
            x = float(feats.get(f.name, 0))
            capped = min(x, f.baseline_cap) if f.baseline_cap is not None else x
            a["s_all"][j] += capped
            a["q_all"][j] += capped * capped
            if j in NOVELTY and settled:
                a["s_set"][j] += x
    return out


def _hourly_rows(url: str) -> list[tuple]:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute("SELECT user_name, hour, model, features FROM user_hour_features WHERE tenant = 'default'"
                            " ORDER BY 1, 2, 3").fetchall()


def _hourly_weekday_and_window(url: str, day: datetime, settings: ScorerSettings) -> tuple[dict, dict]:
    """Per user, the same-weekday counts and sums by hour of day, and per active user-hour of `day` the
    observed features and the models with a row, computed here from every hourly row."""
    J = len(COLUMNS)
    weeks = [day - timedelta(days=7 * k) for k in range(1, settings.baseline_days // 7 + 1)]
    weekday: dict[str, dict[str, np.ndarray]] = {}
    hours: dict[tuple[str, datetime], dict] = {}
    for user, hour, model, feats in _hourly_rows(url):
        values = {j: float(feats.get(f.name, 0)) for j, (m, f) in enumerate(stored_features()) if m.name == model}
        if any(w <= hour < w + timedelta(days=1) for w in weeks):
            a = weekday.setdefault(user, {"n_how": np.zeros(24), "s_how": np.zeros((24, J))})
            a["n_how"][hour.hour] += model == baseline.ACTIVITY_MODEL
            for j, x in values.items():
                cap = stored_features()[j][1].baseline_cap
                a["s_how"][hour.hour, j] += min(x, cap) if cap is not None else x
        if day <= hour < day + timedelta(days=1):
            h = hours.setdefault((user, hour), {"x": np.zeros(J), "present": set()})
            h["present"].add(model)
            for j, x in values.items():
                h["x"][j] = x
    window = {k: v for k, v in hours.items() if baseline.ACTIVITY_MODEL in v["present"]}
    return weekday, window


def _rollup_baseline(url: str, day: datetime, settings: ScorerSettings, buckets=None) -> baseline.DayData:
    scorer = make_scorer(url)
    try:
        with scorer.engine.begin() as conn:
            conn.execute(text("SET TIME ZONE 'UTC'"))
            first = baseline.load_first_hours(conn, "default")
            return baseline.load_day(conn, "default", day, (day, day + timedelta(days=1)), settings.baseline_days,
                                     settings.min_baseline_days, first, buckets)
    finally:
        scorer.engine.dispose()


def _assert_same_baselines(data: baseline.DayData, expected: dict[str, dict[str, np.ndarray]]) -> None:
    assert set(data.users) == set(expected)
    for i, user in enumerate(data.users):
        want = expected[user]
        for name in ("n_all", "n_set", "a_hod"):  # counts: exact
            assert np.array_equal(np.atleast_1d(getattr(data, name)[i]), want[name]), (user, name)
        for name in ("s_all", "q_all", "s_set"):  # sums of tenths and of bytes squared: up to rounding
            np.testing.assert_allclose(getattr(data, name)[i], want[name], rtol=1e-12, atol=0, err_msg=f"{user} {name}")


def _score(url: str, day: datetime = SCORED_DAY) -> None:
    scorer = make_scorer(url)
    try:
        result = scorer.run("default", day, day + timedelta(days=1))
        assert result.status == "succeeded", result.error
    finally:
        scorer.engine.dispose()


def _rollup_rows(conn) -> list[tuple]:
    return conn.execute("SELECT tenant, user_name, day, active_hours, active_hours_of_day, first_active, sums"
                        " FROM user_day_features ORDER BY 1, 2, 3").fetchall()


def _assert_same_rollup(got: list[tuple], want: list[tuple]) -> None:
    assert [r[:6] for r in got] == [r[:6] for r in want]
    np.testing.assert_allclose(np.array([r[6] for r in got]), np.array([r[6] for r in want]), rtol=1e-12, atol=0)


def _rebuilt(url: str) -> tuple[list[tuple], list[tuple]]:
    """The rollup as kept, and as rebuilt from the hourly rows now (rolled back)."""
    with psycopg.connect(libpq_url(url)) as conn:
        kept = _rollup_rows(conn)
    scorer = make_scorer(url)
    try:
        with scorer.engine.connect() as conn, conn.begin() as tx:
            day_features.rebuild(conn)
            rebuilt = [tuple(r) for r in conn.execute(text(
                "SELECT tenant, user_name, day, active_hours, active_hours_of_day, first_active, sums"
                " FROM user_day_features ORDER BY 1, 2, 3")).all()]
            tx.rollback()
    finally:
        scorer.engine.dispose()
    return kept, rebuilt


def test_baselines_from_the_day_rollup_equal_the_sums_over_every_hour(tenant_url):
    settings = ScorerSettings.from_env({"DATABASE_URL": tenant_url})
    _score(tenant_url)
    expected = _hourly_baseline(tenant_url, SCORED_DAY, settings)
    settler_end = SETTLER_FIRST + timedelta(days=settings.min_baseline_days)
    assert SCORED_DAY - timedelta(days=settings.baseline_days) < settler_end < SCORED_DAY and settler_end.hour
    assert 0 < expected["settler"]["n_set"][0] < expected["settler"]["n_all"][0]  # the split falls inside a day
    assert expected["user1"]["s_set"][COLUMNS.index(("origin_host", "new_source_ips"))] > 0
    assert expected["user2"]["q_all"][COLUMNS.index(("data_movement", "bytes_uploaded"))] > 2.0 ** 53
    _assert_same_baselines(_rollup_baseline(tenant_url, SCORED_DAY, settings), expected)

    # The users of some buckets alone, as a scheduled replica loads them.
    some = _rollup_baseline(tenant_url, SCORED_DAY, settings, buckets=(4, [1, 3]))
    assert 0 < len(some.users) < len(expected)
    _assert_same_baselines(some, {u: expected[u] for u in some.users})


def test_same_weekday_sums_and_scored_hours_from_the_hour_vectors_equal_the_hourly_rows(tenant_url):
    settings = ScorerSettings.from_env({"DATABASE_URL": tenant_url})
    _score(tenant_url)
    weekday, window = _hourly_weekday_and_window(tenant_url, SCORED_DAY, settings)
    data = _rollup_baseline(tenant_url, SCORED_DAY, settings)
    assert len(window) > 50 and any(a["s_how"][:, COLUMNS.index(("origin_location", "max_distance_km"))].any()
                                    for a in weekday.values())
    for i, user in enumerate(data.users):
        want = weekday.get(user, {"n_how": np.zeros(24), "s_how": np.zeros((24, len(COLUMNS)))})
        assert np.array_equal(data.n_how[i], want["n_how"]), user
        np.testing.assert_allclose(data.s_how[i], want["s_how"], rtol=1e-12, atol=0, err_msg=user)
    got = [(data.users[u], t) for u, t in zip(data.w_user.tolist(), data.w_time)]
    assert got == sorted(window)
    for r, key in enumerate(got):
        assert np.array_equal(data.x[r], window[key]["x"]), key
        assert {m for m, seen in data.present.items() if seen[r]} == window[key]["present"], key


def _vector_rows(conn) -> list[tuple]:
    return [tuple(r) for r in conn.execute(text(
        "SELECT tenant, user_name, hour, models, vals FROM user_hour_vectors ORDER BY 1, 2, 3")).all()]


def test_late_events_re_aggregated_keep_the_hour_vectors_equal_to_a_rebuild(tenant_url):
    _score(tenant_url)
    scorer = make_scorer(tenant_url)
    try:
        with scorer.engine.connect() as conn:
            before = _vector_rows(conn)
        _late_events().write(tenant_url)
        _score(tenant_url)
        with scorer.engine.connect() as conn, conn.begin() as tx:
            kept = _vector_rows(conn)
            assert hour_vectors.rebuild(conn) == len(kept)
            rebuilt = _vector_rows(conn)
            tx.rollback()
    finally:
        scorer.engine.dispose()
    assert kept == rebuilt  # values as stored, no sums: exact
    assert kept != before and len(kept) > len(before)  # late events changed hours and added new ones


def test_late_events_re_aggregated_keep_the_rollup_equal_to_a_rebuild(tenant_url):
    _score(tenant_url)
    before, _ = _rebuilt(tenant_url)
    _late_events().write(tenant_url)
    _score(tenant_url)
    kept, rebuilt = _rebuilt(tenant_url)
    _assert_same_rollup(kept, rebuilt)
    assert kept != before  # the late events changed days already rolled up
    settings = ScorerSettings.from_env({"DATABASE_URL": tenant_url})
    _assert_same_baselines(_rollup_baseline(tenant_url, SCORED_DAY, settings),
                           _hourly_baseline(tenant_url, SCORED_DAY, settings))


def test_upgrading_a_populated_database_backfills_the_rollup_and_vectors_and_scores_alike(tenant_url):
    _score(tenant_url)
    scores = "SELECT user_name, hour, model, score, features FROM event_scores ORDER BY 1, 2, 3"
    vectors = "SELECT tenant, user_name, hour, models, vals FROM user_hour_vectors ORDER BY 1, 2, 3"
    with psycopg.connect(libpq_url(tenant_url)) as conn:
        rollup, scored, kept = _rollup_rows(conn), conn.execute(scores).fetchall(), conn.execute(vectors).fetchall()
    assert rollup and scored and kept
    downgrade(tenant_url, BEFORE_ROLLUP)
    upgrade(tenant_url)
    with psycopg.connect(libpq_url(tenant_url)) as conn:
        _assert_same_rollup(_rollup_rows(conn), rollup)
        assert conn.execute(vectors).fetchall() == kept
    _score(tenant_url)
    with psycopg.connect(libpq_url(tenant_url)) as conn:
        assert conn.execute(scores).fetchall() == scored


def test_novelty_sums_past_learning_are_uncapped_as_the_rollup_stores_them():
    # The rollup keeps capped sums only; a novelty feature with a cap would need its raw sums too.
    assert all(stored_features()[j][1].baseline_cap is None for j in NOVELTY)
