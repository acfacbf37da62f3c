"""A day's event scores as COPY text lines for `event_scores` and as anomaly.log lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

from services.scorer.baseline import DayData
from services.scorer.context import RunContext
from services.scorer.scoring import ModelScores
from services.scorer.store.event_scores import copy_text


@lru_cache(maxsize=4096)
def _features_format(names: tuple[str, ...]) -> str:
    """A row's features JSON as one %-format of its values (expected, observed, share per feature):
    one formatting call a row instead of three a value, the dominant cost of the rows."""
    return "[" + ",".join(
        f'{{"name":"{n.replace("%", "%%")}","expected":%.6g,"observed":%.6g,"share":%.4g}}' for n in names) + "]"


def _feature_values(ms: ModelScores) -> list[tuple[float, ...]]:
    """[row] (expected, observed, share) of every feature, interleaved as _features_format takes them
    (no NaN or infinity ever reaches a score)."""
    rows, features = ms.expected.shape
    values = np.empty((rows, 3 * features))
    values[:, 0::3], values[:, 1::3], values[:, 2::3] = ms.expected, ms.observed, ms.share
    return list(map(tuple, np.nan_to_num(values, posinf=1e300, neginf=-1e300).tolist()))


def _features_json(ms: ModelScores) -> Iterator[str]:
    """Each row's features JSON (names as they are: they come from the model catalogue)."""
    values = _feature_values(ms)
    if ms.names is None:
        fmt = _features_format(tuple(f.name for f in ms.model.features))
        return (fmt % v for v in values)
    return (_features_format(tuple(map(str, n))) % v for n, v in zip(ms.names.tolist(), values))


def _names(ms: ModelScores) -> set[str]:
    return {f.name for f in ms.model.features} if ms.names is None else set(map(str, ms.names.ravel().tolist()))


def _needs_copy_escapes(names: Iterable[str]) -> bool:
    """Whether a features JSON made of these names needs copy_text (numbers never do)."""
    return any(copy_text(n) != n for n in names)


def event_score_rows(ctx: RunContext, data: DayData, results: list[ModelScores], learning: np.ndarray) -> Iterator[str]:
    """COPY text lines (tenant, user, hour, model, score, features, learning, run id), made as the COPY
    takes them, so Postgres parses while the next ones are formatted; their anomaly.log lines go to ctx.lines."""
    tenant, run_id = ctx.tenant, ctx.run_id
    tenant_json, run_json = json.dumps(tenant), json.dumps(str(run_id))
    user_json = [json.dumps(u) for u in data.users]
    learning_json = ["true" if v else "false" for v in learning]
    # Formatted once here, not by the COPY's dumpers per value nor per row.
    user_copy = [copy_text(u) for u in data.users]
    learning_copy = ["t" if v else "f" for v in learning]
    tenant_copy, run_copy = copy_text(tenant), str(run_id)
    hours = [t.isoformat() for t in data.w_time]
    for ms in results:
        model_json, model_copy = json.dumps(ms.model.name), copy_text(ms.model.name)
        escaped = copy_text if _needs_copy_escapes(_names(ms)) else str
        users = data.w_user[ms.rows].tolist()
        for r, u, score, feats in zip(ms.rows.tolist(), users, ms.score.tolist(), _features_json(ms)):
            hour = hours[r]
            ctx.lines.append(
                f'{{"type":"event_score","tenant":{tenant_json},"user":{user_json[u]},'
                f'"hour":"{hour}","model":{model_json},"score":{score},'
                f'"learning":{learning_json[u]},"features":{feats},"run_id":{run_json}}}'
            )
            yield (f"{tenant_copy}\t{user_copy[u]}\t{hour}\t{model_copy}\t{score}\t{escaped(feats)}\t"
                   f"{learning_copy[u]}\t{run_copy}\n")
