"""The query service: read and review API over anomalies, users and scores."""

from __future__ import annotations

import functools
import inspect
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from services.query import anomalies as anomaly_store
from services.query import review as review_store
from services.query import risk_state, summary as summary_store, timelines, users as user_store
from services.query.convert import anomaly, anomaly_from_json, counts, range_message, time_range, timestamp, timestamp_us, to_datetime, user_risk_message
from ueba.errors import DomainError, InvalidArgument, check_text
from ueba.paging import page_size
from services.query.replica import ReadRouting
from services.query.settings import QuerySettings
from services.query.summary import LEVELS_HIGH_FIRST, RollupCache, ordered_counts
from services.query.vocab import STATUSES
from ueba.callctx import current_caller
from ueba.db import create_db_engine
from ueba.server import Registration, ServiceServer, build_server
from ueba.v1 import query_pb2, query_pb2_grpc

SERVICE_NAME = "ueba.v1.QueryService"
DEFAULT_TOP_USERS = 10
MAX_TOP_USERS = 100
DEFAULT_RECENT = 20
MAX_RECENT = 200


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def statuses_on_error(method):
    """Turns domain errors into their gRPC status, for unary and streaming methods alike."""

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except DomainError as exc:
            context.abort(exc.code, exc.message)

    @functools.wraps(method)
    def streaming(self, request, context):
        try:
            yield from method(self, request, context)
        except DomainError as exc:
            context.abort(exc.code, exc.message)

    return streaming if inspect.isgeneratorfunction(method) else unary


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, settings: QuerySettings, engine: Engine, routing: ReadRouting):
        self.settings = settings
        self.engine = engine  # the primary: reviews, the ignore list, the user-risk refresh
        self.routing = routing  # reads: the replica when there is one and it is usable, else the primary
        self.rollups = RollupCache(settings.summary_cache_entries)

    # --- helpers --------------------------------------------------------------

    def _caller(self):
        return current_caller(self.settings.tenant)

    def _tenant(self) -> str:
        return self._caller().tenant

    def _page_size(self, requested: int) -> int:
        return page_size(requested, self.settings.max_page_size)

    def _fresh(self, tenant: str, now: datetime) -> None:
        if risk_state.ensure_fresh(self.engine, tenant, now, self.settings.risk_window_days):
            self.routing.wrote(tenant)

    # --- summary -----------------------------------------------------------------

    @statuses_on_error
    def GetSummary(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        window = timedelta(days=self.settings.risk_window_days)
        start, end = time_range(request)
        if start is None and end is None:
            start, end = now - window, now
        elif start is None:
            start = end - window
        elif end is None:
            end = max(now, start)
        if not 0 <= request.top_users <= MAX_TOP_USERS:
            raise InvalidArgument(f"top_users: expected 0 to {MAX_TOP_USERS}")
        top = request.top_users or DEFAULT_TOP_USERS
        data = summary_store.summary(
            self.routing.reads(tenant), self.rollups, tenant, start, end, request.include_ignored, top, now - window,
            refresh=lambda: self._fresh(tenant, now),
        )
        totals = data.totals
        by_status = totals.anomalies["status"]
        total = sum(by_status.values())
        return query_pb2.Summary(
            range=range_message(start, end),
            total_anomalies=total,
            by_risk_level=counts(ordered_counts(totals.anomalies["level"], LEVELS_HIGH_FIRST)),
            by_profile=counts(ordered_counts(totals.anomalies["profile"])),
            by_dimension=counts(ordered_counts(totals.anomalies["dimension"])),
            by_status=counts(ordered_counts(by_status, STATUSES)),
            by_source=counts(ordered_counts(totals.anomalies["source"], ("rule", "model"))),
            new_anomalies=by_status.get("new", 0),
            reviewed_anomalies=total - by_status.get("new", 0),
            total_points=sum(totals.points["status"].values()),
            riskiest_users=[user_risk_message(r.user_name, r.points, r.risk, r.open_anomalies) for r in data.riskiest],
            users_seen=data.users_seen,
            events=data.events,
        )

    # --- details --------------------------------------------------------------------

    @statuses_on_error
    def ListAnomalies(self, request, context):
        tenant = self._tenant()
        size = self._page_size(request.page_size)
        page = anomaly_store.list_page(
            self.routing.reads(tenant), tenant, request.filter, request.order_by, size, request.page_token, self.settings.count_limit, _utcnow()
        )
        return query_pb2.ListAnomaliesResponse(
            anomalies=[anomaly_from_json(r) for r in page.rows],
            next_page_token=page.next_token,
            total_size=page.total,
            total_size_capped=page.capped,
        )

    @statuses_on_error
    def GetAnomaly(self, request, context):
        tenant = self._tenant()
        with self.routing.engine(tenant).connect() as conn:
            return anomaly(anomaly_store.get(conn, tenant, request.id)._mapping)

    @statuses_on_error
    def ReviewAnomalies(self, request, context):
        caller = self._caller()
        with self.engine.begin() as conn:
            updated, changes = review_store.review(
                conn, caller.tenant, request, caller.actor, _utcnow(), self.settings.risk_window_days
            )
        self.routing.wrote(caller.tenant)
        return query_pb2.ReviewAnomaliesResponse(
            updated=updated,
            risk_changes=[
                query_pb2.RiskChange(
                    user=c.user,
                    points_before=c.points_before,
                    points_after=c.points_after,
                    risk_before=c.risk_before,
                    risk_after=c.risk_after,
                )
                for c in changes
            ],
        )

    @statuses_on_error
    def ExportAnomalies(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        for chunk in anomaly_store.export_csv(self.routing.engine(tenant), tenant, request.filter, now):
            if not context.is_active():
                return
            yield query_pb2.CsvChunk(data=chunk)

    # --- users -------------------------------------------------------------------------

    @statuses_on_error
    def ListUsers(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        size = self._page_size(request.page_size)
        self._fresh(tenant, now)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = user_store.list_users(conn, tenant, request, size)
            names = [r.user_name for r in rows]
            latest = user_store.latest_scores(conn, tenant, names)
            groups = user_store.peer_group_names(conn, tenant) if any(r.peer_group_id for r in rows) else {}
        out = []
        for r in rows:
            learning = user_store.learning_of(r.first_seen, latest.get(r.user_name), now, self.settings.min_baseline_days)
            out.append(
                query_pb2.UserSummary(
                    risk=user_risk_message(r.user_name, int(r.points), int(r.risk), int(r.open_anomalies)),
                    department=r.department or "",
                    peer_group=groups.get(r.peer_group_id, r.peer_group_id or ""),
                    learning=learning.learning,
                    last_seen=timestamp(r.last_seen),
                    last_anomaly_score=learning.last_score,
                )
            )
        return query_pb2.ListUsersResponse(users=out, next_page_token=token)

    @statuses_on_error
    def GetUser(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        name = user_store.required_user("user", request.user)
        if not 0 <= request.recent_limit <= MAX_RECENT:
            raise InvalidArgument(f"recent_limit: expected 0 to {MAX_RECENT}")
        view = user_store.get_user(
            self.routing.reads(tenant), tenant, name, now, self.settings.risk_window_days, self.settings.min_baseline_days,
            request.recent_limit or DEFAULT_RECENT,
        )
        return query_pb2.UserDetail(
            risk=user_risk_message(view.name, view.points, view.risk, view.open_anomalies),
            open_by_profile=counts(view.open_by_profile),
            learning=view.learning.learning,
            baseline_days=view.learning.baseline_days,
            peer_group=view.peer_group,
            department=view.department,
            first_seen=timestamp(view.first_seen),
            last_seen=timestamp(view.last_seen),
            ignored=view.ignored,
            recent_anomalies=[anomaly_from_json(r) for r in view.recent],
            last_anomaly_score=view.learning.last_score,
            last_scored_day=timestamp(view.learning.last_day),
        )

    @statuses_on_error
    def ListUserScores(self, request, context):
        tenant = self._tenant()
        start, end = time_range(request)
        if request.min_score < 0:
            raise InvalidArgument("min_score: must not be negative")
        size = self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = user_store.list_user_scores(conn, tenant, request, start, end, size)
        return query_pb2.ListUserScoresResponse(
            scores=[
                query_pb2.UserDayScore(
                    user=r.user_name, day=timestamp(r.day), anomaly_score=r.score, learning=r.learning, scored_hours=r.scored_hours
                )
                for r in rows
            ],
            next_page_token=token,
        )

    # --- timelines ------------------------------------------------------------------------

    @statuses_on_error
    def GetUserTimeline(self, request, context):
        tenant = self._tenant()
        name = user_store.required_user("user", request.user)
        if not request.HasField("day"):
            raise InvalidArgument("day: required (the scored UTC date)")
        day = summary_store.floor_to(to_datetime(request.day), summary_store.DAY)
        found = timelines.user_day(self.routing.reads(tenant), tenant, name, day)
        threshold = timelines.display_threshold([s[2] for s in found.scores])
        cards_by_hour: list[list] = [[] for _ in range(24)]
        for hour, model, score, features, learning in found.scores:
            cards_by_hour[hour].append(
                query_pb2.ModelCard(
                    model=model,
                    event_score=score,
                    features=timelines.features_of(features),
                    above_threshold=score >= threshold,
                    learning=learning,
                )
            )
        day_start = int(day.timestamp()) * 1_000_000
        hours = [
            query_pb2.TimelineHour(hour=timestamp_us(day_start + i * 3_600_000_000), cards=cards_by_hour[i], events=found.events.get(i, 0))
            for i in range(24)
        ]
        return query_pb2.UserTimeline(
            user=name,
            day=timestamp(day),
            anomaly_score=found.day_score or 0.0,
            display_threshold=threshold,
            hours=hours,
            anomalies=[anomaly_from_json(r) for r in found.anomalies],
        )

    @statuses_on_error
    def GetRiskTimeline(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        start, end = time_range(request)
        end = end or now
        start = start or end - timedelta(days=7)
        if start >= end:
            raise InvalidArgument("range: start must be before end")
        if request.bucket_seconds < 0:
            raise InvalidArgument("bucket_seconds: must not be negative")
        seconds = request.bucket_seconds or 3600
        with self.routing.engine(tenant).connect() as conn:
            buckets = timelines.risk_buckets(conn, tenant, start, end, seconds)
        threshold = timelines.surge_threshold([float(p) for _b, _n, p, _u in buckets])
        return query_pb2.RiskTimeline(
            buckets=[
                query_pb2.RiskBucket(start=timestamp(b), anomalies=n, risk_points=p, surge=p > threshold, users=u)
                for b, n, p, u in buckets
            ],
            surge_threshold=threshold,
            bucket_seconds=seconds,
        )

    # --- ignore list ---------------------------------------------------------------------------

    @statuses_on_error
    def AddIgnoredUser(self, request, context):
        caller = self._caller()
        name = user_store.required_user("user", request.user)
        reason = check_text("reason", request.reason, 1000)
        with self.engine.begin() as conn:
            row = user_store.add_ignored(conn, caller.tenant, name, reason, caller.actor, _utcnow())
        self.routing.wrote(caller.tenant)
        return _ignored(row)

    @statuses_on_error
    def RemoveIgnoredUser(self, request, context):
        caller = self._caller()
        name = user_store.required_user("user", request.user)
        with self.engine.begin() as conn:
            user_store.remove_ignored(conn, caller.tenant, name, caller.actor, _utcnow())
        self.routing.wrote(caller.tenant)
        return query_pb2.RemoveIgnoredUserResponse()

    @statuses_on_error
    def ListIgnoredUsers(self, request, context):
        tenant, size = self._tenant(), self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = user_store.list_ignored(conn, tenant, request.page_token, size)
        return query_pb2.ListIgnoredUsersResponse(users=[_ignored(r) for r in rows], next_page_token=token)


def _ignored(row) -> query_pb2.IgnoredUser:
    return query_pb2.IgnoredUser(user=row.user_name, reason=row.reason, added_by=row.added_by, added_at=timestamp(row.added_at))


def create_server(settings: QuerySettings, engine: Engine, maintenance: bool = True) -> tuple[ServiceServer, int]:
    """The query server bound to settings.listen (not started) and its port.

    `engine` is the primary's; with UEBA_QUERY_READ_DATABASE_URL the reads
    get an engine of their own on the replica (services/query/replica.py).
    """
    replica = None
    if settings.read_database_url:
        replica = create_db_engine(settings.read_database_url, settings.db_pool_size, application_name="ueba-query")
    routing = ReadRouting(engine, settings.db_pool_size, replica, settings.replica_max_lag_seconds,
                          settings.replica_sample_seconds)
    servicer = QueryServicer(settings, engine, routing)
    background: list = [routing]
    if maintenance and settings.maintenance:
        background.append(risk_state.Maintainer(engine, settings.risk_window_days, settings.maintenance_seconds))
    return build_server(
        settings,
        [Registration(query_pb2_grpc.add_QueryServiceServicer_to_server, servicer, SERVICE_NAME)],
        max_workers=settings.threads,
        background=background,
    )
