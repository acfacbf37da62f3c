"""The ScorerService gRPC API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.scorer.models import MODELS
from services.scorer.runs import RunResult, Scorer, canonical_user, default_window, floor_hour
from services.scorer.settings import ScorerSettings
from services.scorer.store import BadPageToken, RunRow, ScorerStore, is_uuid, page_size
from ueba.callctx import current_caller
from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

_STATUS = {
    "running": scorer_pb2.RUN_STATUS_RUNNING,
    "succeeded": scorer_pb2.RUN_STATUS_SUCCEEDED,
    "failed": scorer_pb2.RUN_STATUS_FAILED,
}
_TRIGGER = {"schedule": scorer_pb2.RUN_TRIGGER_SCHEDULE, "on_demand": scorer_pb2.RUN_TRIGGER_ON_DEMAND}


def _ts(t: datetime | None) -> Timestamp | None:
    if t is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(t.astimezone(timezone.utc))
    return ts


def run_message(run: RunRow | RunResult) -> scorer_pb2.ScoringRun:
    if isinstance(run, RunResult):
        status, trigger, start, end = run.status, run.trigger, run.start, run.end
        started = finished = None
        figures, error = run.figures, run.error or ""
    else:
        status, trigger, start, end = run.status, run.trigger, run.range_start, run.range_end
        started, finished = run.started_at, run.finished_at
        figures, error = run.figures or {}, run.error or ""
    msg = scorer_pb2.ScoringRun(
        id=str(run.id),
        status=_STATUS.get(status, scorer_pb2.RUN_STATUS_UNSPECIFIED),
        trigger=_TRIGGER.get(trigger, scorer_pb2.RUN_TRIGGER_UNSPECIFIED),
        range=common_pb2.TimeRange(start=_ts(start), end=_ts(end)),
        users_scored=int(figures.get("users_scored", 0)),
        hours_scored=int(figures.get("hours_scored", 0)),
        event_scores=int(figures.get("event_scores", 0)),
        user_scores=int(figures.get("user_scores", 0)),
        anomalies=int(figures.get("anomalies", 0)),
        learning_users=int(figures.get("learning_users", 0)),
        error=error,
    )
    if started is not None:
        msg.started_at.CopyFrom(_ts(started))
    if finished is not None:
        msg.finished_at.CopyFrom(_ts(finished))
    return msg


class ScorerServicer(scorer_pb2_grpc.ScorerServiceServicer):
    def __init__(self, scorer: Scorer, store: ScorerStore, settings: ScorerSettings):
        self.scorer = scorer
        self.store = store
        self.settings = settings

    def _tenant(self) -> str:
        return current_caller(self.settings.tenant).tenant

    def RunScoring(self, request, context):
        now = datetime.now(timezone.utc)
        start, end = default_window(now)
        has_start, has_end = request.range.HasField("start"), request.range.HasField("end")
        if has_end:
            end = floor_hour(request.range.end.ToDatetime(tzinfo=timezone.utc))
            start = end - timedelta(hours=24)
        if has_start:
            start = floor_hour(request.range.start.ToDatetime(tzinfo=timezone.utc))
            if not has_end:
                end = max(floor_hour(now), start + timedelta(hours=1))
        if end <= start:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "range: end must be at least one hour after start (hours are whole UTC hours)")
        if end - start > timedelta(days=self.settings.max_range_days):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"range: at most {self.settings.max_range_days} days per run (UEBA_SCORING_MAX_RANGE_DAYS)",
            )
        users = []
        for i, name in enumerate(request.users):
            canonical = canonical_user(name)
            if not canonical or len(name) > 256:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"users[{i}]: empty or longer than 256 characters")
            users.append(canonical)
        result = self.scorer.run(self._tenant(), start, end, users or None, trigger="on_demand")
        row = self.store.get_run(self._tenant(), result.id)
        return run_message(row if row is not None else result)

    def GetScoringRun(self, request, context):
        if not is_uuid(request.id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id: not a scoring run id (a UUID)")
        row = self.store.get_run(self._tenant(), request.id)
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"scoring run {request.id} not found")
        return run_message(row)

    def ListScoringRuns(self, request, context):
        try:
            rows, token = self.store.list_runs(self._tenant(), page_size(request.page_size), request.page_token)
        except (BadPageToken, ValueError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return scorer_pb2.ListScoringRunsResponse(runs=[run_message(r) for r in rows], next_page_token=token)

    def ListPeerGroups(self, request, context):
        try:
            rows, token = self.store.list_peer_groups(self._tenant(), page_size(request.page_size), request.page_token)
        except (BadPageToken, ValueError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        groups = [
            scorer_pb2.PeerGroup(id=r.id, name=r.name, method=r.method, members=list(r.members), member_count=len(r.members))
            for r in rows
        ]
        return scorer_pb2.ListPeerGroupsResponse(groups=groups, next_page_token=token)

    def ListModels(self, request, context):
        weights = self.settings.weights()
        return scorer_pb2.ListModelsResponse(
            models=[
                scorer_pb2.BehaviourModel(
                    name=m.name,
                    description=m.description,
                    weight=weights[m.name],
                    features=[scorer_pb2.ModelFeature(name=f.name, description=f.description) for f in m.features],
                )
                for m in MODELS
            ]
        )
