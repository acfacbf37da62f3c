"""Baseline statistics and the hours to score, loaded into numpy arrays.

Everything is aggregated in Postgres (GROUP BY user and hour of day), so
Python sees per-user sums, never the baseline's raw hours. For one UTC day d:

- overall:  per user and stored feature, the sum and sum of squares over the
            baseline [d - baseline_days, d), split at the end of the user's
            learning period (novelty rates use only the settled part);
- weekday:  the same sums over the same weekday's earlier weeks (d - 7k days),
            by hour of day, i.e. the user's hour-of-week profile;
- activity: per user and hour of day, how many baseline days were active;
- window:   the observed features of the hours being scored.

Denominators are active hours (hours with any event): a model's missing row in
an active hour counts as zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, Float, and_, func, or_, select, text

from services.scorer.models import AGGREGATED
from ueba.store.schema import user_hour_features as uhf

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Every stored feature gets one column in the arrays: (model, feature).
COLUMNS: tuple[tuple[str, str], ...] = tuple((m.name, f.name) for m in AGGREGATED for f in m.stored)
COLUMN = {c: i for i, c in enumerate(COLUMNS)}
ACTIVITY_MODEL = "login_time"  # has a row in every active hour


@dataclass
class DayData:
    """Arrays for scoring the hours of one UTC day; U users, J stored features, W window hours."""

    day: datetime
    users: list[str]
    first_hour: np.ndarray  # [U] epoch hours of the user's first activity ever (nan: none)
    n_all: np.ndarray  # [U] active hours in the baseline
    s_all: np.ndarray  # [U, J]
    q_all: np.ndarray  # [U, J] sums of squares
    n_set: np.ndarray  # [U] active hours past the learning period
    s_set: np.ndarray  # [U, J]
    n_how: np.ndarray  # [U, 24] active hours on this weekday in earlier weeks, by hour of day
    s_how: np.ndarray  # [U, 24, J]
    a_hod: np.ndarray  # [U, 24] active baseline days by hour of day
    w_user: np.ndarray  # [W] user index
    w_hour: np.ndarray  # [W] hour of day 0-23
    w_time: list[datetime] = field(default_factory=list)  # [W]
    x: np.ndarray = None  # [W, J] observed
    present: dict[str, np.ndarray] = field(default_factory=dict)  # model -> [W] bool: the model saw something


def _value(name: str):
    return func.coalesce(uhf.c.features[name].astext.cast(Float), 0.0)


def _baseline_value(feature):
    v = _value(feature.name)
    return func.least(v, feature.baseline_cap) if feature.baseline_cap is not None else v


def _hod():
    return func.extract("hour", uhf.c.hour).cast(Float)


def load_first_hours(conn: Connection, tenant: str) -> dict[str, datetime]:
    """Each user's first active hour ever (the start of its learning period)."""
    rows = conn.execute(
        select(uhf.c.user_name, func.min(uhf.c.hour))
        .where(uhf.c.tenant == tenant, uhf.c.model == ACTIVITY_MODEL)
        .group_by(uhf.c.user_name)
    )
    return dict(rows.all())


def load_day(
    conn: Connection,
    tenant: str,
    day: datetime,
    hours: tuple[datetime, datetime],
    baseline_days: int,
    min_baseline_days: int,
    first_hours: dict[str, datetime],
) -> DayData:
    """Baseline of `day` and the observed features of the hours [hours[0], hours[1]) within it."""
    b0 = day - baseline_days * DAY
    min_days = timedelta(days=min_baseline_days)
    overall: dict[str, list] = {}
    weekday: dict[str, list] = {}
    window: dict[str, list] = {}
    same_weekday = [(day - 7 * k * DAY, day - 7 * k * DAY + DAY) for k in range(1, baseline_days // 7 + 1)]
    in_weekdays = or_(*[and_(uhf.c.hour >= a, uhf.c.hour < b) for a, b in same_weekday])
    # The first active hour ever, to split each baseline at the end of learning.
    settled_at = {u: h + min_days for u, h in first_hours.items()}
    for model in AGGREGATED:
        names = [f.name for f in model.stored]
        values = [_value(n) for n in names]
        learned = [_baseline_value(f) for f in model.stored]
        base = uhf.c.tenant == tenant, uhf.c.model == model.name
        overall[model.name] = conn.execute(
            select(
                uhf.c.user_name,
                *[func.sum(v) for v in learned],
                *[func.sum(v * v) for v in learned],
            )
            .where(*base, uhf.c.hour >= b0, uhf.c.hour < day)
            .group_by(uhf.c.user_name)
        ).all()
        weekday[model.name] = (
            conn.execute(
                select(uhf.c.user_name, _hod(), func.count(), *[func.sum(v) for v in learned])
                .where(*base, in_weekdays)
                .group_by(uhf.c.user_name, _hod())
            ).all()
            if same_weekday
            else []
        )
        window[model.name] = conn.execute(
            select(uhf.c.user_name, uhf.c.hour, *values).where(*base, uhf.c.hour >= hours[0], uhf.c.hour < hours[1])
        ).all()
    settled_rows = _load_settled(conn, tenant, b0, day, settled_at)
    activity = conn.execute(
        select(uhf.c.user_name, _hod(), func.count())
        .where(uhf.c.tenant == tenant, uhf.c.model == ACTIVITY_MODEL, uhf.c.hour >= b0, uhf.c.hour < day)
        .group_by(uhf.c.user_name, _hod())
    ).all()
    return _assemble(day, overall, weekday, window, settled_rows, activity, first_hours)


def _load_settled(conn: Connection, tenant: str, b0: datetime, day: datetime, settled_at: dict[str, datetime]):
    """Per model, user: active hours and novelty sums past each user's learning period."""
    novelty = [(m.name, f.name) for m in AGGREGATED for f in m.stored if f.kind == "novelty"]
    if not settled_at:
        return []
    # Users whose learning ended before the day; their settled part of the baseline
    # starts at max(b0, settled_at). Passed as arrays and joined in SQL.
    names = [u for u, s in settled_at.items() if s < day]
    if not names:
        return []
    starts = [max(b0, settled_at[u]) for u in names]
    # Column expressions come from the model catalogue (constants), never from input.
    cols = ", ".join(
        f"coalesce(sum(CAST(f.features ->> '{fname}' AS float8)) FILTER (WHERE f.model = '{model}'), 0)"
        for model, fname in novelty
    )
    rows = conn.execute(
        text(
            f"""SELECT f.user_name, count(*) FILTER (WHERE f.model = '{ACTIVITY_MODEL}'), {cols}
            FROM user_hour_features f
            JOIN unnest(CAST(:names AS text[]), CAST(:starts AS timestamptz[])) AS s(user_name, start)
              ON s.user_name = f.user_name
            WHERE f.tenant = :tenant AND f.hour >= s.start AND f.hour < :day
              AND f.model = ANY(:models)
            GROUP BY f.user_name"""
        ),
        {
            "names": names,
            "starts": starts,
            "tenant": tenant,
            "day": day,
            "models": sorted({m for m, _ in novelty} | {ACTIVITY_MODEL}),
        },
    ).all()
    return [(r[0], r[1], dict(zip(novelty, r[2:]))) for r in rows]


def _assemble(day, overall, weekday, window, settled_rows, activity, first_hours) -> DayData:
    names: set[str] = set()
    for rows in list(overall.values()) + list(window.values()):
        names.update(r[0] for r in rows)
    users = sorted(names)
    index = {u: i for i, u in enumerate(users)}
    U, J = len(users), len(COLUMNS)
    epoch = np.datetime64("1970-01-01T00:00:00")
    first = np.full(U, np.nan)
    for u, h in first_hours.items():
        i = index.get(u)
        if i is not None:
            first[i] = (np.datetime64(h.replace(tzinfo=None)) - epoch) / np.timedelta64(1, "h")
    data = DayData(
        day=day,
        users=users,
        first_hour=first,
        n_all=np.zeros(U),
        s_all=np.zeros((U, J)),
        q_all=np.zeros((U, J)),
        n_set=np.zeros(U),
        s_set=np.zeros((U, J)),
        n_how=np.zeros((U, 24)),
        s_how=np.zeros((U, 24, J)),
        a_hod=np.zeros((U, 24)),
        w_user=np.zeros(0, dtype=np.int64),
        w_hour=np.zeros(0, dtype=np.int64),
    )
    for model in AGGREGATED:
        cols = [COLUMN[(model.name, f.name)] for f in model.stored]
        k = len(cols)
        rows = overall[model.name]
        if rows:
            idx = np.fromiter((index[r[0]] for r in rows), dtype=np.int64, count=len(rows))
            arr = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 2 * k)
            data.s_all[np.ix_(idx, cols)] = arr[:, :k]
            data.q_all[np.ix_(idx, cols)] = arr[:, k:]
        rows = weekday[model.name]
        if rows:
            idx = np.fromiter((index.get(r[0], -1) for r in rows), dtype=np.int64, count=len(rows))
            keep = idx >= 0
            arr = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 2 + k)[keep]
            idx = idx[keep]
            hod = arr[:, 0].astype(np.int64)
            if model.name == ACTIVITY_MODEL:
                data.n_how[idx, hod] = arr[:, 1]
            for j, c in enumerate(cols):
                data.s_how[idx, hod, c] = arr[:, 2 + j]
    if activity:
        idx = np.fromiter((index.get(r[0], -1) for r in activity), dtype=np.int64, count=len(activity))
        arr = np.array([r[1:] for r in activity], dtype=np.float64)
        keep = idx >= 0
        data.a_hod[idx[keep], arr[keep, 0].astype(np.int64)] = arr[keep, 1]
    data.n_all = data.a_hod.sum(axis=1)
    for name, n_settled, sums in settled_rows:
        i = index.get(name)
        if i is None:
            continue
        data.n_set[i] = n_settled
        for col, value in sums.items():
            data.s_set[i, COLUMN[col]] = value
    _assemble_window(data, window, index)
    return data


def _assemble_window(data: DayData, window, index) -> None:
    active = window[ACTIVITY_MODEL]
    active = sorted(active, key=lambda r: (index[r[0]], r[1]))
    W = len(active)
    data.w_user = np.fromiter((index[r[0]] for r in active), dtype=np.int64, count=W)
    data.w_time = [r[1] for r in active]
    data.w_hour = np.fromiter((r[1].hour for r in active), dtype=np.int64, count=W)
    offset = np.fromiter(((r[1] - data.day) // HOUR for r in active), dtype=np.int64, count=W)
    key = data.w_user * 24 + offset  # sorted, unique
    data.x = np.zeros((W, len(COLUMNS)))
    for model in AGGREGATED:
        rows = window[model.name]
        present = np.zeros(W, dtype=bool)
        if rows and W:
            k = np.fromiter((index[r[0]] * 24 + (r[1] - data.day) // HOUR for r in rows), dtype=np.int64, count=len(rows))
            pos = np.searchsorted(key, k)
            pos = np.clip(pos, 0, W - 1)
            ok = key[pos] == k  # a model row without an activity row cannot happen; drop it if it does
            cols = [COLUMN[(model.name, f.name)] for f in model.stored]
            arr = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))
            data.x[np.ix_(pos[ok], cols)] = arr[ok]
            present[pos[ok]] = True
        data.present[model.name] = present
