"""Between stored rows, detector firings and API messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from services.profiles.kinds import KINDS
from ueba.timestamps import to_proto
from ueba.v1 import profiles_pb2

KIND_PREFIX = "PROFILE_KIND_"


def kind_name(value: int) -> str:
    """PROFILE_KIND_FAILED_LOGINS -> failed_logins; '' for unspecified or unknown numbers."""
    try:
        name = profiles_pb2.ProfileKind.Name(value)
    except ValueError:
        return ""
    return "" if value == 0 else name[len(KIND_PREFIX):].lower()


def kind_value(name: str) -> int:
    return profiles_pb2.ProfileKind.Value(KIND_PREFIX + name.upper())


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


def profile_message(row: Any) -> profiles_pb2.Profile:
    return profiles_pb2.Profile(
        id=str(row.id),
        name=row.name,
        kind=kind_value(row.kind),
        enabled=row.enabled,
        risk_score=row.risk_score,
        description=row.description,
        applications=list(row.applications or ()),
        parameters=struct(row.parameters or {}),
        created_at=to_proto(row.created_at),
        updated_at=to_proto(row.updated_at),
        dimension=row.dimension or KINDS[row.kind].default_dimension,
    )
