"""The events table as the detectors read it: columns in EventRecord order, a snapshot
parameter and the hash-bucket filter shared by the tailing and the history reads."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import cast, func, literal
from sqlalchemy.types import Text, UserDefinedType

from ueba.store.schema import events


class PgSnapshot(UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "pg_snapshot"


def snapshot_param(value: str):
    return cast(literal(value, Text), PgSnapshot())


# In EventRecord's field order, so that a row is its positional arguments (the record computes
# `ts`; the delta page reads it: date_part's double is datetime.timestamp()'s, and free there).
EVENT_COLUMNS = (
    events.c.event_id, events.c.time, events.c.user_name, events.c.event_type, events.c.outcome, events.c.tenant,
    # As text: parsing every address into an ipaddress object costs more than the detectors.
    func.host(events.c.source_ip), events.c.source_host, events.c.destination_host, events.c.application, events.c.country,
    events.c.city, events.c.latitude, events.c.longitude, events.c.bytes, events.c.file_count, events.c.action,
    events.c.department, events.c.producer, events.c.object, events.c.failure_reason, events.c.logon_type,
    events.c.trusted_source,
)


@dataclass(frozen=True)
class BucketSet:
    """Users of some of the N hash buckets (`ueba_bucket(tenant, user, N)`, migration 0008)."""

    n: int
    buckets: frozenset[int]

    def clause(self, table=events):
        """Rows of `table` (with tenant and user_name columns) whose user is in these buckets."""
        return func.ueba_bucket(table.c.tenant, table.c.user_name, self.n).in_(sorted(self.buckets))
