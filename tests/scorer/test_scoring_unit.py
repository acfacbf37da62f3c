"""Scorer logic without a database: tails, the score scale, shrinkage, user-day scores, windows,
schedule and settings."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from services.scorer import scoring
from services.scorer.baseline import BASELINE_ARRAYS, COLUMN, COLUMNS, DayData, group_sums
from services.scorer.models import CORROBORATING, IMPACTED_HOST, MODELS, ORIGIN_HOST, PEER_GROUP
from services.scorer.schedule import Schedule, next_fire
from services.scorer.settings import ScorerSettings, parse_every, parse_schedule
from services.scorer.store.user_scores import HourlyScores
from services.scorer.calibration import Calibration, Reference, RuleFinding, day_score, joint_decades
from services.scorer.user_scores import user_days
from services.scorer.window import default_window, requested_window
from ueba.settings import SettingsError

DAY = datetime(2026, 3, 30, tzinfo=timezone.utc)


def test_score_scale_is_monotone_and_anchored():
    p = np.array([1.0, 0.5, 1e-2, 1e-4, 1e-6, 1e-12])
    s = scoring.score_from_p(p)
    assert list(s) == sorted(s)
    assert s[0] == 1 and s[3] == 70 and s[4] == 90 and s[5] == 100


def test_count_tail_matches_poisson_and_widens_with_dispersion():
    observed = np.array([0.0, 3.0, 10.0])
    mean = np.array([2.0, 2.0, 2.0])
    poisson = scoring.count_tail(observed, mean, np.ones(3))
    assert poisson[0] == 1.0
    assert poisson[1] == pytest.approx(1 - (np.exp(-2) * (1 + 2 + 2)), rel=1e-9)
    wide = scoring.count_tail(observed, mean, np.full(3, 5.0))
    assert wide[2] > poisson[2] * 10  # overdispersion makes 10 vs 2 far less surprising


def test_ratio_tail_is_binomial():
    p = scoring.ratio_tail(np.array([0.0, 9.0]), np.array([10.0, 10.0]), np.array([0.1, 0.1]))
    assert p[0] == 1.0
    assert p[1] == pytest.approx(10 * 0.1**9 * 0.9 + 0.1**10)


def _day(users: int, weeks_of_history: int = 4) -> DayData:
    """Users with identical, steady 09-17 weekday habits; one row per active hour of the day scored."""
    J = len(COLUMNS)
    days = 7 * weeks_of_history
    hours_active = 8
    n_all = np.full(users, float(days * 5 / 7 * hours_active))
    s_all = np.zeros((users, J))
    q_all = np.zeros((users, J))
    ev = COLUMN[("login_time", "events")]
    s_all[:, ev] = 4 * n_all
    q_all[:, ev] = 16 * n_all
    n_how = np.zeros((users, 24))
    n_how[:, 9:17] = weeks_of_history
    s_how = np.zeros((users, 24, J))
    s_how[:, 9:17, ev] = 4 * weeks_of_history
    a_hod = np.zeros((users, 24))
    a_hod[:, 9:17] = days * 5 / 7
    first = (np.datetime64(DAY.replace(tzinfo=None)) - np.datetime64("1970-01-01T00:00:00")) / np.timedelta64(1, "h")
    data = DayData(day=DAY, users=[f"u{i}" for i in range(users)], first_hour=np.full(users, first - 24 * days),
                   n_all=n_all, s_all=s_all, q_all=q_all, n_set=n_all * 0.7, s_set=np.zeros((users, J)),
                   n_how=n_how, s_how=s_how, a_hod=a_hod,
                   w_user=np.arange(users), w_hour=np.full(users, 10))
    data.w_time = [DAY.replace(hour=10)] * users
    data.x = np.zeros((users, J))
    data.x[:, ev] = 4
    for m in MODELS:
        data.present[m.name] = np.zeros(users, dtype=bool)
    data.present["login_time"][:] = True
    return data


def _rates(data: DayData, group: np.ndarray) -> scoring.Rates:
    """Everyone in one group, summed as one bucket."""
    arrays = {name: getattr(data, name) for name in BASELINE_ARRAYS}
    return scoring.shrunk_rates(data, group, group_sums(arrays, data.first_hour, group, 1, data.day, 30), 30)


def _scores(data: DayData) -> dict[str, scoring.ModelScores]:
    group = np.zeros(len(data.users), dtype=np.int64)
    rates = _rates(data, group)
    return {ms.model.name: ms for ms in scoring.score_day(data, rates, np.arange(len(data.users)))}


def test_ordinary_hour_scores_low_and_explains_every_feature():
    data = _day(5)
    out = _scores(data)
    lt = out["login_time"]
    assert lt.score.max() < 30
    assert lt.expected.shape == (5, 2)
    assert lt.expected[0, 1] == pytest.approx(4.0, rel=0.05)  # events expected from the hour-of-week profile
    assert "authentication" not in out  # the model saw nothing: no score


def test_failures_spike_drives_authentication_score_and_its_share():
    data = _day(5)
    fail, ok = COLUMN[("authentication", "failures")], COLUMN[("authentication", "successes")]
    data.s_all[:, ok] = data.n_all
    data.s_how[:, 9:17, ok] = 4
    data.s_all[:, fail] = 0.02 * data.n_all  # a mistyped password now and then
    data.q_all[:, fail] = 0.02 * data.n_all
    data.x[:, ok] = 1
    data.x[0, fail] = 23
    data.present["authentication"][:] = True
    auth = _scores(data)["authentication"]
    assert auth.score[0] >= 90
    assert auth.score[1:].max() < 40
    names = [f.name for f in MODELS[0].features]
    shares = dict(zip(names, auth.share[0]))
    assert max(shares, key=shares.get) in ("failures", "failure_ratio")
    assert auth.share[0].sum() == pytest.approx(1.0)
    assert auth.observed[0, names.index("failures")] == 23
    assert auth.expected[0, names.index("failures")] < 0.1


def test_activity_at_a_never_used_hour_scores_higher_than_usual_hours():
    data = _day(3)
    data.w_hour[:] = [10, 3, 3]
    data.w_time = [DAY.replace(hour=h) for h in (10, 3, 3)]
    lt = _scores(data)["login_time"]
    assert lt.score[1] > lt.score[0] + 30
    assert lt.expected[1, 0] < 0.01  # probability of activity at 03:00


def test_peers_in_other_time_zones_do_not_make_a_users_night_usual():
    # One department: nine members work 09-17 UTC (London), one works 01-09 UTC (Singapore, 09-17
    # local). At 12 UTC the Londoners are busy; for the Singaporean it is eight in the evening.
    # Everyone opens the day with a burst of 20 events in its first hour.
    data = _day(10)
    ev = COLUMN[("login_time", "events")]
    data.s_how[:, 9, ev] = 20 * 4
    data.a_hod[9] = np.roll(data.a_hod[9], -8)
    data.n_how[9] = np.roll(data.n_how[9], -8)
    data.s_how[9] = np.roll(data.s_how[9], -8, axis=0)
    rates = _rates(data, np.zeros(10, dtype=np.int64))
    assert rates.activity[9, 12] < 0.01
    assert rates.activity[9, 3] > 0.5  # its own working morning
    assert rates.activity[0, 17] < 0.01 and rates.activity[0, 12] > 0.5
    # The peers' counts too: their morning burst is expected in its morning, not at 09 UTC.
    assert rates.peer_how[9, 1, ev] > 15 and rates.peer_how[9, 9, ev] < 8
    assert rates.peer_how[0, 9, ev] > 15
    # A newcomer with no baseline is read on the peers' typical clock.
    data.a_hod[8] = 0
    rates = _rates(data, np.zeros(10, dtype=np.int64))
    assert rates.activity[8, 12] > rates.activity[8, 3]


def test_thin_baseline_shrinks_toward_peers():
    data = _day(4)
    ev = COLUMN[("login_time", "events")]
    # user 0 has only one active hour of history, where it produced 40 events
    data.n_all[0], data.s_all[0, ev], data.q_all[0, ev] = 1, 40, 1600
    data.n_how[0], data.s_how[0] = 0, 0
    rates = _rates(data, np.zeros(4, dtype=np.int64))
    assert 4 < rates.per_user[0, ev] < 10  # pulled most of the way to the peers' 4 per hour


def test_schedule_and_settings():
    times = parse_schedule("18:00, 00:00,06:00,12:00")
    assert times == ((0, 0), (6, 0), (12, 0), (18, 0))
    assert next_fire(datetime(2026, 3, 1, 5, 59, tzinfo=timezone.utc), times) == datetime(2026, 3, 1, 6, 0, tzinfo=timezone.utc)
    assert next_fire(datetime(2026, 3, 1, 18, 0, tzinfo=timezone.utc), times) == datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
    assert parse_schedule("off") == ()
    with pytest.raises(SettingsError, match="UEBA_SCORING_SCHEDULE"):
        ScorerSettings.from_env({"UEBA_SCORING_SCHEDULE": "25:00"})
    with pytest.raises(SettingsError, match="UEBA_MIN_BASELINE_DAYS"):
        ScorerSettings.from_env({"UEBA_MIN_BASELINE_DAYS": "40"})
    for days in ("-1", "1"):
        with pytest.raises(SettingsError, match="UEBA_SCORE_RETENTION_DAYS"):
            ScorerSettings.from_env({"UEBA_SCORE_RETENTION_DAYS": days})


def test_last_fire_is_the_same_on_every_replica():
    utc = timezone.utc
    daily = Schedule(parse_schedule("00:00,06:00,12:00,18:00"))
    assert daily.last_fire(datetime(2026, 3, 1, 5, 59, tzinfo=utc)) == datetime(2026, 3, 1, 0, 0, tzinfo=utc)
    assert daily.last_fire(datetime(2026, 3, 1, 6, 0, tzinfo=utc)) == datetime(2026, 3, 1, 6, 0, tzinfo=utc)
    assert daily.last_fire(datetime(2026, 3, 1, 23, 59, tzinfo=utc)) == datetime(2026, 3, 1, 18, 0, tzinfo=utc)
    every = Schedule(every=parse_every("every 15m"))
    now = datetime(2026, 3, 1, 10, 44, 59, tzinfo=utc)
    assert every.last_fire(now) == datetime(2026, 3, 1, 10, 30, tzinfo=utc)
    assert every.next_fire(now) == datetime(2026, 3, 1, 10, 45, tzinfo=utc)
    assert not Schedule(parse_schedule("off"))
    with pytest.raises(SettingsError, match="1 second to 24 hours"):
        ScorerSettings.from_env({"UEBA_SCORING_SCHEDULE": "every 2000m"})
    with pytest.raises(SettingsError, match="UEBA_LEASE_TTL_SECONDS"):
        ScorerSettings.from_env({"UEBA_LEASE_TTL_SECONDS": "5", "UEBA_LEASE_HEARTBEAT_SECONDS": "4"})
    with pytest.raises(SettingsError, match="UEBA_SCORING_MODEL_WEIGHTS"):
        ScorerSettings.from_env({"UEBA_SCORING_MODEL_WEIGHTS": "nosuchmodel=1"})
    with pytest.raises(SettingsError, match="UEBA_ANOMALY_LOG"):
        ScorerSettings.from_env({"UEBA_ANOMALY_LOG": "syslog://nohostport"})
    s = ScorerSettings.from_env({"UEBA_SCORING_MODEL_WEIGHTS": "login_time=0.2"})
    assert s.weights()["login_time"] == 0.2 and s.weights()["authentication"] == 1.0


def test_default_and_requested_windows_are_whole_hours():
    now = datetime(2026, 3, 1, 6, 30, tzinfo=timezone.utc)
    at = lambda d, h, m=0: datetime(2026, 3, d, h, m, tzinfo=timezone.utc)  # noqa: E731
    assert default_window(now) == (datetime(2026, 2, 28, 6, tzinfo=timezone.utc), at(1, 6))
    assert requested_window(None, None, now) == default_window(now)
    # An end alone: the 24 hours before it; a start alone: up to now, at least an hour.
    assert requested_window(None, at(1, 3, 45), now) == (datetime(2026, 2, 28, 3, tzinfo=timezone.utc), at(1, 3))
    assert requested_window(at(1, 2, 10), None, now) == (at(1, 2), at(1, 6))
    assert requested_window(at(1, 6, 10), None, now) == (at(1, 6), at(1, 7))
    assert requested_window(at(1, 2, 10), at(1, 2, 50), now) == (at(1, 2), at(1, 2))


def test_user_days_group_by_utc_day_and_name_the_strongest_score():
    day = 20_000 * 24  # whole hours since the epoch at a UTC midnight
    hourly = HourlyScores(
        users=["a", "a", "a", "a", "b", "a"],
        hour=np.array([day + 3, day + 3, day + 5, day + 23, day + 1, day + 24]),
        model=["origin_host", "authentication", "login_time", "authentication", "login_time", "authentication"],
        score=np.array([80.0, 80.0, 95.0, 20.0, 40.0, 75.0]),
        learning=np.array([False, False, False, False, True, False]),
        features=[None] * 6,
    )
    weights = {"authentication": 1.0, "origin_host": 1.0, "login_time": 0.2}
    # Without a population each model keeps its nominal surprise, one per dimension (auth 80, host 80, time 95).
    nominal = Calibration(Reference(np.zeros(0, dtype=np.int64), {}, []), days=30)
    days = user_days(hourly, weights, nominal, {})
    first = datetime.fromtimestamp(day * 3600, timezone.utc)
    assert days.users == ["a", "b", "a"]
    assert days.days == [first.date(), first.date(), (first + timedelta(days=1)).date()]
    s = scoring.surprise_of_score
    expected = [joint_decades([s(80.0), s(80.0), s(95.0)]), s(40.0), s(75.0)]
    assert days.score == pytest.approx([day_score(float(e)) for e in expected])
    assert days.scored_hours == [3, 1, 1] and days.learning == [False, True, False]
    # A tie at 80 in one hour goes to the model name first in order.
    assert days.hour[0] == first + timedelta(hours=3) and days.model == ["authentication", "login_time", "authentication"]
    assert days.own_score == days.score  # no rule findings: the account's own doing throughout
    # A spray's account: the source's finding ranks its day; its own score leaves the finding out.
    sprayed = RuleFinding("b", first.date(), "failed_logins", "authentication", 90, "spray", decades=12.0, linked=True)
    own = RuleFinding("a", first.date(), "risky_countries", "location", 70, "trip")
    with_findings = user_days(hourly, weights, nominal, {("b", first.date()): [sprayed], ("a", first.date()): [own]})
    assert with_findings.score[1] == pytest.approx(day_score(joint_decades([8.0, float(s(40.0))])))
    assert with_findings.own_score[1] == days.score[1]
    assert with_findings.own_score[0] == with_findings.score[0] > days.score[0]


def _model_scores(model, p: np.ndarray, rows: np.ndarray) -> scoring.ModelScores:
    """One model's scores whose first feature carries its tail probability `p`."""
    F = len(model.features)
    expected, observed = np.zeros((rows.size, F)), np.zeros((rows.size, F))
    expected[:, 0], observed[:, 0] = 0.5, 3.0
    return scoring.ModelScores(model, rows, scoring.score_from_p(p), expected, observed, np.zeros((rows.size, F)), p,
                               np.zeros(rows.size, dtype=np.int64))


def test_corroboration_scores_two_models_at_an_unusual_hour_above_either():
    # Row 0: a new origin (1e-3) and more connections (1e-2) at an hour active 1 day in 100.
    # Row 1: one model alone is decisive at a usual hour. Row 2: only one model saw anything.
    origin = _model_scores(ORIGIN_HOST, np.array([1e-3, 0.5, 1e-3]), np.array([0, 1, 2]))
    hosts = _model_scores(IMPACTED_HOST, np.array([1e-2, 1e-6]), np.array([0, 1]))
    peer = _model_scores(PEER_GROUP, np.array([1e-8, 1e-8, 1e-8]), np.array([0, 1, 2]))  # not independent: left out
    c = scoring.corroborate(np.array([0.01, 0.7, 0.01]), np.array([0, 1, 2]), [origin, hosts, peer])
    assert list(c.rows) == [0]
    x = 1e-3 * 1e-2
    assert c.p[0] == pytest.approx(0.01 * x * (1 - np.log(x)))  # Fisher for two, one pair
    assert c.score[0] > max(origin.score[0], hosts.score[0]) + 20
    assert list(c.names[0]) == ["login_time.active", "origin_host.distinct_origins", "impacted_host.distinct_hosts"]
    assert list(c.expected[0]) == [0.01, 0.5, 0.5] and list(c.observed[0]) == [1.0, 3.0, 3.0]
    assert c.share[0].sum() == pytest.approx(1.0)


def test_corroboration_is_a_tail_probability_per_user_hour():
    # Independent uniform model probabilities: given activity at an hour of probability 0.01,
    # P(active and score >= 70) = 0.01 P(corroborated part <= 1e-2) must stay under 1e-4.
    rng = np.random.default_rng(5)
    n = 200_000
    rows = np.arange(n)
    models = [_model_scores(m, rng.uniform(size=n), rows) for m in CORROBORATING]
    c = scoring.corroborate(np.full(n, 0.01), rows, models)
    hot = int((c.score >= 70).sum()) if c is not None else 0
    assert 0.01 * hot / n <= 1e-4


def test_a_count_surprise_shades_from_the_population_to_the_user_with_history():
    own, population = np.array([1e-8, 1e-8, 1e-8]), np.array([1e-2, 1e-2, 1e-2])
    p = scoring.judged_by_history(own, population, np.array([1.0, 0.5, 0.0]))
    assert p == pytest.approx([1e-8, 1e-5, 1e-2])  # surprise 8, 5 and 2 decades


def test_what_the_organisation_shows_often_is_less_rare_for_a_user_who_never_did_it():
    data = _day(6)
    shared = COLUMN[("data_movement", "files_shared")]
    # Everyone but u0 shares files in bursts (mean 4 an hour, variance 40); u0 never has.
    data.s_all[1:, shared] = 4 * data.n_all[1:]
    data.q_all[1:, shared] = 56 * data.n_all[1:]
    data.s_how[1:, 9:17, shared] = 4 * 4
    data.x[0, shared] = 12
    data.present["data_movement"][0] = True
    group = np.zeros(len(data.users), dtype=np.int64)
    rates = _rates(data, group)
    assert rates.history[0] == pytest.approx(data.n_all[0] / (data.n_all[0] + scoring.K_HISTORY))
    moved = {ms.model.name: ms for ms in scoring.score_day(data, rates, np.arange(len(data.users)))}["data_movement"]
    e = (data.s_how[0, 10, shared] + scoring.K_HOW * rates.per_user[0, shared]) / (data.n_how[0, 10] + scoring.K_HOW)
    own_only = scoring.count_tail(np.array([12.0]), np.array([e]), rates.dispersion[0:1, shared])
    features = len(moved.model.features)
    assert moved.p[0] > 2 * features * own_only[0]
    assert moved.score[0] < scoring.score_from_p(np.minimum(1.0, features * own_only))[0]
