"""The shared vocabulary's proto enums and the one builder of Anomaly messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf.timestamp_pb2 import Timestamp

from ueba.risk import LEVELS, risk_level
from ueba.timestamps import to_proto
from ueba.v1 import common_pb2

if TYPE_CHECKING:  # the CLI reads the enums without loading the store
    from ueba.store.anomalies import AnomalyRecord


def enum_words(enum, prefix: str, words) -> dict[str, int]:
    """Stored words to enum values: 'high' -> RISK_LEVEL_HIGH."""
    return {w: enum.Value(f"{prefix}_{w.upper()}") for w in words}


LEVEL_ENUM = enum_words(common_pb2.RiskLevel, "RISK_LEVEL", LEVELS)
STATUS_ENUM = enum_words(common_pb2.AnomalyStatus, "ANOMALY_STATUS", ("new", "acknowledged", "resolved", "false_positive", "suppressed"))
SOURCE_ENUM = enum_words(common_pb2.AnomalySource, "ANOMALY_SOURCE", ("rule", "model"))
ENTITY_ENUM = enum_words(common_pb2.EntityType, "ENTITY_TYPE", ("user", "ip", "host"))
OUTCOME_ENUM = enum_words(common_pb2.Outcome, "OUTCOME", ("success", "failure"))
ENUM_LEVEL = {v: k for k, v in LEVEL_ENUM.items()}
ENUM_STATUS = {v: k for k, v in STATUS_ENUM.items()}
ENUM_SOURCE = {v: k for k, v in SOURCE_ENUM.items()}
ENUM_ENTITY = {v: k for k, v in ENTITY_ENUM.items()}


def level_enum(score: int) -> int:
    return LEVEL_ENUM[risk_level(score)]


def entity_message(entity_type: str, name: str) -> common_pb2.EntityRef:
    return common_pb2.EntityRef(type=ENTITY_ENUM.get(entity_type, common_pb2.ENTITY_TYPE_UNSPECIFIED), name=name)


def anomaly_message(
    *,
    user: str,
    source: str,
    profile_id: str,
    profile_name: str,
    profile_kind: str,
    risk_score: int,
    description: str,
    dimension: str,
    time: Timestamp | None,
    window_start: Timestamp | None,
    window_end: Timestamp | None,
    status: str,
    evidence: dict[str, Any] | None,
    entity_type: str,
    entity: str,
    id: str = "",
    created_at: Timestamp | None = None,
    reviewed_by: str = "",
    reviewed_at: Timestamp | None = None,
    review_comment: str = "",
    incident_id: str = "",
    suppression_rule: str = "",
    original_score: int = 0,
) -> common_pb2.Anomaly:
    message = common_pb2.Anomaly(
        id=id,
        user=user,
        source=SOURCE_ENUM.get(source, common_pb2.ANOMALY_SOURCE_UNSPECIFIED),
        profile_id=profile_id,
        profile_name=profile_name,
        profile_kind=profile_kind,
        risk_score=risk_score,
        risk_level=level_enum(risk_score),
        description=description,
        dimension=dimension,
        time=time,
        window_start=window_start,
        window_end=window_end,
        status=STATUS_ENUM.get(status, common_pb2.ANOMALY_STATUS_UNSPECIFIED),
        created_at=created_at,
        reviewed_by=reviewed_by,
        reviewed_at=reviewed_at,
        review_comment=review_comment,
        entity=entity_message(entity_type, entity),
        incident_id=incident_id,
        suppression_rule=suppression_rule,
        original_score=original_score,
    )
    # Present even when empty, so clients read one shape.
    message.evidence.SetInParent()
    if evidence:
        message.evidence.update(evidence)
    return message


def record_message(f: AnomalyRecord) -> common_pb2.Anomaly:
    """A finding not yet stored (a preview over history): status new, no id."""
    return anomaly_message(
        user=f.user, source=f.source, profile_id=f.profile_id, profile_name=f.profile_name,
        profile_kind=f.profile_kind, risk_score=f.risk_score, description=f.description,
        dimension=f.dimension, time=to_proto(f.time), window_start=to_proto(f.window_start),
        window_end=to_proto(f.window_end), status="new", evidence=f.evidence,
        entity_type=f.entity_type, entity=f.subject[1],
    )
