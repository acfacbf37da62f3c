"""Event-score rows: the COPY lines and anomaly.log lines are those of the previous, per-value formatting."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np

from services.scorer.event_rows import event_score_rows
from services.scorer.models import AGGREGATED, CORROBORATION
from services.scorer.scoring import ModelScores
from services.scorer.store.event_scores import copy_text

DAY = datetime(2026, 3, 30, tzinfo=timezone.utc)


def _reference_rows(ctx, data, results, learning):
    """The formatting before the per-row %-formats (commit 48064f6), value by value: the expected output."""

    def numbers(values, fmt):
        return [fmt % v for v in np.nan_to_num(values, posinf=1e300, neginf=-1e300).tolist()]

    tenant_json, run_json = json.dumps(ctx.tenant), json.dumps(str(ctx.run_id))
    for ms in results:
        if ms.names is None:
            heads = [[f'{{"name":"{f.name}","expected":'] * ms.rows.size for f in ms.model.features]
        else:
            heads = [[f'{{"name":"{n}","expected":' for n in ms.names[:, i]] for i in range(ms.names.shape[1])]
        cells = [[h + e + ',"observed":' + o + ',"share":' + sh + "}" for h, e, o, sh in zip(
            hs, numbers(ms.expected[:, i], "%.6g"), numbers(ms.observed[:, i], "%.6g"), numbers(ms.share[:, i], "%.4g"))]
            for i, hs in enumerate(heads)]
        scores = ms.score.tolist()
        for k, r in enumerate(ms.rows.tolist()):
            u = data.w_user[r]
            hour = data.w_time[r].isoformat()
            feats = "[" + ",".join(col[k] for col in cells) + "]"
            learn = bool(learning[u])
            ctx.lines.append(
                f'{{"type":"event_score","tenant":{tenant_json},"user":{json.dumps(data.users[u])},'
                f'"hour":"{hour}","model":{json.dumps(ms.model.name)},"score":{scores[k]},'
                f'"learning":{"true" if learn else "false"},"features":{feats},"run_id":{run_json}}}')
            yield (f"{copy_text(ctx.tenant)}\t{copy_text(data.users[u])}\t{hour}\t{copy_text(ms.model.name)}\t"
                   f"{scores[k]}\t{copy_text(feats)}\t{'t' if learn else 'f'}\t{ctx.run_id}\n")


def _values(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Numbers of every kind the formats meet: tiny, huge, whole, negative zero, NaN and infinities."""
    v = rng.choice([0.0, -0.0, 1.0, 3.0, 1e-9, 2.5e7, 123456789.0, np.nan, np.inf, -np.inf], size=shape)
    return np.where(rng.random(shape) < 0.5, v, rng.lognormal(0.0, 4.0, shape) * rng.choice([-1, 1], shape))


def _scores(rng: np.random.Generator, model, rows: np.ndarray, names: np.ndarray | None = None) -> ModelScores:
    F = len(model.features)
    return ModelScores(model, rows, rng.integers(1, 101, rows.size).astype(np.int16), _values(rng, (rows.size, F)),
                       _values(rng, (rows.size, F)), _values(rng, (rows.size, F)), np.ones(rows.size),
                       np.zeros(rows.size, dtype=np.int64), names)


def _day(rng: np.random.Generator, users: list[str], W: int):
    w_user = rng.integers(0, len(users), W)
    w_time = [DAY + timedelta(hours=int(h)) for h in rng.integers(0, 24, W)]
    return SimpleNamespace(users=users, w_user=w_user, w_time=w_time)


def _both(tenant: str, data, results, learning):
    run_id = str(uuid.UUID(int=7))
    new, old = SimpleNamespace(tenant=tenant, run_id=run_id, lines=[]), SimpleNamespace(tenant=tenant, run_id=run_id, lines=[])
    return (list(event_score_rows(new, data, results, learning)), new.lines,
            list(_reference_rows(old, data, results, learning)), old.lines)


def test_rows_and_log_lines_equal_the_previous_formatting():
    rng = np.random.default_rng(5)
    users = ["alice", "bob", 'carol "c"', "dave\\x", "eve\tt", "émile"]
    data = _day(rng, users, 200)
    results = [_scores(rng, m, np.sort(rng.choice(200, 120, replace=False))) for m in AGGREGATED]
    quoted = np.array([[f"{m.name}.{m.features[0].name}" for m in rng.choice(AGGREGATED, 3)] for _ in range(40)],
                      dtype=object)
    results.append(_scores(rng, CORROBORATION, np.arange(40), quoted))
    rows, lines, want_rows, want_lines = _both("acme\\t1", data, results, rng.random(len(users)) < 0.5)
    assert len(rows) == 120 * len(AGGREGATED) + 40
    assert rows == want_rows
    assert lines == want_lines


def test_feature_names_that_need_copy_escapes_are_escaped():
    rng = np.random.default_rng(6)
    model = SimpleNamespace(name="odd", features=[SimpleNamespace(name="a\\b"), SimpleNamespace(name="100%\tc")])
    data = _day(rng, ["u"], 5)
    rows, lines, want_rows, want_lines = _both("t", data, [_scores(rng, model, np.arange(5))], np.array([False]))
    assert rows == want_rows and lines == want_lines
    assert "a\\\\b" in rows[0] and "100%\\tc" in rows[0]
