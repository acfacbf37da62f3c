"""Scoring runs against real Postgres: features, each model on constructed cases, user scores,
anomalies, learning and ignore handling, peer groups, the anomaly.log sink, idempotent re-runs
and crash safety."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY

from services.scorer.calibration import MIN_REFERENCE, day_score, joint_decades
from services.scorer.model_anomalies import decisive_feature
from services.scorer.models import BY_NAME, RESTATING
from services.scorer.scoring import surprise_of_score
from services.scorer.settings import ScorerSettings
from services.scorer.store.user_scores import DECISIVE_FROM
from tests.scorer.conftest import SCORED_DAY, make_scorer
from tests.scorer.helpers import START, Activity
from ueba.db import libpq_url


def _features(scn, user: str, hour: int, model: str) -> dict:
    rows = scn.query(
        "SELECT score, features FROM event_scores WHERE user_name = %s AND hour = %s AND model = %s",
        user, SCORED_DAY + timedelta(hours=hour), model,
    )
    assert rows, f"no {model} score for {user} at {hour}:00"
    score, feats = rows[0]
    return {"score": score, **{f["name"]: f for f in feats}}


@pytest.mark.parametrize(
    "user, hour, model, feature, at_least",
    [
        ("user0", 14, "authentication", "failures", 90),
        ("user0", 14, "origin_host", "max_from_one_origin", 90),
        ("user0", 14, "peer_group", "peer_failures", 90),
        ("user1", 15, "origin_location", "max_speed_kmh", 90),
        ("user2", 11, "impacted_host", "distinct_hosts", 90),
        ("user3", 13, "data_movement", "files_downloaded", 90),
        # An unusual hour alone is worth a look, not an alarm.
        ("user4", 3, "login_time", "active", 55),
        ("user5", 12, "data_movement", "bytes_uploaded", 70),
    ],
)
def test_each_model_flags_its_constructed_case(scenario, user, hour, model, feature, at_least):
    f = _features(scenario, user, hour, model)
    assert f["score"] >= at_least
    item = f[feature]
    assert item["share"] > 0.1, f
    if model == "login_time":
        assert item["expected"] < 0.05  # probability of activity at 03:00 on a Monday
    else:
        assert item["observed"] > 5 * item["expected"]


def test_novelty_features_name_what_is_new(scenario):
    f = _features(scenario, "user1", 15, "origin_location")
    assert f["new_countries"]["observed"] == 1 and f["new_cities"]["observed"] == 1
    assert f["new_countries"]["expected"] < 0.05
    assert f["max_distance_km"]["observed"] == pytest.approx(16994, rel=0.01)
    f = _features(scenario, "user2", 11, "impacted_host")
    assert f["new_hosts"]["observed"] == 30
    f = _features(scenario, "user5", 12, "data_movement")
    assert f["new_applications"]["observed"] == 1


def test_hourly_features_and_sightings_are_stored(scenario):
    (feats,) = scenario.query(
        "SELECT features FROM user_hour_features WHERE user_name = 'user0' AND hour = %s AND model = 'authentication'",
        SCORED_DAY + timedelta(hours=14),
    )[0]
    assert feats["failures"] == 25 and feats["successes"] == 1
    rows = scenario.query(
        "SELECT first_seen, seen_count FROM entity_seen WHERE user_name = 'user0' AND entity_type = 'source_host' AND entity = 'evil-box'"
    )
    assert rows == [(SCORED_DAY + timedelta(hours=14), 25)]
    (first,) = scenario.query(
        "SELECT min(first_seen) FROM entity_seen WHERE user_name = 'user7' AND entity_type = 'destination_host'"
    )[0]
    assert first == START + timedelta(hours=9, minutes=5)


def test_ordinary_users_stay_low(scenario):
    rows = scenario.query("SELECT user_name, score FROM user_scores WHERE user_name IN ('user7','user8','user9','user10','user11')")
    assert len(rows) == 5
    assert max(score for _, score in rows) < 40
    (hot,) = scenario.query(
        "SELECT count(*) FROM event_scores WHERE user_name IN ('user7','user8','user9','user10','user11') AND score >= 70"
    )[0]
    assert hot == 0


def _expected_day_score(scn, user: str) -> float:
    """With too few user-days for a population, each source keeps its nominal surprise, in the
    dimension of the feature deciding the model's strongest hour; restating dimensions only stand alone."""
    best: dict[str, float] = defaultdict(float)
    for model, score, features in scn.query(
            "SELECT DISTINCT ON (model) model, score, features FROM event_scores WHERE user_name = %s "
            "ORDER BY model, score DESC, hour", user):
        mixed = BY_NAME[model].mixed and score >= DECISIVE_FROM
        dimension = BY_NAME[model].dimension_of(decisive_feature(features) if mixed else None)
        best[dimension] = max(best[dimension], float(surprise_of_score(float(score))))
    for dimension, kind, score in scn.query(
            "SELECT dimension, profile_kind, max(risk_score) FROM anomalies WHERE user_name = %s AND source = 'rule' "
            "AND entity_type = 'user' GROUP BY 1, 2", user):
        key = dimension or f"rule:{kind}"
        best[key] = max(best[key], float(surprise_of_score(float(score))))
    restating = max((best.pop(d) for d in RESTATING if d in best), default=0.0)
    return day_score(max(joint_decades(best.values()), restating))


def test_user_score_combines_the_strongest_evidence_of_each_dimension(scenario):
    (user_days,) = scenario.query(
        "SELECT count(DISTINCT (user_name, CAST(hour AS date))) FROM event_scores WHERE NOT learning")[0]
    assert user_days < MIN_REFERENCE
    for user in ("user0", "user1", "user3", "user7"):
        ((score, hours),) = scenario.query("SELECT score, scored_hours FROM user_scores WHERE user_name = %s", user)
        assert score == pytest.approx(_expected_day_score(scenario, user), abs=0.01)
        (n_hours,) = scenario.query("SELECT count(DISTINCT hour) FROM event_scores WHERE user_name = %s", user)[0]
        assert hours == n_hours


def test_model_anomalies_describe_the_top_features(scenario):
    rows = {r[0]: r[1:] for r in scenario.query(
        "SELECT user_name, profile_kind, risk_score, description, dimension, dedup_key, evidence, source FROM anomalies"
    )}
    assert {"user0", "user1", "user3", "user5"} <= set(rows)
    assert not {"user6", "newbie", "user7", "user8"} & set(rows)  # ignored, learning, ordinary
    kind, risk, description, dimension, key, evidence, source = rows["user0"]
    # The organisation's first scored day: no earlier user-day makes it rare, so its risk is the
    # floor of the rarity scale, while its day score ranks it.
    assert source == "model" and risk == 10 and evidence["day_score"] >= 70
    assert "25 failed logons" in description
    assert key == f"model:user0:{SCORED_DAY.date().isoformat()}"
    assert evidence["event_ids"] and evidence["top_model"] == kind
    assert "new country AU" in rows["user1"][2]
    assert rows["user1"][3] == "location"


def test_learning_users_are_flagged_and_ignored_users_hidden(scenario):
    assert scenario.query("SELECT count(*) FROM event_scores WHERE user_name = 'user6'")[0][0] == 0
    assert scenario.query("SELECT count(*) FROM user_scores WHERE user_name = 'user6'")[0][0] == 0
    learning = scenario.query("SELECT DISTINCT learning FROM event_scores WHERE user_name = 'newbie'")
    assert learning == [(True,)]
    assert scenario.query("SELECT learning FROM user_scores WHERE user_name = 'newbie'") == [(True,)]
    assert scenario.query("SELECT DISTINCT learning FROM event_scores WHERE user_name = 'user0'") == [(False,)]
    assert scenario.run.figures["learning_users"] == 1


def test_peer_groups_from_departments_and_clusters(scenario):
    groups = {r[0]: r[1:] for r in scenario.query("SELECT id, method, members FROM peer_groups")}
    assert groups["department:sales"] == ("department", [f"user{i}" for i in range(6)])
    clustered = sorted(m for gid, (method, members) in groups.items() if method == "clustering" for m in members)
    assert clustered == sorted(["newbie"] + [f"user{i}" for i in range(6, 12)])
    rows = dict(scenario.query("SELECT user_name, peer_group_id FROM users"))
    assert rows["user0"] == "department:sales" and rows["user9"].startswith("cluster:")


def test_every_score_reaches_the_anomaly_log_and_every_model_anomaly_the_outbox(scenario):
    lines = [json.loads(line) for line in scenario.sink.read_text().splitlines()]
    kinds = [line["type"] for line in lines]
    assert kinds.count("event_score") == scenario.run.figures["event_scores"]
    assert kinds.count("user_score") == scenario.run.figures["user_scores"]
    # Findings travel through the outbox (services/delivery), in the one schema of every finding.
    assert "model_anomaly" not in kinds
    announced = scenario.query("SELECT count(*) FROM outbox WHERE kind = 'model'")[0][0]
    assert announced == scenario.run.figures["anomalies"] > 0
    sample = next(line for line in lines if line["type"] == "event_score" and line["user"] == "user0" and line["model"] == "authentication" and line["hour"].startswith(f"{SCORED_DAY.date()}T14"))
    assert sample["score"] >= 70 and {f["name"] for f in sample["features"]} >= {"failures", "failure_ratio"}


def _snapshot(url: str) -> dict:
    with psycopg.connect(libpq_url(url)) as conn:
        return {
            "event_scores": conn.execute("SELECT user_name, hour, model, score, features, learning FROM event_scores ORDER BY 1, 2, 3").fetchall(),
            "user_scores": conn.execute("SELECT user_name, day, score, scored_hours, learning, top_features FROM user_scores ORDER BY 1, 2").fetchall(),
            "anomalies": conn.execute("SELECT user_name, profile_kind, risk_score, description, dedup_key FROM anomalies ORDER BY 1").fetchall(),
            "features": conn.execute("SELECT user_name, hour, model, features FROM user_hour_features ORDER BY 1, 2, 3").fetchall(),
            "seen": conn.execute("SELECT user_name, entity_type, entity, first_seen, last_seen, seen_count FROM entity_seen ORDER BY 1, 2, 3").fetchall(),
        }


def _small_org(url: str, days: int = 10) -> None:
    act = Activity()
    for i in range(4):
        act.office_month(f"u{i}", days)
    act.write(url)


def test_rerunning_a_window_gives_the_same_rows(scratch_url):
    _small_org(scratch_url)
    scorer = make_scorer(scratch_url)
    window = (START + timedelta(days=8), START + timedelta(days=10))
    first = scorer.run("default", *window)
    before = _snapshot(scratch_url)
    second = scorer.run("default", *window)
    assert first.status == second.status == "succeeded"
    assert _snapshot(scratch_url) == before
    assert before["event_scores"] and before["user_scores"]
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        assert conn.execute("SELECT DISTINCT run_id::text FROM event_scores").fetchall() == [(second.id,)]
    scorer.engine.dispose()


@pytest.mark.parametrize("stage", ["features", "event_scores", "user_scores", "anomalies"])
def test_a_run_that_fails_midway_leaves_nothing_behind(scratch_url, stage):
    _small_org(scratch_url)
    scorer = make_scorer(scratch_url)
    window = (START + timedelta(days=8), START + timedelta(days=9))
    assert scorer.run("default", *window).status == "succeeded"
    before = _snapshot(scratch_url)
    late = Activity()  # a late event for an hour already scored, from a new machine
    late.event("u1", START + timedelta(days=8, hours=10, minutes=50), "logon", outcome="failure", source_host="late-box")
    late.write(scratch_url)

    def crash(at: str) -> None:
        if at == stage:
            raise RuntimeError(f"injected failure at {at}")

    scorer.fail_point = crash
    failed = scorer.run("default", *window)
    assert failed.status == "failed" and "injected failure" in failed.error
    after = _snapshot(scratch_url)
    # Not one score of the failed run remains. A failure after aggregation keeps the
    # aggregation (committed with its cursor, in a transaction of its own).
    scores = ("event_scores", "user_scores", "anomalies")
    assert {k: after[k] for k in scores} == {k: before[k] for k in scores}
    if stage == "features":
        assert after == before
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        status, error = conn.execute("SELECT status, error FROM scoring_runs WHERE id = %s", (failed.id,)).fetchone()
        assert status == "failed" and "injected" in error
        assert conn.execute("SELECT count(*) FROM event_scores WHERE run_id = %s", (failed.id,)).fetchone()[0] == 0
    # The late event is aggregated exactly once: by the next run when the failed run's
    # aggregation rolled back, else already.
    scorer.fail_point = None
    ok = scorer.run("default", *window)
    assert ok.status == "succeeded" and ok.figures["new_events"] == (1 if stage == "features" else 0)
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        feats = conn.execute(
            "SELECT features FROM user_hour_features WHERE user_name = 'u1' AND hour = %s AND model = 'authentication'",
            (START + timedelta(days=8, hours=10),),
        ).fetchone()[0]
        assert feats["failures"] == 1
        assert conn.execute("SELECT seen_count FROM entity_seen WHERE entity = 'late-box'").fetchone()[0] == 1
    scorer.engine.dispose()


def _runs_counted(status: str) -> float:
    return REGISTRY.get_sample_value("ueba_scoring_runs_total", {"status": status}) or 0.0


def test_each_finished_run_is_counted_by_status(scratch_url):
    _small_org(scratch_url, days=9)
    scorer = make_scorer(scratch_url)
    window = (START + timedelta(days=8), START + timedelta(days=9))
    succeeded, failed = _runs_counted("succeeded"), _runs_counted("failed")
    assert scorer.run("default", *window).status == "succeeded"
    assert (_runs_counted("succeeded"), _runs_counted("failed")) == (succeeded + 1, failed)

    def crash(at: str) -> None:
        raise RuntimeError(f"injected failure at {at}")

    scorer.fail_point = crash
    assert scorer.run("default", *window).status == "failed"
    assert (_runs_counted("succeeded"), _runs_counted("failed")) == (succeeded + 1, failed + 1)
    scorer.engine.dispose()


def test_incremental_refresh_processes_each_event_once(scratch_url):
    _small_org(scratch_url, days=9)
    scorer = make_scorer(scratch_url)
    window = (START + timedelta(days=8), START + timedelta(days=9))
    first = scorer.run("default", *window)
    assert first.figures["new_events"] > 0
    again = scorer.run("default", *window)
    assert again.figures["new_events"] == 0 and again.figures["dirty_user_hours"] == 0
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        count = conn.execute("SELECT seen_count FROM entity_seen WHERE user_name = 'u0' AND entity_type = 'destination_host' AND entity = 'fs1'").fetchone()[0]
    assert count == 7 * 8  # seven weekdays in nine days from a Monday, eight hours each, each event once
    scorer.engine.dispose()


def test_failures_naming_no_account_are_no_user_and_no_failing_account(scratch_url):
    """Rows with user_name '' (a failure kept for its source) get no features, sightings or scores,
    and do not count as another account failing from their origin."""
    org = Activity()
    hour = START + timedelta(days=1, hours=10)
    org.event("u1", hour, outcome="failure", source_ip="203.0.113.9")
    for minute in range(1, 6):
        org.event("", hour + timedelta(minutes=minute), outcome="failure", source_ip="203.0.113.9")
    org.write(scratch_url, users_table=False)
    scorer = make_scorer(scratch_url)
    assert scorer.run("default", START, START + timedelta(days=2)).status == "succeeded"
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        users = {table: {r[0] for r in conn.execute(f"SELECT DISTINCT user_name FROM {table}")}
                 for table in ("user_hour_features", "entity_seen", "event_scores")}
        failing = conn.execute(
            "SELECT features->>'max_accounts_failing_from_origin' FROM user_hour_features WHERE user_name = 'u1' AND model = 'origin_host'"
        ).fetchone()[0]
    assert users == {"user_hour_features": {"u1"}, "entity_seen": {"u1"}, "event_scores": {"u1"}}
    assert failing == "1"
    scorer.engine.dispose()


def test_a_rule_finding_about_the_user_enters_the_day_score(scenario):
    before = scenario.query("SELECT score FROM user_scores WHERE user_name = 'user11'")[0][0]
    when = SCORED_DAY + timedelta(hours=10)
    with psycopg.connect(libpq_url(scenario.url), autocommit=True) as conn:
        conn.execute(
            """INSERT INTO anomalies (tenant, user_name, source, profile_id, profile_name, profile_kind, risk_score,
                                      description, dimension, time, window_start, window_end, dedup_key, entity)
               VALUES ('default', 'user11', 'rule', 'p', 'Risky countries', 'risky_countries', 70, 'from RU',
                       'location', %s, %s, %s, 'test:user11', 'user11')""", (when, when, when))
    try:
        run = scenario.scorer.run("default", SCORED_DAY, SCORED_DAY + timedelta(days=1))
        assert run.status == "succeeded", run.error
        after = scenario.query("SELECT score FROM user_scores WHERE user_name = 'user11'")[0][0]
        assert after > before + 20
        assert after == pytest.approx(_expected_day_score(scenario, "user11"), abs=0.01)
    finally:
        with psycopg.connect(libpq_url(scenario.url), autocommit=True) as conn:
            conn.execute("DELETE FROM anomalies WHERE dedup_key = 'test:user11'")
        assert scenario.scorer.run("default", SCORED_DAY, SCORED_DAY + timedelta(days=1)).status == "succeeded"


def test_user_names_with_tabs_backslashes_and_line_breaks_are_scored_under_their_own_names(scratch_url, tmp_path):
    """Event scores reach Postgres as COPY text lines: every character COPY gives a meaning must
    arrive as itself, in the table and in anomaly.log."""
    odd = ["tab\tuser", "back\\slash", "line\nbreak", "cr\rreturn", 'quote"d \\N']
    act = Activity()
    for user in ["plain", *odd]:
        act.office_month(user, 9)
    act.write(scratch_url)
    sink = tmp_path / "anomaly.log"
    scorer = make_scorer(scratch_url, sink)
    run = scorer.run("default", START + timedelta(days=8), START + timedelta(days=9))
    assert run.status == "succeeded"
    with psycopg.connect(libpq_url(scratch_url)) as conn:
        stored = conn.execute("SELECT user_name, count(*), bool_and(jsonb_typeof(features) = 'array') "
                              "FROM event_scores GROUP BY user_name").fetchall()
    per_user = {user: (n, arrays) for user, n, arrays in stored}
    assert set(per_user) == {"plain", *odd}
    assert all(arrays for _n, arrays in per_user.values())
    assert len({n for n, _ in per_user.values()}) == 1  # the same office hours, so the same rows each
    logged = [json.loads(line) for line in sink.read_text().splitlines()]
    assert {e["user"] for e in logged if e["type"] == "event_score"} == {"plain", *odd}
    assert run.figures["event_scores"] == sum(n for n, _ in per_user.values())
    scorer.engine.dispose()
