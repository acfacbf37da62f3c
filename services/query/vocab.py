"""The stored vocabularies the query service filters on, and their proto enums."""

from __future__ import annotations

from ueba.risk import LEVELS, level_floor
from ueba.v1 import common_pb2

# The scorer's models and dimensions (services/scorer/models.py; tests/query/test_vocab.py keeps them in step)
# and the rule profiles' dimensions.
DIMENSIONS = ("authentication", "data", "location", "host", "application", "time", "peer", "combined")
MODELS = ("authentication", "impacted_host", "login_time", "origin_host", "origin_location", "data_movement", "peer_group",
          "corroboration")
STATUSES = ("new", "acknowledged", "resolved", "false_positive")
REVIEWED = ("acknowledged", "resolved", "false_positive")

# Words the query string accepts for status; None means any status.
STATUS_WORDS: dict[str, tuple[str, ...] | None] = {
    "new": ("new",),
    "open": ("new",),
    "acknowledged": ("acknowledged",),
    "ack": ("acknowledged",),
    "resolved": ("resolved",),
    "false_positive": ("false_positive",),
    "fp": ("false_positive",),
    "reviewed": REVIEWED,
    "all": None,
    "any": None,
}

LEVEL_ENUM = {
    "low": common_pb2.RISK_LEVEL_LOW,
    "medium": common_pb2.RISK_LEVEL_MEDIUM,
    "high": common_pb2.RISK_LEVEL_HIGH,
    "critical": common_pb2.RISK_LEVEL_CRITICAL,
}
ENUM_LEVEL = {v: k for k, v in LEVEL_ENUM.items()}
STATUS_ENUM = {
    "new": common_pb2.ANOMALY_STATUS_NEW,
    "acknowledged": common_pb2.ANOMALY_STATUS_ACKNOWLEDGED,
    "resolved": common_pb2.ANOMALY_STATUS_RESOLVED,
    "false_positive": common_pb2.ANOMALY_STATUS_FALSE_POSITIVE,
}
ENUM_STATUS = {v: k for k, v in STATUS_ENUM.items()}
SOURCE_ENUM = {"rule": common_pb2.ANOMALY_SOURCE_RULE, "model": common_pb2.ANOMALY_SOURCE_MODEL}
ENUM_SOURCE = {v: k for k, v in SOURCE_ENUM.items()}
ENTITY_ENUM = {"user": common_pb2.ENTITY_TYPE_USER, "ip": common_pb2.ENTITY_TYPE_IP, "host": common_pb2.ENTITY_TYPE_HOST}
ENUM_ENTITY = {v: k for k, v in ENTITY_ENUM.items()}
OUTCOME_ENUM = {"success": common_pb2.OUTCOME_SUCCESS, "failure": common_pb2.OUTCOME_FAILURE}


def level_band(level: str) -> tuple[int, int]:
    """(lowest, highest) score of a risk level, from ueba.risk's bands."""
    index = LEVELS.index(level)
    high = level_floor(LEVELS[index + 1]) - 1 if index + 1 < len(LEVELS) else 100
    return level_floor(level), high

