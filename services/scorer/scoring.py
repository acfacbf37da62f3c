"""Event scores: expected values, tail probabilities and calibrated 1-100 scores, vectorised.

For every scored user-hour and model, each feature gets an expected value and
a tail probability P(X >= observed). The model's probability is the smallest
feature probability times the number of features (Bonferroni: a model with
many features is not more alarming just for having more chances), and the
score maps -log10 of it onto 1-100 along fixed anchors, so that a score means
the same thing for every model and user: under the baseline a score of 70 or
more happens at most once in 10,000 model-hours. The corroboration score
(`corroborate`) joins the two strongest independent models of an hour and the
probability of activity at that hour, so that weak evidence from two models at
once is not lost to each model's own correction.

Expected values shrink toward broader rates where data is thin (empirical
Bayes with pseudo-counts): the hour-of-week rate toward the user's overall
rate, that toward the peer group's, that toward everyone's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from services.scorer.baseline import (COLUMN, DayData, GroupSums, activity_phase, group_phase, history_days, on_own_clock,
                                      on_utc_clock)
from services.scorer.models import AGGREGATED, BY_NAME, CORROBORATING, CORROBORATION, PEER_GROUP, Model

# Pseudo-counts of the shrinkage, in active hours unless said otherwise.
K_HOW = 2.0  # the user's overall rate weighs as much as this many same-weekday hours
K_USER = 24.0  # the peer rate weighs at least as much as a day of the user's active hours
K_MAX_USER = 2000.0  # ... and at most this many
K_PEER = 48.0  # everyone's rate in a peer group's estimate
K_DISPERSION = 48.0
# The user's own tail carries n / (n + K_HISTORY) of a count's surprise (n: its active hours), the
# population's the rest: a few days say little of a user's busy hour, and what the organisation
# shows often is not rare for anyone.
K_HISTORY = 48.0
K_NOVELTY_USER = 100.0
K_NOVELTY_PEER = 500.0
K_WEEKS = 2.0  # activity: the user's hour-of-day rate weighs as much as two weeks at this hour of week
K_DAYS = 3.0  # activity: the peers' hour-of-day rate weighs as much as three of the user's days
K_ACTIVITY_PEER = 20.0
MIN_ACTIVITY = 1e-4
MIN_RATE = 1e-6

# -log10(p) -> score. 70 at p = 1e-4, 90 at 1e-6, 100 from 1e-8 on.
ANCHORS_L = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
ANCHORS_S = np.array([1.0, 12.0, 30.0, 50.0, 70.0, 80.0, 90.0, 100.0])
MAX_SURPRISE = float(ANCHORS_L[-1])  # decades of tail probability: the most one score says
MIN_P = 1e-300
HEAVY = [COLUMN[(m.name, f.name)] for m in AGGREGATED for f in m.stored if f.heavy_tailed]


def score_from_p(p: np.ndarray) -> np.ndarray:
    """Tail probability -> integer score 1-100."""
    lg = -np.log10(np.clip(p, MIN_P, 1.0))
    return np.clip(np.rint(np.interp(lg, ANCHORS_L, ANCHORS_S)), 1, 100).astype(np.int16)


def surprise_of_score(score: np.ndarray) -> np.ndarray:
    """Score 1-100 -> the -log10(p) it stands for along the same anchors (8 for 100, the most a score says)."""
    return np.interp(score, ANCHORS_S, ANCHORS_L)


def count_tail(observed: np.ndarray, mean: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """P(X >= observed) for X negative binomial with this mean and variance/mean ratio (Poisson at 1)."""
    k = np.ceil(np.maximum(observed, 0.0) - 1e-9)
    mean = np.maximum(mean, MIN_RATE)
    d = np.maximum(dispersion, 1.0)
    poisson = d < 1.01
    p = np.ones_like(mean)
    nz = k > 0
    pois = nz & poisson
    if pois.any():
        p[pois] = stats.poisson.sf(k[pois] - 1, mean[pois])
    nb = nz & ~poisson
    if nb.any():
        p[nb] = stats.nbinom.sf(k[nb] - 1, mean[nb] / (d[nb] - 1.0), 1.0 / d[nb])
    return p


def judged_by_history(own: np.ndarray, population: np.ndarray, history: np.ndarray) -> np.ndarray:
    """The tail probability as surprise (-log p) averaged between the user's own tail and the
    population's, weighted by how much history the user has (1: all its own)."""
    own, population = np.clip(own, MIN_P, 1.0), np.clip(population, MIN_P, 1.0)
    return np.exp(history * np.log(own) + (1.0 - history) * np.log(population))


def ratio_tail(hits: np.ndarray, trials: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    p = np.ones_like(ratio)
    nz = hits > 0
    if nz.any():
        p[nz] = stats.binom.sf(hits[nz] - 1, trials[nz], np.clip(ratio[nz], 1e-3, 0.999))
    return p


@dataclass
class ModelScores:
    """Scores of one model: R scored rows (indices into the day's window) with F features each."""

    model: Model
    rows: np.ndarray  # [R] window row indices
    score: np.ndarray  # [R] int16
    expected: np.ndarray  # [R, F]
    observed: np.ndarray  # [R, F]
    share: np.ndarray  # [R, F]
    p: np.ndarray  # [R] the model's tail probability, the score's source
    decisive: np.ndarray  # [R] the feature with the smallest tail probability
    # [R, F] each row's own feature names, for a model that quotes other models' features
    names: np.ndarray | None = None


@dataclass
class Rates:
    """Shrunk per-user statistics of one day's baseline, shared by every model."""

    per_user: np.ndarray  # [U, J] expected per active hour
    dispersion: np.ndarray  # [U, J]
    novelty: np.ndarray  # [U, J] new things per active hour
    peer_how: np.ndarray  # [U, 24, J] the peers' hour-of-week rate, without the user
    peer_dispersion: np.ndarray  # [U, J]
    activity: np.ndarray  # [U, 24] probability of activity at this hour of the week
    population: np.ndarray  # [U, J] everyone's rate per active hour (the same for every user)
    population_dispersion: np.ndarray  # [U, J]
    history: np.ndarray  # [U] weight of the user's own tail against the population's, 0-1


def _pseudo_hours(sums: GroupSums) -> np.ndarray:
    """[G, J] weight of the peer rate in a member's rate, in active hours: mean / between-user variance."""
    g_n = np.maximum(sums.n_all, 1.0)[:, None]
    m = sums.s_all / g_n
    wvar = sums.r2 / g_n - m * m
    noise = m * sums.members[:, None] / g_n
    between = np.maximum(wvar - noise, 1e-12)
    k = np.where(m > 0, m / between, K_MAX_USER)
    return np.clip(k, K_USER, K_MAX_USER)


def baseline_days(data: DayData, baseline: int) -> np.ndarray:
    """Days of history each user has inside its baseline window."""
    return history_days(data.day, data.first_hour, baseline)


def weeks_at_weekday(data: DayData, baseline: int) -> np.ndarray:
    """How many earlier same weekdays in the baseline the user already existed on."""
    days = baseline_days(data, baseline)
    return np.minimum(np.floor(days / 7.0), baseline // 7)


def shrunk_rates(data: DayData, group: np.ndarray, sums: GroupSums, baseline: int) -> Rates:
    """The rates of `data`'s users, members of `group`; `sums` covers every member of every group.

    Other users enter only through `sums`, so `data` may hold just the users being scored.
    """
    n = data.n_all[:, None]
    # Everyone's rate, then each peer group's without the user, then the user's.
    tot_s, tot_q, tot_n = sums.s_all.sum(0), sums.q_all.sum(0), sums.n_all.sum()
    # One pseudo-event in a hundred hours keeps a never-seen count from an expected value of exactly 0.
    glob = (tot_s + 1.0) / (tot_n + 100.0)
    g_s = sums.s_all[group] - data.s_all
    g_q = sums.q_all[group] - data.q_all
    g_n = (sums.n_all[group] - data.n_all)[:, None]
    peer = (g_s + K_PEER * glob) / (g_n + K_PEER)
    # How far to trust the user's own rate over the peers' depends on how much the
    # peers' rates differ beyond Poisson noise (empirical Bayes, Gamma-Poisson):
    # alike peers mean a user's quiet month is luck, not habit.
    k_user = _pseudo_hours(sums)[group]
    user = (data.s_all + k_user * peer) / (n + k_user)

    def dispersion(s, q, cnt):
        mean = s / np.maximum(cnt, 1.0)
        var = q / np.maximum(cnt, 1.0) - mean**2
        return np.where(mean > 0, np.maximum(var, 0.0) / np.maximum(mean, MIN_RATE), 1.0)

    glob_d = np.maximum(dispersion(tot_s, tot_q, tot_n), 1.0)
    peer_d = np.maximum(dispersion(g_s, g_q, g_n), 1.0)
    peer_d = (g_n * peer_d + K_DISPERSION * glob_d) / (g_n + K_DISPERSION)
    user_d = np.maximum(dispersion(data.s_all, data.q_all, n), 1.0)
    disp = (n * user_d + K_DISPERSION * peer_d) / (n + K_DISPERSION)
    disp[:, HEAVY] = np.maximum(disp[:, HEAVY], peer_d[:, HEAVY])

    # Novelty: new things per active hour once past learning.
    nset = data.n_set[:, None]
    glob_nov = (sums.s_set.sum(0) + 1.0) / (sums.n_set.sum() + 100.0)
    gn_s = sums.s_set[group] - data.s_set
    gn_n = (sums.n_set[group] - data.n_set)[:, None]
    peer_nov = (gn_s + K_NOVELTY_PEER * glob_nov) / (gn_n + K_NOVELTY_PEER)
    novelty = (data.s_set + K_NOVELTY_USER * peer_nov) / (nset + K_NOVELTY_USER)

    # The peers' and everyone's rates by hour are summed on each member's own clock (a department
    # spans time zones), and read on the user's: a user without a baseline is read on the peers'
    # typical clock.
    phase = activity_phase(data.a_hod)
    read_on = np.where(phase >= 0, phase, group_phase(sums)[group])

    # Peers' hour-of-week profile (without the user), shrunk toward their overall rate.
    peer_how = sums.s_how[group]
    peer_how -= on_own_clock(data.s_how, phase)
    gh_n = (sums.n_how[group] - on_own_clock(data.n_how, phase))[:, :, None]
    peer_how += K_HOW * peer[:, None, :]
    peer_how /= gh_n + K_HOW
    peer_how = on_utc_clock(peer_how, read_on)

    # Activity at this hour of the week.
    days = baseline_days(data, baseline)
    weeks = weeks_at_weekday(data, baseline)
    glob_a = (sums.a_hod.sum(0) + 1.0) / (sums.days.sum() + 24.0)
    ga = sums.a_hod[group] - on_own_clock(data.a_hod, phase)
    gd = (sums.days[group] - days)[:, None]
    peer_a = on_utc_clock((ga + K_ACTIVITY_PEER * glob_a) / (gd + K_ACTIVITY_PEER), read_on)
    hod = (data.a_hod + K_DAYS * peer_a) / (days[:, None] + K_DAYS)
    activity = (np.minimum(data.n_how, weeks[:, None]) + K_WEEKS * hod) / (weeks[:, None] + K_WEEKS)
    activity = np.clip(activity, MIN_ACTIVITY, 1.0)
    history = data.n_all / (data.n_all + K_HISTORY)
    population = np.broadcast_to(glob, user.shape).copy()
    population_d = np.broadcast_to(glob_d, user.shape).copy()
    return Rates(user, disp, novelty, peer_how, peer_d, activity, population, population_d, history)


def shares(p: np.ndarray) -> np.ndarray:
    """[R, F] each feature's part of a row's surprise (-ln p), what explanations rank features by."""
    surprise = -np.log(p)
    total = surprise.sum(axis=1, keepdims=True)
    return np.divide(surprise, total, out=np.zeros_like(surprise), where=total > 1e-12)


def score_day(data: DayData, rates: Rates, rows: np.ndarray) -> list[ModelScores]:
    """Scores every model on the window rows `rows` (the in-scope ones) of one day."""
    out = []
    u_all = data.w_user
    h_all = data.w_hour
    for model in AGGREGATED + (PEER_GROUP,):
        if model.name in data.present:
            r = rows[data.present[model.name][rows]]
        else:
            r = rows
        if model.name == "login_time" or model is PEER_GROUP:
            r = rows  # every active hour
        if r.size == 0:
            continue
        u, h = u_all[r], h_all[r]
        F = len(model.features)
        exp = np.zeros((r.size, F))
        obs = np.zeros((r.size, F))
        p = np.ones((r.size, F))
        for fi, feat in enumerate(model.features):
            if feat.kind == "count":
                c = COLUMN[(model.name, feat.name)]
                x = data.x[r, c]
                e = (data.s_how[u, h, c] + K_HOW * rates.per_user[u, c]) / (data.n_how[u, h] + K_HOW)
                obs[:, fi], exp[:, fi] = x, e
                p[:, fi] = judged_by_history(
                    count_tail(x / feat.unit, e / feat.unit, rates.dispersion[u, c] / feat.unit),
                    count_tail(x / feat.unit, rates.population[u, c] / feat.unit,
                               rates.population_dispersion[u, c] / feat.unit),
                    rates.history[u])
            elif feat.kind == "novelty":
                c = COLUMN[(model.name, feat.name)]
                x = data.x[r, c]
                e = rates.novelty[u, c]
                obs[:, fi], exp[:, fi] = x, e
                p[:, fi] = count_tail(x, e, np.ones_like(e))
            elif feat.kind == "ratio":
                hit_name, other_name = feat.source.split(",")
                ch, co = COLUMN[(model.name, hit_name)], COLUMN[(model.name, other_name)]
                hits, other = data.x[r, ch], data.x[r, co]
                eh = (data.s_how[u, h, ch] + K_HOW * rates.per_user[u, ch]) / (data.n_how[u, h] + K_HOW)
                eo = (data.s_how[u, h, co] + K_HOW * rates.per_user[u, co]) / (data.n_how[u, h] + K_HOW)
                ratio = eh / np.maximum(eh + eo, MIN_RATE)
                trials = hits + other
                obs[:, fi] = np.where(trials > 0, hits / np.maximum(trials, 1.0), 0.0)
                exp[:, fi] = ratio
                p[:, fi] = ratio_tail(hits, trials, ratio)
            elif feat.kind == "activity":
                prob = rates.activity[u, h]
                obs[:, fi], exp[:, fi], p[:, fi] = 1.0, prob, prob
            elif feat.kind == "peer":
                src_model, src_name = feat.source.split(".")
                c = COLUMN[(src_model, src_name)]
                x = data.x[r, c]
                e = rates.peer_how[u, h, c]
                obs[:, fi], exp[:, fi] = x, e
                p[:, fi] = count_tail(x / feat.unit, e / feat.unit, rates.peer_dispersion[u, c] / feat.unit)
        p = np.clip(p, MIN_P, 1.0)
        p_model = np.minimum(1.0, F * p.min(axis=1))
        out.append(ModelScores(model, r, score_from_p(p_model), exp, obs, shares(p), p_model, p.argmin(axis=1)))
    corroboration = corroborate(rates.activity[u_all[rows], h_all[rows]], rows, out)
    if corroboration is not None:
        out.append(corroboration)
    return out


def corroborate(activity: np.ndarray, rows: np.ndarray, scores: list[ModelScores]) -> ModelScores | None:
    """The hour as a whole: being active now, and the two strongest of the independent models together.

    Each model alone is calibrated per active hour and corrected for its own
    features only, so two models that each see something unusual in the same
    hour (a new origin host and more connections than usual) stay moderate
    apiece. Of n independent models, the two smallest tail probabilities p1, p2
    are combined by Fisher's method for two (P(U1 U2 <= x) = x (1 - ln x)),
    corrected for the n(n-1)/2 pairs that could have been chosen. The content
    models are calibrated given that the user is active; activity at this hour
    has probability `activity`, fixed before the hour, so the product is again a
    tail probability, per user-hour of the week instead of per active hour.
    Hours with fewer than two of the models scored have nothing to corroborate.
    """
    models = [ms for ms in scores if ms.model in CORROBORATING]
    if not models or rows.size == 0:
        return None
    pos = np.full(int(rows.max()) + 1, -1)
    pos[rows] = np.arange(rows.size)
    M = len(models)
    p = np.ones((rows.size, M))
    slot = np.full((rows.size, M), -1)  # the row inside each model's scores
    for mi, ms in enumerate(models):
        at = pos[ms.rows]
        p[at, mi] = ms.p
        slot[at, mi] = np.arange(ms.rows.size)
    n = (slot >= 0).sum(axis=1)
    keep = np.flatnonzero(n >= 2)
    if keep.size == 0:
        return None
    p, slot, n = p[keep], slot[keep], n[keep]
    order = np.argsort(p, axis=1, kind="stable")[:, :2]
    k = np.arange(keep.size)
    p1, p2 = p[k, order[:, 0]], p[k, order[:, 1]]
    x = np.clip(p1 * p2, MIN_P, 1.0)
    pairs = n * (n - 1) / 2.0
    active = np.clip(activity[keep], MIN_P, 1.0)
    p_hour = np.minimum(1.0, active * np.minimum(1.0, x * (1.0 - np.log(x)) * pairs))
    # Only where the hour says more than its strongest part: otherwise the row would restate
    # that model's (or login_time's) evidence, weaker, and count it twice in the day's mean.
    adds = score_from_p(p_hour) > score_from_p(np.minimum(p1, active))
    keep, slot, order, p1, p2, active, p_hour = (a[adds] for a in (keep, slot, order, p1, p2, active, p_hour))
    if keep.size == 0:
        return None

    F = len(CORROBORATION.features)
    exp = np.zeros((keep.size, F))
    obs = np.zeros((keep.size, F))
    names = np.empty((keep.size, F), dtype=object)
    exp[:, 0], obs[:, 0], names[:, 0] = active, 1.0, "login_time.active"
    for j in (0, 1):
        mi = order[:, j]
        for m in np.unique(mi):
            sel = np.flatnonzero(mi == m)
            ms = models[m]
            at = slot[sel, m]
            f = ms.decisive[at]
            exp[sel, j + 1] = ms.expected[at, f]
            obs[sel, j + 1] = ms.observed[at, f]
            names[sel, j + 1] = [f"{ms.model.name}.{ms.model.features[i].name}" for i in f]
    return ModelScores(CORROBORATION, rows[keep], score_from_p(p_hour), exp, obs,
                       shares(np.column_stack([active, p1, p2])), p_hour,
                       np.zeros(keep.size, dtype=np.int64), names)


def model_named(name: str) -> Model:
    return BY_NAME[name]
