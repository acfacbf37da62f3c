"""The QueryService API: each method checks its request, calls the domain and the store, and builds the answer.

Domain errors (ueba.errors) raised here become statuses in the shared call interceptor.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from services.query import (
    anomalies, anomaly_events, entities, incidents, review, risk_state, summary as summaries, suppression, timelines,
    users,
)
from services.query.convert import (
    anomaly_from_json, counts, entity_risk_message, event, ignored_user, incident, range_message, risk_change,
    risk_timeline, suppression_rule, timestamp_us, user_risk_message,
)
from services.query.filters import criteria
from services.query.settings import QuerySettings
from services.query.store import users as user_store
from services.query.store.replica import ReadRouting
from services.query.summary import LEVELS_HIGH_FIRST, RollupCache, ordered_counts
from services.query.vocab import STATUSES
from ueba.callctx import Caller, current_caller
from ueba.errors import InvalidArgument, NotFound, check_text
from ueba.paging import page_size
from ueba.timestamps import from_proto, time_range, to_proto
from ueba.v1 import query_pb2, query_pb2_grpc

DEFAULT_TOP_USERS = 10
MAX_TOP_USERS = 100
DEFAULT_RECENT = 20
MAX_RECENT = 200
HOUR_US = 3_600_000_000


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, settings: QuerySettings, engine: Engine, routing: ReadRouting):
        self.settings = settings
        self.engine = engine  # the primary: reviews, the ignore list, the user-risk refresh
        self.routing = routing  # reads: the replica when there is one and it is usable, else the primary
        self.rollups = RollupCache(settings.summary_cache_entries)
        self.counts = anomalies.CountCache(settings.count_cache_entries)
        self.user_mode = settings.user_name_mode

    # --- helpers --------------------------------------------------------------

    def _caller(self) -> Caller:
        return current_caller(self.settings.tenant)

    def _tenant(self) -> str:
        return self._caller().tenant

    def _page_size(self, requested: int) -> int:
        return page_size(requested, self.settings.max_page_size)

    def _user(self, field: str, value: str) -> str:
        return users.required_user(field, value, self.user_mode)

    def _fresh(self, tenant: str, now: datetime) -> None:
        if risk_state.ensure_fresh(self.engine, tenant, now, self.settings.risk_window_days, self.user_mode):
            self.routing.wrote(tenant)

    # --- summary -----------------------------------------------------------------

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
        data = summaries.summary(
            self.routing.reads(tenant), self.rollups, tenant, start, end, request.include_ignored, top, now - window,
            refresh=lambda: self._fresh(tenant, now),
        )
        by = data.totals.anomalies
        total = sum(by["status"].values())
        return query_pb2.Summary(
            range=range_message(start, end),
            total_anomalies=total,
            by_risk_level=counts(ordered_counts(by["level"], LEVELS_HIGH_FIRST)),
            by_profile=counts(ordered_counts(by["profile"])),
            by_dimension=counts(ordered_counts(by["dimension"])),
            by_status=counts(ordered_counts(by["status"], STATUSES)),
            by_source=counts(ordered_counts(by["source"], ("rule", "model"))),
            new_anomalies=by["status"].get("new", 0),
            reviewed_anomalies=total - by["status"].get("new", 0),
            total_points=sum(data.totals.points["status"].values()),
            users_by_risk_level=counts(ordered_counts(data.users_by_level, LEVELS_HIGH_FIRST)),
            riskiest_users=[user_risk_message(r.user_name, r.points, r.risk, r.open_anomalies) for r in data.riskiest],
            users_seen=data.users_seen,
            events=data.events,
        )

    # --- details --------------------------------------------------------------------

    def ListAnomalies(self, request, context):
        tenant = self._tenant()
        size = self._page_size(request.page_size)
        page = anomalies.list_page(
            self.routing.reads(tenant), tenant, request.filter, request.order_by, size, request.page_token,
            self.settings.count_limit, _utcnow(), self.user_mode, self.counts,
        )
        return query_pb2.ListAnomaliesResponse(
            anomalies=[anomaly_from_json(r) for r in page.rows],
            next_page_token=page.next_token,
            total_size=page.total,
            total_size_capped=page.capped,
        )

    def GetAnomaly(self, request, context):
        tenant = self._tenant()
        with self.routing.engine(tenant).connect() as conn:
            return anomaly_from_json(anomalies.get(conn, tenant, request.id))

    def ListAnomalyEvents(self, request, context):
        tenant, size = self._tenant(), self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = anomaly_events.list_events(conn, tenant, request.anomaly_id, request.page_token, size)
        return query_pb2.ListAnomalyEventsResponse(events=[event(r) for r in rows], next_page_token=token)

    def ReviewAnomalies(self, request, context):
        caller = self._caller()
        with self.engine.begin() as conn:
            outcome = review.review(
                conn, caller.tenant, request, caller.actor, _utcnow(), self.settings.risk_window_days, self.user_mode
            )
        if not request.dry_run:
            self.routing.wrote(caller.tenant)
        return query_pb2.ReviewAnomaliesResponse(
            updated=outcome.updated, risk_changes=[risk_change(c) for c in outcome.risk_changes], matched=outcome.matched,
            unchanged=counts({outcome.target: outcome.already} if outcome.already else {}),
        )

    def ExportAnomalies(self, request, context):
        tenant = self._tenant()
        selected = criteria(request.filter, _utcnow(), self.user_mode)
        for chunk in anomalies.export_csv(self.routing.engine(tenant), tenant, selected):
            if not context.is_active():
                return
            yield query_pb2.CsvChunk(data=chunk)

    # --- users -------------------------------------------------------------------------

    def ListUsers(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        size = self._page_size(request.page_size)
        self._fresh(tenant, now)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = users.list_users(conn, tenant, request, size, self.user_mode)
            latest = user_store.latest_scores(conn, tenant, [r.user_name for r in rows])
            groups = user_store.peer_group_names(conn, tenant) if any(r.peer_group_id for r in rows) else {}
        out = []
        for r in rows:
            learning = users.learning_of(r.first_seen, latest.get(r.user_name), now, self.settings.min_baseline_days)
            out.append(
                query_pb2.UserSummary(
                    risk=user_risk_message(r.user_name, int(r.points), int(r.risk), int(r.open_anomalies)),
                    department=r.department or "",
                    peer_group=groups.get(r.peer_group_id, r.peer_group_id or ""),
                    learning=learning.learning,
                    last_seen=to_proto(r.last_seen),
                    last_anomaly_score=learning.last_score,
                )
            )
        return query_pb2.ListUsersResponse(users=out, next_page_token=token)

    def GetUser(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        name = self._user("user", request.user)
        if not 0 <= request.recent_limit <= MAX_RECENT:
            raise InvalidArgument(f"recent_limit: expected 0 to {MAX_RECENT}")
        view = users.get_user(
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
            first_seen=to_proto(view.first_seen),
            last_seen=to_proto(view.last_seen),
            ignored=view.ignored,
            recent_anomalies=[anomaly_from_json(r) for r in view.recent],
            last_anomaly_score=view.learning.last_score,
            last_scored_day=to_proto(view.learning.last_day),
        )

    def ListUserScores(self, request, context):
        tenant = self._tenant()
        start, end = time_range(request)
        if request.min_score < 0:
            raise InvalidArgument("min_score: must not be negative")
        size = self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = users.list_user_scores(conn, tenant, request, start, end, size, self.user_mode)
        return query_pb2.ListUserScoresResponse(
            scores=[
                query_pb2.UserDayScore(
                    user=r.user_name, day=to_proto(r.day), anomaly_score=r.score, learning=r.learning, scored_hours=r.scored_hours
                )
                for r in rows
            ],
            next_page_token=token,
        )

    # --- timelines ------------------------------------------------------------------------

    def GetUserTimeline(self, request, context):
        tenant = self._tenant()
        name = self._user("user", request.user)
        if not request.HasField("day"):
            raise InvalidArgument("day: required (the scored UTC date)")
        day = summaries.floor_to(from_proto(request.day, "day"), summaries.DAY)
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
            query_pb2.TimelineHour(hour=timestamp_us(day_start + i * HOUR_US), cards=cards_by_hour[i], events=found.events.get(i, 0))
            for i in range(24)
        ]
        return query_pb2.UserTimeline(
            user=name,
            day=to_proto(day),
            anomaly_score=found.day_score or 0.0,
            display_threshold=threshold,
            hours=hours,
            anomalies=[anomaly_from_json(r) for r in found.anomalies],
        )

    def GetRiskTimeline(self, request, context):
        tenant = self._tenant()
        start, end, seconds = timelines.buckets_of(*time_range(request), request.bucket_seconds, _utcnow())
        with self.routing.engine(tenant).connect() as conn:
            buckets = timelines.risk_buckets(conn, tenant, start, end, seconds)
        return risk_timeline(buckets, seconds)

    # --- ignore list ---------------------------------------------------------------------------

    def AddIgnoredUser(self, request, context):
        caller = self._caller()
        name = self._user("user", request.user)
        reason = check_text("reason", request.reason, 1000)
        with self.engine.begin() as conn:
            row = user_store.add_ignored(conn, caller.tenant, name, reason, caller.actor, _utcnow())
        self.routing.wrote(caller.tenant)
        return ignored_user(row)

    def RemoveIgnoredUser(self, request, context):
        caller = self._caller()
        name = self._user("user", request.user)
        with self.engine.begin() as conn:
            if not user_store.remove_ignored(conn, caller.tenant, name, caller.actor, _utcnow()):
                raise NotFound(f"user {name!r} is not on the ignore list")
        self.routing.wrote(caller.tenant)
        return query_pb2.RemoveIgnoredUserResponse()

    def ListIgnoredUsers(self, request, context):
        tenant, size = self._tenant(), self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = users.list_ignored(conn, tenant, request.page_token, size)
        return query_pb2.ListIgnoredUsersResponse(users=[ignored_user(r) for r in rows], next_page_token=token)

    # --- entities -------------------------------------------------------------------------------

    def ListEntities(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        size = self._page_size(request.page_size)
        self._fresh(tenant, now)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = entities.list_entities(conn, tenant, request, size)
        return query_pb2.ListEntitiesResponse(
            entities=[entity_risk_message(r.entity_type, r.entity, int(r.points), int(r.risk), int(r.open_anomalies)) for r in rows],
            next_page_token=token,
        )

    def GetEntity(self, request, context):
        tenant, now = self._tenant(), _utcnow()
        if not 0 <= request.recent_limit <= MAX_RECENT:
            raise InvalidArgument(f"recent_limit: expected 0 to {MAX_RECENT}")
        with self.routing.engine(tenant).connect() as conn:
            view = entities.get_entity(
                conn, tenant, request.entity, now, self.settings.risk_window_days, request.recent_limit or DEFAULT_RECENT,
                self.user_mode,
            )
        return query_pb2.EntityDetail(
            risk=entity_risk_message(view.entity_type, view.name, view.points, view.risk, view.open_anomalies),
            first_seen=to_proto(view.first_seen),
            last_seen=to_proto(view.last_seen),
            linked=view.linked,
            open_incidents=[incident(r) for r in view.open_incidents],
            recent_anomalies=[anomaly_from_json(r) for r in view.recent],
        )

    def GetEntityTimeline(self, request, context):
        tenant = self._tenant()
        with self.routing.engine(tenant).connect() as conn:
            buckets, seconds = entities.entity_timeline(conn, tenant, request, _utcnow(), self.user_mode)
        return risk_timeline(buckets, seconds)

    # --- incidents ------------------------------------------------------------------------------

    def ListIncidents(self, request, context):
        tenant, size = self._tenant(), self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = incidents.list_incidents(conn, tenant, request, size, self.user_mode)
        return query_pb2.ListIncidentsResponse(incidents=[incident(r) for r in rows], next_page_token=token)

    def GetIncident(self, request, context):
        tenant = self._tenant()
        with self.routing.engine(tenant).connect() as conn:
            row, findings = incidents.get(conn, tenant, request.id)
        return query_pb2.IncidentDetail(incident=incident(row), anomalies=[anomaly_from_json(r) for r in findings])

    def ReviewIncidents(self, request, context):
        caller = self._caller()
        with self.engine.begin() as conn:
            updated, findings, changes = incidents.review(
                conn, caller.tenant, request, caller.actor, _utcnow(), self.settings.risk_window_days
            )
        self.routing.wrote(caller.tenant)
        return query_pb2.ReviewIncidentsResponse(
            updated=updated, anomalies_updated=findings, risk_changes=[risk_change(c) for c in changes]
        )

    # --- suppression rules -----------------------------------------------------------------------

    def CreateSuppressionRule(self, request, context):
        caller = self._caller()
        with self.engine.begin() as conn:
            rule, changed, changes = suppression.create(
                conn, caller.tenant, request, caller.actor, _utcnow(), self.settings.risk_window_days, self.user_mode
            )
        self.routing.wrote(caller.tenant)
        return query_pb2.CreateSuppressionRuleResponse(
            rule=suppression_rule(rule, len(changed), True), applied=len(changed),
            risk_changes=[risk_change(c) for c in changes],
        )

    def ListSuppressionRules(self, request, context):
        tenant, now, size = self._tenant(), _utcnow(), self._page_size(request.page_size)
        with self.routing.engine(tenant).connect() as conn:
            rows, token = suppression.list_rules(conn, tenant, request, now, size)
        return query_pb2.ListSuppressionRulesResponse(
            rules=[suppression_rule(r, r.applied, suppression.is_active(r, now)) for r in rows], next_page_token=token
        )

    def DeleteSuppressionRule(self, request, context):
        caller, now = self._caller(), _utcnow()
        with self.engine.begin() as conn:
            row = suppression.delete(conn, caller.tenant, request.id, caller.actor, now)
        self.routing.wrote(caller.tenant)
        return suppression_rule(row, 0, False)
