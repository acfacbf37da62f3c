"""The ScorerService gRPC API."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from services.scorer.models import MODELS
from services.scorer.runs import RunResult, Scorer
from services.scorer.settings import ScorerSettings
from services.scorer.store import RunRow, ScorerStore
from services.scorer.store.reads import MAX_PAGE
from services.scorer.window import requested_window
from ueba.callctx import current_caller
from ueba.errors import InvalidArgument, NotFound, check_text
from ueba.names import canonical_user
from ueba.paging import page_size
from ueba.timestamps import time_range, to_proto
from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

_STATUS = {
    "running": scorer_pb2.RUN_STATUS_RUNNING,
    "succeeded": scorer_pb2.RUN_STATUS_SUCCEEDED,
    "failed": scorer_pb2.RUN_STATUS_FAILED,
}
_TRIGGER = {"schedule": scorer_pb2.RUN_TRIGGER_SCHEDULE, "on_demand": scorer_pb2.RUN_TRIGGER_ON_DEMAND}


def run_message(run: RunRow | RunResult) -> scorer_pb2.ScoringRun:
    if isinstance(run, RunResult):
        status, trigger, start, end = run.status, run.trigger, run.start, run.end
        started = finished = None
        figures, error = run.figures, run.error or ""
    else:
        status, trigger, start, end = run.status, run.trigger, run.range_start, run.range_end
        started, finished = run.started_at, run.finished_at
        figures, error = run.figures or {}, run.error or ""
    return scorer_pb2.ScoringRun(
        id=str(run.id),
        status=_STATUS.get(status, scorer_pb2.RUN_STATUS_UNSPECIFIED),
        trigger=_TRIGGER.get(trigger, scorer_pb2.RUN_TRIGGER_UNSPECIFIED),
        range=common_pb2.TimeRange(start=to_proto(start), end=to_proto(end)),
        users_scored=int(figures.get("users_scored", 0)),
        hours_scored=int(figures.get("hours_scored", 0)),
        event_scores=int(figures.get("event_scores", 0)),
        user_scores=int(figures.get("user_scores", 0)),
        anomalies=int(figures.get("anomalies", 0)),
        learning_users=int(figures.get("learning_users", 0)),
        error=error,
        started_at=to_proto(started),
        finished_at=to_proto(finished),
    )


def _run_id(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidArgument("id: not a scoring run id (a UUID)") from None
    return value


class ScorerServicer(scorer_pb2_grpc.ScorerServiceServicer):
    def __init__(self, scorer: Scorer, store: ScorerStore, settings: ScorerSettings):
        self.scorer = scorer
        self.store = store
        self.settings = settings

    def _tenant(self) -> str:
        return current_caller(self.settings.tenant).tenant

    def _window(self, request) -> tuple[datetime, datetime]:
        start, end = requested_window(*time_range(request, "range"), datetime.now(timezone.utc))
        if end <= start:
            raise InvalidArgument("range: end must be at least one hour after start (hours are whole UTC hours)")
        if end - start > timedelta(days=self.settings.max_range_days):
            raise InvalidArgument(
                f"range: at most {self.settings.max_range_days} days per run (UEBA_SCORING_MAX_RANGE_DAYS)")
        return start, end

    def _users(self, names) -> list[str]:
        users = []
        for i, name in enumerate(names):
            canonical = canonical_user(check_text(f"users[{i}]", name), self.settings.user_name_mode)
            if not canonical:
                raise InvalidArgument(f"users[{i}]: empty")
            users.append(canonical)
        return users

    def RunScoring(self, request, context):
        start, end = self._window(request)
        users = self._users(request.users)
        tenant = self._tenant()
        result = self.scorer.run(tenant, start, end, users or None, trigger="on_demand")
        row = self.store.get_run(tenant, result.id)
        return run_message(row if row is not None else result)

    def GetScoringRun(self, request, context):
        row = self.store.get_run(self._tenant(), _run_id(request.id))
        if row is None:
            raise NotFound(f"scoring run {request.id} not found")
        return run_message(row)

    def ListScoringRuns(self, request, context):
        rows, token = self.store.list_runs(self._tenant(), page_size(request.page_size, MAX_PAGE), request.page_token)
        return scorer_pb2.ListScoringRunsResponse(runs=[run_message(r) for r in rows], next_page_token=token)

    def ListPeerGroups(self, request, context):
        rows, token = self.store.list_peer_groups(self._tenant(), page_size(request.page_size, MAX_PAGE),
                                                  request.page_token)
        groups = [
            scorer_pb2.PeerGroup(id=r.id, name=r.name, method=r.method, members=list(r.members),
                                 member_count=len(r.members))
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
