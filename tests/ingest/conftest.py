"""Fixtures of the ingest tests: events, settings, and a pipeline on the session database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.ingest.pipeline import IngestPipeline
from services.ingest.settings import IngestSettings
from ueba.v1 import common_pb2


def make_event(**fields) -> common_pb2.Event:
    """A valid logon an hour ago; keyword arguments override fields (time as datetime)."""
    when = fields.pop("time", datetime.now(timezone.utc) - timedelta(hours=1))
    geo = fields.pop("geo", None)
    attributes = fields.pop("attributes", None)
    values = {"user": "CORP\\Alice", "type": common_pb2.EVENT_TYPE_LOGON, "outcome": common_pb2.OUTCOME_SUCCESS}
    values.update(fields)
    event = common_pb2.Event(**values)
    if when is not None:
        event.time.FromDatetime(when)
    if geo is not None:
        event.geo.CopyFrom(geo)
    if attributes:
        event.attributes.update(attributes)
    return event


def settings(**overrides) -> IngestSettings:
    return IngestSettings.from_env({}, **overrides)


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own: tests share the session database but never each other's rows."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pipeline(engine):
    p = IngestPipeline(settings(), engine)
    yield p
    p.close()
