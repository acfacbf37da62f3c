"""What callers type for an entity, in the form the profiles store it."""

from __future__ import annotations

import ipaddress

from ueba.messages import ENUM_ENTITY
from ueba.errors import InvalidArgument, check_text
from ueba.names import canonical_user

ENTITY_TYPES = ("user", "ip", "host")


def entity_name(entity_type: str, raw: str, user_mode: str, field: str) -> str:
    """An account in the service's user name mode, an address in its canonical text, a host in lower case."""
    value = check_text(field, raw).strip()
    if entity_type == "user":
        value = canonical_user(value, user_mode)
    elif entity_type == "ip":
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError:
            raise InvalidArgument(f"{field}: {raw[:64]!r} is not an IP address") from None
    else:
        value = value.lower()
    if not value:
        raise InvalidArgument(f"{field}: required")
    return value


def entity_type_of(value: int, field: str, required: bool = True) -> str | None:
    """The stored type of an EntityType enum value (None: unspecified and not required)."""
    if value in ENUM_ENTITY:
        return ENUM_ENTITY[value]
    if value or required:
        raise InvalidArgument(f"{field}: give an entity type ({', '.join(ENTITY_TYPES)})")
    return None


def entity_ref(ref, user_mode: str, field: str) -> tuple[str, str]:
    """(type, name) of an EntityRef message."""
    entity_type = entity_type_of(ref.type, f"{field}.type")
    return entity_type, entity_name(entity_type, ref.name, user_mode, f"{field}.name")
