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
from sqlalchemy import Connection, func, select, text

from services.scorer.models import AGGREGATED
from ueba.leases import buckets_of
from ueba.store.schema import user_hour_features as uhf

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Every stored feature gets one column in the arrays: (model, feature).
COLUMNS: tuple[tuple[str, str], ...] = tuple((m.name, f.name) for m in AGGREGATED for f in m.stored)
COLUMN = {c: i for i, c in enumerate(COLUMNS)}
ACTIVITY_MODEL = "login_time"  # has a row in every active hour
# DayData's per-user baseline arrays (everything but first_hour, which comes from first_hours, and the window).
BASELINE_ARRAYS = ("n_all", "s_all", "q_all", "n_set", "s_set", "n_how", "s_how", "a_hod")


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

    @property
    def baseline_nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in BASELINE_ARRAYS)


def _num(feature: str) -> str:
    # Feature names come from the model catalogue (constants), never from input.
    return f"coalesce((f.features ->> '{feature}')::float8, 0)"


def _learned(feature) -> str:
    v = _num(feature.name)
    return f"least({v}, {float(feature.baseline_cap)})" if feature.baseline_cap is not None else v


def _stored():
    return [(m, f) for m in AGGREGATED for f in m.stored]


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
    buckets: tuple[int, list[int]] | None = None,
) -> DayData:
    """Baseline of `day` and the observed features of the hours [hours[0], hours[1]) within it.

    Three scans of user_hour_features, each covering every model at once (one pass
    with FILTER per model is far cheaper than one pass per model). `buckets` (N,
    bucket list) narrows every scan to the users of those hash buckets.
    """
    b0 = day - baseline_days * DAY
    mine, scope = "", {}
    if buckets is not None:
        # Every user with features has login_time rows, so first_hours names them all; a name
        # list lets the scans use the primary key (tenant, user_name, ...) and skip the others.
        wanted = set(buckets[1])
        scope = {"mine": [u for u, b in buckets_of(conn, tenant, first_hours, buckets[0]).items() if b in wanted]}
        mine = "AND f.user_name = ANY(CAST(:mine AS text[]))"
    stored = _stored()
    act = f"f.model = '{ACTIVITY_MODEL}'"
    # When each user's learning period ends; the settled part of the baseline starts there.
    names = list(first_hours)
    settled = [first_hours[u] + timedelta(days=min_baseline_days) for u in names]
    settled_join = """LEFT JOIN unnest(CAST(:names AS text[]), CAST(:settled AS timestamptz[])) AS s(user_name, settled_at)
                  ON s.user_name = f.user_name"""
    where = f"f.tenant = :tenant AND f.model = :model AND f.hour >= :b0 AND f.hour < :day {mine}"
    # The hour of day once a row: a LATERAL or plain subquery is flattened into the 24 FILTERs below and
    # extract() then runs in each, which made the activity scan three to four times slower. OFFSET 0
    # keeps the subquery whole (and the WHERE must sit inside it: quals do not pass an OFFSET).
    with_hod = f"(SELECT f.*, extract(hour FROM f.hour)::int AS hod FROM user_hour_features f WHERE {where} OFFSET 0) f"
    overall = []
    for model in AGGREGATED:
        # One scan per model: FILTERs across every model in one pass cost more than they save.
        activity = model.name == ACTIVITY_MODEL
        has_novelty = any(feat.kind == "novelty" for feat in model.stored)
        # Activity by hour of day and past learning only from the activity rows.
        cols = [
            "count(*) FILTER (WHERE f.hour >= s.settled_at)" if activity else "0",
            *([f"count(*) FILTER (WHERE f.hod = {h})" for h in range(24)] if activity else ["0"] * 24),
            *[f"sum({_learned(feat)})" for feat in model.stored],
            *[f"sum({_learned(feat)} ^ 2)" for feat in model.stored],
            *[f"sum({_num(feat.name)}) FILTER (WHERE f.hour >= s.settled_at)" for feat in model.stored if feat.kind == "novelty"],
        ]
        rows = conn.execute(
            text(
                f"""SELECT f.user_name, count(*), {", ".join(cols)}
                FROM {with_hod if activity else "user_hour_features f"}
                {settled_join if activity or has_novelty else ""}
                {"" if activity else "WHERE " + where}
                GROUP BY f.user_name"""
            ),
            {"names": names, "settled": settled, "tenant": tenant, "b0": b0, "day": day, "model": model.name, **scope},
        ).all()
        overall.append((model, rows))
    same_weekday = [(day - 7 * k * DAY, day - 7 * k * DAY + DAY) for k in range(1, baseline_days // 7 + 1)]
    weekday = []
    if same_weekday:
        ranges = " OR ".join(f"(f.hour >= :a{i} AND f.hour < :b{i})" for i in range(len(same_weekday)))
        params = {"tenant": tenant, **scope}
        for i, (a, b) in enumerate(same_weekday):
            params[f"a{i}"], params[f"b{i}"] = a, b
        cols = [f"count(*) FILTER (WHERE {act})",
                *[f"sum({_learned(feat)}) FILTER (WHERE f.model = '{m.name}')" for m, feat in stored]]
        weekday = conn.execute(
            text(
                f"""SELECT f.user_name, extract(hour FROM f.hour)::int, {", ".join(cols)}
                FROM user_hour_features f
                WHERE f.tenant = :tenant AND ({ranges}) {mine}
                GROUP BY f.user_name, extract(hour FROM f.hour)::int"""
            ),
            params,
        ).all()
    window_cols = [
        *[f"bool_or(f.model = '{m.name}')" for m in AGGREGATED],
        *[f"max({_num(feat.name)}) FILTER (WHERE f.model = '{m.name}')" for m, feat in stored],
    ]
    window = conn.execute(
        text(
            f"""SELECT f.user_name, f.hour, {", ".join(window_cols)}
            FROM user_hour_features f
            WHERE f.tenant = :tenant AND f.hour >= :h0 AND f.hour < :h1 {mine}
            GROUP BY f.user_name, f.hour
            HAVING bool_or({act})
            ORDER BY f.user_name, f.hour"""
        ),
        {"tenant": tenant, "h0": hours[0], "h1": hours[1], **scope},
    ).all()
    return _assemble(day, overall, weekday, window, first_hours)


def _matrix(rows, start: int, width: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, width))
    return np.array([r[start:start + width] for r in rows], dtype=np.float64).reshape(len(rows), width)


def first_hour_array(users: list[str], first_hours: dict[str, datetime]) -> np.ndarray:
    """Epoch hours of each user's first activity (nan: none)."""
    epoch = np.datetime64("1970-01-01T00:00:00")
    first = np.full(len(users), np.nan)
    for i, u in enumerate(users):
        h = first_hours.get(u)
        if h is not None:
            first[i] = (np.datetime64(h.replace(tzinfo=None)) - epoch) / np.timedelta64(1, "h")
    return first


Part = tuple[list[str], dict[str, np.ndarray]]  # users (sorted) and their BASELINE_ARRAYS rows


def part_of(data: DayData, rows: np.ndarray) -> Part:
    """The baseline arrays of `rows` (indices into data.users, in user order), without the window."""
    return [data.users[i] for i in rows], {name: getattr(data, name)[rows] for name in BASELINE_ARRAYS}


def by_bucket(users: list[str], bucket: dict[str, int]) -> dict[int, np.ndarray]:
    """Row indices of `users` per bucket, in user order."""
    rows: dict[int, list[int]] = {}
    for i, u in enumerate(users):
        rows.setdefault(bucket[u], []).append(i)
    return {b: np.array(rows[b], dtype=np.int64) for b in sorted(rows)}


def history_days(day: datetime, first_hour: np.ndarray, baseline: int) -> np.ndarray:
    """Days of history each user has inside its baseline window."""
    day_h = (np.datetime64(day.replace(tzinfo=None)) - np.datetime64("1970-01-01T00:00:00")) / np.timedelta64(1, "h")
    start = np.fmax(np.nan_to_num(first_hour, nan=day_h), day_h - 24 * baseline)
    return np.clip((day_h - start) / 24.0, 0.0, baseline)


# GroupSums fields that a user's baseline arrays add to as they are.
_SUMMED = ("n_all", "s_all", "q_all", "n_set", "s_set", "n_how", "s_how", "a_hod")


@dataclass
class GroupSums:
    """Sums over the members of each of G peer groups: all that scoring reads of the users it does not score.

    Floating-point sums depend on the order of their terms, so they are only ever
    built one way: each bucket's users in user order (group_sums), then the buckets
    in bucket order (plus). A run over every bucket and the replicas that each hold
    a few end with the same bits.
    """

    n_all: np.ndarray  # [G]
    s_all: np.ndarray  # [G, J]
    q_all: np.ndarray  # [G, J]
    n_set: np.ndarray  # [G]
    s_set: np.ndarray  # [G, J]
    n_how: np.ndarray  # [G, 24]
    s_how: np.ndarray  # [G, 24, J]
    a_hod: np.ndarray  # [G, 24]
    r2: np.ndarray  # [G, J] active hours times the squared rate per active hour
    members: np.ndarray  # [G] members with baseline activity
    days: np.ndarray  # [G] days of history (history_days)

    @classmethod
    def zeros(cls, groups: int) -> GroupSums:
        J = len(COLUMNS)
        shapes = {"s_all": (J,), "q_all": (J,), "s_set": (J,), "r2": (J,), "n_how": (24,), "s_how": (24, J),
                  "a_hod": (24,)}
        return cls(**{f: np.zeros((groups,) + shapes.get(f, ())) for f in cls.__dataclass_fields__})

    def plus(self, other: GroupSums) -> GroupSums:
        return GroupSums(**{f: getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__})

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in self.__dataclass_fields__)


def group_sums(a: dict[str, np.ndarray], first_hour: np.ndarray, group: np.ndarray, groups: int, day: datetime,
               baseline: int) -> GroupSums:
    """The sums of one bucket's users (their baseline arrays `a`, `first_hour` and `group` in user order)."""

    def total(values: np.ndarray) -> np.ndarray:
        out = np.zeros((groups,) + values.shape[1:])
        np.add.at(out, group, values)  # unbuffered: adds row after row, in user order
        return out

    n = a["n_all"]
    has = n > 0
    r = np.where(has[:, None], a["s_all"] / np.maximum(n, 1.0)[:, None], 0.0)
    return GroupSums(**{name: total(a[name]) for name in _SUMMED}, r2=total(n[:, None] * r * r),
                     members=total(has.astype(float)), days=total(history_days(day, first_hour, baseline)))


def _assemble(day, overall, weekday, window, first_hours) -> DayData:
    users = sorted({r[0] for _, rows in overall for r in rows} | {r[0] for r in window})
    index = {u: i for i, u in enumerate(users)}
    U, J = len(users), len(COLUMNS)
    stored = _stored()
    cols = np.array([COLUMN[(m.name, f.name)] for m, f in stored], dtype=np.int64)
    data = DayData(
        day=day, users=users, first_hour=first_hour_array(users, first_hours), n_all=np.zeros(U), s_all=np.zeros((U, J)), q_all=np.zeros((U, J)),
        n_set=np.zeros(U), s_set=np.zeros((U, J)), n_how=np.zeros((U, 24)), s_how=np.zeros((U, 24, J)),
        a_hod=np.zeros((U, 24)), w_user=np.zeros(0, dtype=np.int64), w_hour=np.zeros(0, dtype=np.int64),
    )
    K = len(stored)
    for model, rows in overall:
        if not rows:
            continue
        mcols = [COLUMN[(model.name, f.name)] for f in model.stored]
        ncols = [COLUMN[(model.name, f.name)] for f in model.stored if f.kind == "novelty"]
        k = len(mcols)
        idx = np.fromiter((index[r[0]] for r in rows), dtype=np.int64, count=len(rows))
        arr = np.nan_to_num(_matrix(rows, 1, 2 + 24 + 2 * k + len(ncols)))
        if model.name == ACTIVITY_MODEL:
            data.n_all[idx] = arr[:, 0]
            data.n_set[idx] = arr[:, 1]
            data.a_hod[idx] = arr[:, 2:26]
        data.s_all[np.ix_(idx, mcols)] = arr[:, 26:26 + k]
        data.q_all[np.ix_(idx, mcols)] = arr[:, 26 + k:26 + 2 * k]
        if ncols:
            data.s_set[np.ix_(idx, ncols)] = arr[:, 26 + 2 * k:]
    if weekday:
        idx = np.fromiter((index.get(r[0], -1) for r in weekday), dtype=np.int64, count=len(weekday))
        arr = np.nan_to_num(_matrix(weekday, 1, 2 + K))
        keep = idx >= 0
        idx, arr = idx[keep], arr[keep]
        hod = arr[:, 0].astype(np.int64)
        data.n_how[idx, hod] = arr[:, 1]
        for j, c in enumerate(cols):
            data.s_how[idx, hod, c] = arr[:, 2 + j]
    W = len(window)
    M = len(AGGREGATED)
    data.w_user = np.fromiter((index[r[0]] for r in window), dtype=np.int64, count=W)
    data.w_time = [r[1] for r in window]
    data.w_hour = np.fromiter((r[1].hour for r in window), dtype=np.int64, count=W)
    arr = _matrix(window, 2, M + K)
    data.x = np.zeros((W, J))
    data.x[:, cols] = np.nan_to_num(arr[:, M:].astype(np.float64))
    for i, model in enumerate(AGGREGATED):
        data.present[model.name] = arr[:, i].astype(bool) if W else np.zeros(0, dtype=bool)
    return data
