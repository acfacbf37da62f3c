"""The product end to end, as a deployment runs it: every service its own process on a fresh
database, events shipped into ingest over gRPC, rule anomalies raised by the profiles service, one
scoring run asked of the scorer, and what an analyst sees read back through the query API.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import grpc
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp

from ueba.client.ingest import IngestClient
from ueba.db import libpq_url
from ueba.launcher import ServiceProcess, start_service
from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc, scorer_pb2, scorer_pb2_grpc

UserDay = tuple[str, date]
LEVEL_NAMES = {common_pb2.RISK_LEVEL_LOW: "low", common_pb2.RISK_LEVEL_MEDIUM: "medium",
               common_pb2.RISK_LEVEL_HIGH: "high", common_pb2.RISK_LEVEL_CRITICAL: "critical"}
PAGE = 1000

# Every cursor of the profiles evaluator (one per bucket, one global) covers every stored event.
_EVALUATOR_BEHIND = """
    SELECT count(*) = 0 AS none_yet,
           coalesce(bool_or(EXISTS (SELECT 1 FROM events e
                                    WHERE NOT pg_visible_in_snapshot(e.txid, c.snapshot::pg_snapshot))), false)
    FROM profile_cursors c WHERE c.consumer LIKE 'evaluator%%'"""


@dataclass
class Readout:
    """What the query API shows: daily user scores, anomalies, and each user's current risk."""
    day_scores: dict[UserDay, float]
    anomaly_risk: dict[UserDay, int]       # highest anomaly risk score of the user that day
    strongest: dict[UserDay, str]          # what that anomaly says, to explain a user-day's score
    anomalies: int
    risks: dict[str, tuple[int, str]]      # user -> (risk 0-100, level)

    def product_scores(self) -> dict[UserDay, float]:
        """Per user-day, the scorer's calibrated user-day score: models and rule findings on one scale."""
        return dict(self.day_scores)

    def max_of_scales(self) -> dict[UserDay, float]:
        """Per user-day, the higher of the user-day score and the risk of that day's anomalies: what the
        evaluation read before the user-day score took in rule findings, kept for comparison."""
        out = dict(self.day_scores)
        for key, risk in self.anomaly_risk.items():
            out[key] = max(out.get(key, 0.0), float(risk))
        return out


@contextmanager
def running_services(database_url: str, log_dir: Path) -> Iterator[dict[str, ServiceProcess]]:
    env = {
        "DATABASE_URL": database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
        "UEBA_ANOMALY_LOG": "off", "UEBA_SCORING_SCHEDULE": "off", "UEBA_PROFILES_POLL_SECONDS": "0.2",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("ingest", "profiles", "scorer", "query"):
            started[name] = start_service(name, env, log_path=log_dir / f"{name}.log")
        yield started
    finally:
        for svc in started.values():
            svc.stop()


def ship(address: str, events: Iterable[common_pb2.Event]) -> dict[str, int]:
    # One batch in flight: a month replays in seconds, and batches committed out of order would
    # reach the detectors later than a live agent's events ever do.
    with IngestClient(address, batch_size=2000, window=1) as client:
        totals = client.send(events)
    if totals.rejected:
        first = totals.rejections[0]
        raise RuntimeError(f"ingest rejected {totals.rejected} events, e.g. {first.field}: {first.reason}")
    return {"sent": totals.sent, "accepted": totals.accepted, "duplicates": totals.duplicates}


def wait_for_profiles(database_url: str, timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        while True:
            none_yet, behind = conn.execute(_EVALUATOR_BEHIND).fetchone()
            if not none_yet and not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the profiles evaluator did not catch up with the shipped events")
            time.sleep(2.0)


def run_scoring(address: str, start: datetime, end: datetime) -> dict[str, int]:
    with grpc.insecure_channel(address) as channel:
        run = scorer_pb2_grpc.ScorerServiceStub(channel).RunScoring(
            scorer_pb2.RunScoringRequest(range=_range(start, end)), timeout=3600)
    if run.status != scorer_pb2.RUN_STATUS_SUCCEEDED:
        raise RuntimeError(f"scoring run failed: {run.error}")
    return {"users_scored": run.users_scored, "event_scores": run.event_scores, "user_scores": run.user_scores,
            "model_anomalies": run.anomalies}


def read_back(address: str, start: datetime, end: datetime) -> Readout:
    with grpc.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        day_scores = {}
        for s in _pages(stub.ListUserScores, query_pb2.ListUserScoresRequest(range=_range(start, end)), "scores"):
            day_scores[(s.user, s.day.ToDatetime(tzinfo=timezone.utc).date())] = s.anomaly_score
        anomaly_risk: dict[UserDay, int] = defaultdict(int)
        strongest: dict[UserDay, str] = {}
        count = 0
        request = query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(range=_range(start, end)),
                                                 order_by="time asc")
        for a in _pages(stub.ListAnomalies, request, "anomalies"):
            key = (a.user, a.time.ToDatetime(tzinfo=timezone.utc).date())
            if a.risk_score > anomaly_risk[key]:
                anomaly_risk[key] = a.risk_score
                strongest[key] = f"{a.profile_kind} {a.risk_score}: {a.description}"[:200]
            count += 1
        risks = {u.risk.user: (u.risk.risk, LEVEL_NAMES.get(u.risk.risk_level, "low"))
                 for u in _pages(stub.ListUsers, query_pb2.ListUsersRequest(), "users")}
    return Readout(day_scores, dict(anomaly_risk), strongest, count, risks)


def _pages(call, request, field: str):
    request.page_size = PAGE
    while True:
        response = call(request, timeout=120)
        yield from getattr(response, field)
        if not response.next_page_token:
            return
        request.page_token = response.next_page_token


def _range(start: datetime, end: datetime) -> common_pb2.TimeRange:
    a, b = Timestamp(), Timestamp()
    a.FromDatetime(start)
    b.FromDatetime(end)
    return common_pb2.TimeRange(start=a, end=b)
