"""Rows and domain values to messages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from services.query.timelines import surge_threshold
from ueba.messages import (
    LEVEL_ENUM, OUTCOME_ENUM, STATUS_ENUM, anomaly_message, entity_message, enum_words, level_enum,
)
from ueba.parsers.base import TYPE_BY_NAME
from ueba.timestamps import to_proto
from ueba.v1 import cases_pb2, common_pb2, query_pb2


def range_message(start: datetime | None, end: datetime | None) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=to_proto(start), end=to_proto(end))


def user_risk_message(user: str, points: int, risk: int, open_anomalies: int) -> common_pb2.UserRisk:
    return common_pb2.UserRisk(
        user=user,
        total_points=points,
        risk=risk,
        risk_level=level_enum(risk),
        open_anomalies=open_anomalies,
    )


def counts(pairs: Mapping[str, int] | list[tuple[str, int]]) -> list[query_pb2.Count]:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return [query_pb2.Count(key=k, count=v) for k, v in items]


# --- rows that Postgres built as JSON arrays (store/json_rows.py) ------------------

def timestamp_us(us: int | None) -> Timestamp | None:
    if us is None:
        return None
    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def anomaly_from_json(values: list) -> common_pb2.Anomaly:
    """An anomaly from its JSON array (fields in store.json_rows.ANOMALY_FIELDS order)."""
    (id_, user, source, profile_id, profile_name, profile_kind, score, description, dimension,
     time_us, window_start, window_end, status, evidence, created_at, reviewed_by, reviewed_at, comment,
     entity_type, entity, incident_id, suppressed_by, original_score) = values
    return anomaly_message(
        id=id_, user=user, source=source, profile_id=profile_id, profile_name=profile_name,
        profile_kind=profile_kind, risk_score=score, description=description, dimension=dimension,
        time=timestamp_us(time_us), window_start=timestamp_us(window_start), window_end=timestamp_us(window_end),
        status=status, evidence=evidence, created_at=timestamp_us(created_at), reviewed_by=reviewed_by or "",
        reviewed_at=timestamp_us(reviewed_at), review_comment=comment or "", entity_type=entity_type,
        entity=entity, incident_id=incident_id or "", suppression_rule=suppressed_by or "",
        original_score=original_score or 0,
    )


def event(row) -> common_pb2.Event:
    """A stored event (a row of `events`) as the message ingest took it in."""
    geo = common_pb2.GeoLocation(country_code=row.country or "", city=row.city or "")
    if row.latitude is not None and row.longitude is not None:
        geo.latitude, geo.longitude, geo.has_coordinates = row.latitude, row.longitude, True
    return common_pb2.Event(
        event_id=row.event_id,
        time=to_proto(row.time),
        user=row.user_name,
        type=TYPE_BY_NAME.get(row.event_type, common_pb2.EVENT_TYPE_UNSPECIFIED),
        outcome=OUTCOME_ENUM.get(row.outcome, common_pb2.OUTCOME_UNSPECIFIED),
        source_ip=str(row.source_ip or ""),
        source_host=row.source_host or "",
        destination_host=row.destination_host or "",
        destination_ip=str(row.destination_ip or ""),
        application=row.application or "",
        geo=geo,
        bytes=row.bytes,
        file_count=row.file_count,
        object=row.object or "",
        department=row.department or "",
        user_agent=row.user_agent or "",
        action=row.action or "",
        failure_reason=row.failure_reason or "",
        producer=row.producer or "",
        attributes={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (row.attributes or {}).items()},
        logon_type=row.logon_type or 0,
    )


def ignored_user(row) -> query_pb2.IgnoredUser:
    return query_pb2.IgnoredUser(user=row.user_name, reason=row.reason, added_by=row.added_by, added_at=to_proto(row.added_at))


def entity_risk_message(entity_type: str, name: str, points: int, risk: int, open_anomalies: int) -> query_pb2.EntityRisk:
    return query_pb2.EntityRisk(
        entity=entity_message(entity_type, name),
        total_points=points,
        risk=risk,
        risk_level=level_enum(risk),
        open_anomalies=open_anomalies,
    )


def incident(row) -> query_pb2.Incident:
    message = query_pb2.Incident(
        id=row.id,
        entity=entity_message(row.entity_type, row.entity),
        kind=row.kind,
        dimension=row.dimension,
        title=row.title,
        first_seen=to_proto(row.first_seen),
        last_seen=to_proto(row.last_seen),
        event_count=row.event_count,
        risk_score=row.risk_score,
        risk_level=level_enum(row.risk_score),
        anomaly_count=row.anomaly_count,
        status=STATUS_ENUM.get(row.status, common_pb2.ANOMALY_STATUS_UNSPECIFIED),
        reviewed_by=row.reviewed_by or "",
        reviewed_at=to_proto(row.reviewed_at),
        review_comment=row.review_comment or "",
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
    )
    message.evidence.update(row.evidence or {})
    return message


def risk_change(change) -> query_pb2.RiskChange:
    return query_pb2.RiskChange(
        user=change.user,
        points_before=change.points_before,
        points_after=change.points_after,
        risk_before=change.risk_before,
        risk_after=change.risk_after,
    )


def risk_timeline(buckets, seconds: int) -> query_pb2.RiskTimeline:
    """Buckets [(start, anomalies, points, accounts)] with their surges."""
    threshold = surge_threshold([float(p) for _b, _n, p, _u in buckets])
    return query_pb2.RiskTimeline(
        buckets=[
            query_pb2.RiskBucket(start=to_proto(b), anomalies=n, risk_points=p, surge=p > threshold, users=u)
            for b, n, p, u in buckets
        ],
        surge_threshold=threshold,
        bucket_seconds=seconds,
    )


def suppression_rule(row, applied: int, active: bool) -> query_pb2.SuppressionRule:
    entity = entity_message(row.entity_type, row.entity) if row.entity else None
    return query_pb2.SuppressionRule(
        id=row.id,
        action={"suppress": query_pb2.SUPPRESSION_ACTION_SUPPRESS, "down_weight": query_pb2.SUPPRESSION_ACTION_DOWN_WEIGHT}[row.action],
        weight=row.weight,
        match=query_pb2.SuppressionMatch(entity=entity, profile=row.profile or "", cidr=row.cidr or "", query=row.query or ""),
        reason=row.reason,
        created_by=row.created_by,
        created_at=to_proto(row.created_at),
        expires_at=to_proto(row.expires_at),
        deleted_at=to_proto(row.deleted_at),
        deleted_by=row.deleted_by or "",
        applied=applied,
        active=active,
    )


CASE_STATUS_ENUM = enum_words(cases_pb2.CaseStatus, "CASE_STATUS", ("new", "in_progress", "closed"))
CLOSE_REASON_ENUM = enum_words(cases_pb2.CloseReason, "CLOSE_REASON", ("true_positive", "benign", "false_positive"))


def case(row, incident_ids: list[str], comments: int) -> cases_pb2.Case:
    return cases_pb2.Case(
        id=row.id,
        title=row.title,
        status=CASE_STATUS_ENUM[row.status],
        close_reason=CLOSE_REASON_ENUM.get(row.close_reason or "", cases_pb2.CLOSE_REASON_UNSPECIFIED),
        severity=LEVEL_ENUM[row.severity],
        owner=row.owner,
        incident_ids=incident_ids,
        created_by=row.created_by,
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
        closed_at=to_proto(row.closed_at),
        comments=comments,
    )


def case_entry(row) -> cases_pb2.CaseEntry:
    message = cases_pb2.CaseEntry(id=row.id, at=to_proto(row.at), actor=row.actor, kind=row.kind, text=row.text)
    message.details.update(row.details or {})
    return message
