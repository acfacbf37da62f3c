"""A day's event scores as COPY text lines for `event_scores` and as anomaly.log lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from services.scorer.baseline import DayData
from services.scorer.context import RunContext
from services.scorer.scoring import ModelScores
from services.scorer.store.event_scores import copy_text


def _numbers(values: np.ndarray, fmt: str) -> list[str]:
    """JSON numbers for a column (no NaN or infinity ever reaches a score)."""
    return [fmt % v for v in np.nan_to_num(values, posinf=1e300, neginf=-1e300).tolist()]


def _feature_cells(ms: ModelScores) -> list[list[str]]:
    """[feature][row] each score's feature entries as JSON objects."""
    # Formatting column by column with %-formats is several times faster than per value.
    if ms.names is None:
        heads = [[f'{{"name":"{f.name}","expected":'] * ms.rows.size for f in ms.model.features]
    else:
        heads = [[f'{{"name":"{n}","expected":' for n in ms.names[:, i]] for i in range(ms.names.shape[1])]
    return [
        [h + e + ',"observed":' + o + ',"share":' + sh + "}" for h, e, o, sh in zip(
            hs, _numbers(ms.expected[:, i], "%.6g"), _numbers(ms.observed[:, i], "%.6g"),
            _numbers(ms.share[:, i], "%.4g"))]
        for i, hs in enumerate(heads)
    ]


def event_score_rows(ctx: RunContext, data: DayData, results: list[ModelScores], learning: np.ndarray) -> Iterator[str]:
    """COPY text lines (tenant, user, hour, model, score, features, learning, run id), made as the COPY
    takes them, so Postgres parses while the next ones are formatted; their anomaly.log lines go to ctx.lines."""
    tenant, run_id = ctx.tenant, ctx.run_id
    tenant_json, run_json = json.dumps(tenant), json.dumps(str(run_id))
    user_json = [json.dumps(u) for u in data.users]
    learning_json = ["true" if v else "false" for v in learning]
    # Formatted once here (and the hour once per row for both lines), not by the COPY's dumpers per value.
    user_copy = [copy_text(u) for u in data.users]
    learning_copy = ["t" if v else "f" for v in learning]
    tenant_copy, run_copy = copy_text(tenant), str(run_id)
    for ms in results:
        cells = _feature_cells(ms)
        model_json, model_copy = json.dumps(ms.model.name), copy_text(ms.model.name)
        scores = ms.score.tolist()
        users = data.w_user[ms.rows].tolist()
        for k, (r, u) in enumerate(zip(ms.rows.tolist(), users)):
            hour = data.w_time[r].isoformat()
            feats = "[" + ",".join(col[k] for col in cells) + "]"
            ctx.lines.append(
                f'{{"type":"event_score","tenant":{tenant_json},"user":{user_json[u]},'
                f'"hour":"{hour}","model":{model_json},"score":{scores[k]},'
                f'"learning":{learning_json[u]},"features":{feats},"run_id":{run_json}}}'
            )
            yield (f"{tenant_copy}\t{user_copy[u]}\t{hour}\t{model_copy}\t{scores[k]}\t{copy_text(feats)}\t"
                   f"{learning_copy[u]}\t{run_copy}\n")
