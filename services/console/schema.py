"""OpenAPI component schemas of protobuf messages, in the proto3 JSON mapping.

The console answers with `MessageToDict(preserving_proto_field_name=True)` and
reads bodies with `ParseDict`, so the schemas follow that mapping: 64-bit
integers as decimal strings, enums by name, Timestamp as RFC 3339, Struct as
an object.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_F = FieldDescriptor
_INT64 = {"type": "string", "pattern": "^-?[0-9]{1,19}$", "description": "64-bit integer as a decimal string"}
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number"},
    _F.TYPE_FLOAT: {"type": "number"},
    _F.TYPE_INT64: _INT64,
    _F.TYPE_SINT64: _INT64,
    _F.TYPE_SFIXED64: _INT64,
    _F.TYPE_UINT64: {**_INT64, "pattern": "^[0-9]{1,20}$"},
    _F.TYPE_FIXED64: {**_INT64, "pattern": "^[0-9]{1,20}$"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    _F.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 4294967295},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time",
                                  "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
}


def ref(descriptor: Descriptor) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{descriptor.full_name}"}


def message_schemas(roots: list[Descriptor]) -> dict[str, dict[str, Any]]:
    """Schemas of `roots` and every message they reach, keyed by full name."""
    schemas: dict[str, dict[str, Any]] = {}
    pending = list(roots)
    while pending:
        message = pending.pop()
        if message.full_name in schemas or message.full_name in _WELL_KNOWN:
            continue
        properties = {}
        for field in message.fields:
            properties[field.name] = _field_schema(field, pending)
        schemas[message.full_name] = {"type": "object", "properties": properties, "additionalProperties": False}
    return schemas


def _field_schema(field: FieldDescriptor, pending: list[Descriptor]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, pending)}
    single = _single(field, pending)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single(field: FieldDescriptor, pending: list[Descriptor]) -> dict[str, Any]:
    if field.type == _F.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if field.type == _F.TYPE_MESSAGE:
        known = _WELL_KNOWN.get(field.message_type.full_name)
        if known is not None:
            return dict(known)
        pending.append(field.message_type)
        return ref(field.message_type)
    return dict(_SCALARS[field.type])
