"""Baseline statistics and the hours to score, loaded into numpy arrays.

Everything is aggregated in Postgres, so Python sees per-user sums, never the
baseline's raw hours. For one UTC day d:

- overall:  per user and stored feature, the sum and sum of squares over the
            baseline [d - baseline_days, d), split at the end of the user's
            learning period (novelty rates use only the settled part): from the
            day rollup (day_features.py), plus the hours of the day learning ends in;
- weekday:  the same sums over the same weekday's earlier weeks (d - 7k days),
            by hour of day, i.e. the user's hour-of-week profile (hour vectors);
- activity: per user and hour of day, how many baseline days were active (rollup);
- window:   the observed features of the hours being scored (hour vectors).

The hours are read from `user_hour_vectors` (hour_vectors.py): a float8 array a user-hour,
whose layout is COLUMNS and MODEL_BIT.

Denominators are active hours (hours with any event): a model's missing row in
an active hour counts as zeros.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import Connection, func, select, text

from services.scorer.models import AGGREGATED
from ueba.leases import buckets_of
from ueba.store.schema import user_day_features as udf

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Every stored feature gets one column in the arrays: (model, feature).
COLUMNS: tuple[tuple[str, str], ...] = tuple((m.name, f.name) for m in AGGREGATED for f in m.stored)
COLUMN = {c: i for i, c in enumerate(COLUMNS)}
ACTIVITY_MODEL = "login_time"  # has a row in every active hour
# user_hour_vectors.models: the bit of each model that has a row in the hour.
MODEL_BIT = {m.name: 1 << i for i, m in enumerate(AGGREGATED)}
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


def hourly_value(feature) -> str:
    """An hourly row's value of `feature` as stored, in SQL over `f` (user_hour_features)."""
    # Feature names come from the model catalogue (constants), never from input.
    return f"coalesce((f.features ->> '{feature.name}')::float8, 0)"


def _capped(feature, value: str) -> str:
    return f"least({value}, {float(feature.baseline_cap)})" if feature.baseline_cap is not None else value


def learned(feature) -> str:
    """An hourly row's value of `feature` as baselines learn it (capped), in SQL over `f`."""
    return _capped(feature, hourly_value(feature))


def _vector_value(j: int) -> str:
    """Stored feature COLUMNS[j] of a user_hour_vectors row `v`, as stored."""
    return f"v.vals[{j + 1}]"


def _vector_learned(j: int) -> str:
    """Stored feature COLUMNS[j] of a user_hour_vectors row `v` as baselines learn it (capped)."""
    return _capped(stored_features()[j][1], _vector_value(j))


def _active(alias: str = "v") -> str:
    """Whether a user_hour_vectors row is an active hour (the activity model has a row)."""
    return f"{alias}.models & {MODEL_BIT[ACTIVITY_MODEL]} <> 0"


def stored_features():
    """(model, feature) of every stored feature, in COLUMNS order."""
    return [(m, f) for m in AGGREGATED for f in m.stored]


# Stored features whose sums past the learning period are kept (novelty rates), as indices into COLUMNS.
NOVELTY = tuple(j for j, (_, f) in enumerate(stored_features()) if f.kind == "novelty")


def load_first_hours(conn: Connection, tenant: str) -> dict[str, datetime]:
    """Each user's first active hour ever (the start of its learning period)."""
    rows = conn.execute(
        select(udf.c.user_name, func.min(udf.c.first_active))
        .where(udf.c.tenant == tenant, udf.c.first_active.is_not(None))
        .group_by(udf.c.user_name)
    )
    return dict(rows.all())


@dataclass(frozen=True)
class _Scope:
    """What a day's baseline reads: the tenant, the baseline's days [b0, day), whose learning ends when,
    and (for the users of some buckets) the user names every read is narrowed to."""

    tenant: str
    b0: datetime
    day: datetime
    settled: dict[str, datetime]
    mine: list[str] | None

    def params(self) -> dict:
        return {"tenant": self.tenant, "b0": self.b0, "day": self.day, **({"mine": self.mine} if self.mine is not None else {})}

    def narrowed(self, alias: str) -> str:
        return f"AND {alias}.user_name = ANY(CAST(:mine AS text[]))" if self.mine is not None else ""


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

    `buckets` (N, bucket list) narrows every read to the users of those hash buckets.
    """
    mine = None
    if buckets is not None:
        # Every user with features has login_time rows, so first_hours names them all; a name
        # list lets the reads use the primary key (tenant, user_name, ...) and skip the others.
        wanted = set(buckets[1])
        mine = [u for u, b in buckets_of(conn, tenant, first_hours, buckets[0]).items() if b in wanted]
    # When each user's learning period ends; the settled part of the baseline starts there.
    settled = {u: h + timedelta(days=min_baseline_days) for u, h in first_hours.items()}
    scope = _Scope(tenant, day - baseline_days * DAY, day, settled, mine)
    with _without_jit(conn):
        overall = _overall(conn, scope)
        settling = _settling_hours(conn, scope)
        weekday = _same_weekday(conn, scope, baseline_days)
        window = _window(conn, scope, hours)
    return _assemble(day, overall, settling, weekday, window, first_hours)


@contextmanager
def _without_jit(conn: Connection) -> Iterator[None]:
    """JIT off for the baseline reads, in the transaction, then as it was. Their costs pass the JIT
    thresholds, and compiling their 40-70 aggregate expressions (in every parallel worker, before the
    first row) took longer than it saved: 5.0 s of CPU, 1.7 s before the same-weekday scan began
    (10,000 users), 0.3-0.4 s for the window and the end of learning."""
    previous = conn.execute(text("SELECT current_setting('jit')")).scalar_one()
    conn.execute(text("SELECT set_config('jit', 'off', true)"))
    yield
    # Not on an error: the transaction is rolled back, and its setting with it.
    conn.execute(text("SELECT set_config('jit', :previous, true)"), {"previous": previous})


def _overall(conn: Connection, scope: _Scope) -> list:
    """Per user: active hours, those past learning (whole days), active days by hour of day, every
    feature's sum and sum of squares, the novelty sums past learning (whole days): from the day rollup."""
    J = len(COLUMNS)
    past = "FILTER (WHERE r.day >= s.settled_at)"
    cols = [
        "sum(r.active_hours)",
        f"sum(r.active_hours) {past}",
        *[f"sum((r.active_hours_of_day >> {h}) & 1)" for h in range(24)],
        *[f"sum(r.sums[{i + 1}])" for i in range(2 * J)],
        *[f"sum(r.sums[{j + 1}]) {past}" for j in NOVELTY],
    ]
    return conn.execute(
        text(
            f"""SELECT r.user_name, {", ".join(cols)}
            FROM user_day_features r
            LEFT JOIN unnest(CAST(:names AS text[]), CAST(:settled AS timestamptz[])) AS s(user_name, settled_at)
                 ON s.user_name = r.user_name
            WHERE r.tenant = :tenant AND r.day >= :b0 AND r.day < :day {scope.narrowed("r")}
            GROUP BY r.user_name"""
        ),
        {"names": list(scope.settled), "settled": list(scope.settled.values()), **scope.params()},
    ).all()


def _settling_hours(conn: Connection, scope: _Scope) -> list:
    """Per user whose learning ends inside a day of the baseline: that day's active hours and novelty sums
    from the end of learning on, from the hourly rows (the rollup counts past learning by whole days)."""
    wanted = set(scope.mine) if scope.mine is not None else None
    ends = {u: t for u, t in scope.settled.items()
            if scope.b0 <= _day_of(t) < scope.day and t != _day_of(t) and (wanted is None or u in wanted)}
    if not ends:
        return []
    cols = [f"count(*) FILTER (WHERE {_active()})", *[f"sum({_vector_learned(j)})" for j in NOVELTY]]
    return conn.execute(
        text(
            f"""SELECT v.user_name, {", ".join(cols)}
            FROM unnest(CAST(:names AS text[]), CAST(:ends AS timestamptz[])) AS s(user_name, settled_at)
            JOIN user_hour_vectors v ON v.tenant = :tenant AND v.user_name = s.user_name
                 AND v.hour >= s.settled_at AND v.hour < date_trunc('day', s.settled_at, 'UTC') + interval '1 day'
            GROUP BY v.user_name"""
        ),
        {"tenant": scope.tenant, "names": list(ends), "ends": list(ends.values())},
    ).all()


def _day_of(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _same_weekday(conn: Connection, scope: _Scope, baseline_days: int) -> list:
    """Per user and hour of day: active hours and feature sums on the same weekday of earlier weeks."""
    same_weekday = [(scope.day - 7 * k * DAY, scope.day - 7 * k * DAY + DAY) for k in range(1, baseline_days // 7 + 1)]
    if not same_weekday:
        return []
    ranges = " OR ".join(f"(v.hour >= :a{i} AND v.hour < :b{i})" for i in range(len(same_weekday)))
    params = scope.params()
    for i, (a, b) in enumerate(same_weekday):
        params[f"a{i}"], params[f"b{i}"] = a, b
    cols = [f"count(*) FILTER (WHERE {_active()})", *[f"sum({_vector_learned(j)})" for j in range(len(COLUMNS))]]
    return conn.execute(
        text(
            f"""SELECT v.user_name, extract(hour FROM v.hour)::int, {", ".join(cols)}
            FROM user_hour_vectors v
            WHERE v.tenant = :tenant AND ({ranges}) {scope.narrowed("v")}
            GROUP BY v.user_name, extract(hour FROM v.hour)::int"""
        ),
        params,
    ).all()


def _window(conn: Connection, scope: _Scope, hours: tuple[datetime, datetime]) -> list:
    """The observed features of the scored hours, a row per active user-hour."""
    window_cols = [*[f"v.models & {MODEL_BIT[m.name]} <> 0" for m in AGGREGATED],
                   *[_vector_value(j) for j in range(len(COLUMNS))]]
    return conn.execute(
        text(
            f"""SELECT v.user_name, v.hour, {", ".join(window_cols)}
            FROM user_hour_vectors v
            WHERE v.tenant = :tenant AND v.hour >= :h0 AND v.hour < :h1 AND {_active()} {scope.narrowed("v")}
            ORDER BY v.user_name, v.hour"""
        ),
        {**scope.params(), "h0": hours[0], "h1": hours[1]},
    ).all()


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


# GroupSums fields that a user's baseline arrays add to as they are (the ones by hour on the user's own clock).
_SUMMED = ("n_all", "s_all", "q_all", "n_set", "s_set")
_HOURS = np.arange(24)
_ANGLE = 2.0 * np.pi * _HOURS / 24.0


def activity_phase(a_hod: np.ndarray) -> np.ndarray:
    """[U] the UTC hour at the circular mean of each user's active baseline hours (-1: none).

    A department spans offices and time zones: peers are compared on their own clock, each
    user's day counted from their phase, so that a night in Singapore is not a London morning."""
    x, y = a_hod @ np.cos(_ANGLE), a_hod @ np.sin(_ANGLE)
    return np.where((x * x + y * y) > 1e-12, _hour_at(x, y), -1)


def group_phase(sums: GroupSums) -> np.ndarray:
    """[G] the circular mean of each group's members' phases (0 for a group without any)."""
    return _hour_at(sums.phase_xy[:, 0], sums.phase_xy[:, 1])


def _hour_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The hour of day at the angle of (x, y) on a 24-hour circle."""
    return np.rint(np.arctan2(y, x) * 24.0 / (2.0 * np.pi)).astype(np.int64) % 24


def on_own_clock(values: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """[U, 24, ...] hour-of-day values re-indexed from the UTC hour to the hour since each user's phase."""
    return _shifted(values, np.maximum(phase, 0))


def on_utc_clock(values: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """The inverse of on_own_clock, in place: [U, 24, ...] values per hour since the phase, back to UTC hours."""
    return _shifted(values, -np.maximum(phase, 0), out=values)


def _shifted(values: np.ndarray, shift: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # In slices of rows: the same-weekday sums are tens of megabytes at 10,000 users, and a whole
    # re-indexed copy of them would be the scorer's peak memory.
    out = np.empty_like(values) if out is None else out
    tail = (1,) * (values.ndim - 2)
    for first in range(0, values.shape[0], 1024):
        rows = slice(first, first + 1024)
        index = ((_HOURS[None, :] + shift[rows, None]) % 24).reshape(-1, 24, *tail)
        out[rows] = np.take_along_axis(values[rows], index, axis=1)
    return out


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
    n_how: np.ndarray  # [G, 24] by hour since each member's phase, as a_hod
    s_how: np.ndarray  # [G, 24, J]
    a_hod: np.ndarray  # [G, 24] active baseline days by hour since each member's phase
    phase_xy: np.ndarray  # [G, 2] sum of the members' phases as unit vectors (their circular mean)
    r2: np.ndarray  # [G, J] active hours times the squared rate per active hour
    members: np.ndarray  # [G] members with baseline activity
    days: np.ndarray  # [G] days of history (history_days)

    @classmethod
    def zeros(cls, groups: int) -> GroupSums:
        J = len(COLUMNS)
        shapes = {"s_all": (J,), "q_all": (J,), "s_set": (J,), "r2": (J,), "n_how": (24,), "s_how": (24, J),
                  "a_hod": (24,), "phase_xy": (2,)}
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
    phase = activity_phase(a["a_hod"])
    angle = _ANGLE[np.maximum(phase, 0)]
    phase_xy = np.where((phase >= 0)[:, None], np.stack([np.cos(angle), np.sin(angle)], axis=1), 0.0)
    by_hour = {name: total(on_own_clock(a[name], phase)) for name in ("n_how", "s_how", "a_hod")}
    return GroupSums(**{name: total(a[name]) for name in _SUMMED}, **by_hour,
                     phase_xy=total(phase_xy), r2=total(n[:, None] * r * r),
                     members=total(has.astype(float)), days=total(history_days(day, first_hour, baseline)))


def _assemble(day, overall, settling, weekday, window, first_hours) -> DayData:
    users = sorted({r[0] for r in overall} | {r[0] for r in window})
    index = {u: i for i, u in enumerate(users)}
    U, J = len(users), len(COLUMNS)
    data = DayData(
        day=day, users=users, first_hour=first_hour_array(users, first_hours), n_all=np.zeros(U), s_all=np.zeros((U, J)), q_all=np.zeros((U, J)),
        n_set=np.zeros(U), s_set=np.zeros((U, J)), n_how=np.zeros((U, 24)), s_how=np.zeros((U, 24, J)),
        a_hod=np.zeros((U, 24)), w_user=np.zeros(0, dtype=np.int64), w_hour=np.zeros(0, dtype=np.int64),
    )
    novelty = list(NOVELTY)
    if overall:
        idx = np.fromiter((index[r[0]] for r in overall), dtype=np.int64, count=len(overall))
        arr = np.nan_to_num(_matrix(overall, 1, 2 + 24 + 2 * J + len(novelty)))
        data.n_all[idx], data.n_set[idx], data.a_hod[idx] = arr[:, 0], arr[:, 1], arr[:, 2:26]
        data.s_all[idx], data.q_all[idx] = arr[:, 26:26 + J], arr[:, 26 + J:26 + 2 * J]
        data.s_set[np.ix_(idx, novelty)] = arr[:, 26 + 2 * J:]
    if settling:  # the part past learning of the day it ends in
        idx = np.fromiter((index[r[0]] for r in settling), dtype=np.int64, count=len(settling))
        arr = np.nan_to_num(_matrix(settling, 1, 1 + len(novelty)))
        data.n_set[idx] += arr[:, 0]
        data.s_set[np.ix_(idx, novelty)] += arr[:, 1:]
    if weekday:
        idx = np.fromiter((index.get(r[0], -1) for r in weekday), dtype=np.int64, count=len(weekday))
        arr = np.nan_to_num(_matrix(weekday, 1, 2 + J))
        keep = idx >= 0
        idx, arr = idx[keep], arr[keep]
        hod = arr[:, 0].astype(np.int64)
        data.n_how[idx, hod] = arr[:, 1]
        data.s_how[idx, hod] = arr[:, 2:]
    W = len(window)
    M = len(AGGREGATED)
    data.w_user = np.fromiter((index[r[0]] for r in window), dtype=np.int64, count=W)
    data.w_time = [r[1] for r in window]
    data.w_hour = np.fromiter((r[1].hour for r in window), dtype=np.int64, count=W)
    arr = _matrix(window, 2, M + J)
    data.x = np.nan_to_num(arr[:, M:])
    for i, model in enumerate(AGGREGATED):
        data.present[model.name] = arr[:, i].astype(bool) if W else np.zeros(0, dtype=bool)
    return data
