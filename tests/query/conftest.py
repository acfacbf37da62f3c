"""A real query server per test, on port 0, with a tenant of the test's own.

Rows go straight into the shared tables (the profiles service and the scorer
write them in production); each test's tenant keeps it apart from the others
in the session database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import grpc
import psycopg
import pytest
from sqlalchemy import Engine, insert, select

from services.query.server import create_server
from services.query.settings import QuerySettings
from ueba.db import libpq_url
from ueba.store.partitions import EVENT_SCORES, ensure_partitions
from ueba.store.anomalies import AnomalyRecord, write_anomalies
from ueba.store.schema import anomalies, event_scores, events, peer_groups, user_scores, users
from ueba.v1 import cases_pb2_grpc, query_pb2_grpc

NOW = datetime.now(timezone.utc)


@dataclass
class Store:
    """Writes test rows for one tenant."""

    engine: Engine
    database_url: str
    tenant: str
    _seq: list[int] = field(default_factory=lambda: [0])

    def anomaly(
        self,
        user: str = "alice",
        score: int = 50,
        time: datetime | None = None,
        status: str = "new",
        kind: str = "failed_logins",
        name: str | None = None,
        source: str = "rule",
        dimension: str = "authentication",
        description: str = "failed logins",
        evidence: dict | None = None,
        tenant: str | None = None,
    ) -> str:
        self._seq[0] += 1
        time = time or NOW - timedelta(hours=1)
        row = {
            "tenant": tenant or self.tenant,
            "user_name": user,
            "source": source,
            "profile_id": kind if source == "model" else f"p-{kind}",
            "profile_name": name or kind.replace("_", " "),
            "profile_kind": kind,
            "risk_score": score,
            "description": description,
            "dimension": dimension,
            "time": time,
            "window_start": time - timedelta(minutes=10),
            "window_end": time,
            "status": status,
            "evidence": evidence if evidence is not None else {"event_ids": [f"e{self._seq[0]}"], "count": 3},
            "dedup_key": f"k-{uuid.uuid4().hex}",
        }
        with self.engine.begin() as conn:
            return conn.execute(insert(anomalies).values(row).returning(anomalies.c.id)).scalar_one()

    def incident(self, user: str = "alice", scores: tuple[int, ...] = (80,), kind: str = "failed_logins",
                 evidence: dict | None = None, entity: tuple[str, str] | None = None) -> tuple[str, list[str]]:
        """Findings written as the profiles service writes them, so that they form one incident; (incident id, anomaly ids)."""
        records = []
        for n, score in enumerate(scores):
            self._seq[0] += 1
            time = NOW - timedelta(hours=2) + timedelta(minutes=n)
            records.append(AnomalyRecord(
                tenant=self.tenant, user=user if entity is None else "", source="rule", profile_id=f"p-{kind}",
                profile_name=kind.replace("_", " "), profile_kind=kind, risk_score=score, description=f"{kind} {n}",
                dimension="authentication", time=time, window_start=time - timedelta(minutes=10), window_end=time,
                evidence=evidence if evidence is not None else {"event_ids": [f"e{self._seq[0]}"], "count": 3},
                dedup_key=f"k-{uuid.uuid4().hex}", **({"entity_type": entity[0], "entity": entity[1]} if entity else {}),
            ))
        with self.engine.begin() as conn:
            write_anomalies(conn, records)
            found = conn.execute(select(anomalies.c.id, anomalies.c.incident_id).where(
                anomalies.c.tenant == self.tenant, anomalies.c.dedup_key.in_([r.dedup_key for r in records]))).all()
        incident_ids = {r.incident_id for r in found}
        assert len(incident_ids) == 1, incident_ids
        return incident_ids.pop(), sorted(r.id for r in found)

    def user(self, name: str, department: str | None = None, first_seen: datetime | None = None,
             last_seen: datetime | None = None, peer_group_id: str | None = None, tenant: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(users).values(
                tenant=tenant or self.tenant, user_name=name, department=department,
                first_seen=first_seen or NOW - timedelta(days=40), last_seen=last_seen or NOW - timedelta(hours=1),
                peer_group_id=peer_group_id,
            ))

    def peer_group(self, group_id: str, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(peer_groups).values(tenant=self.tenant, id=group_id, name=name, method="department"))

    def user_score(self, user: str, day: date, score: float, learning: bool = False, hours: int = 10, tenant: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(user_scores).values(
                tenant=tenant or self.tenant, user_name=user, day=day, score=score, scored_hours=hours,
                learning=learning, run_id=str(uuid.uuid4()),
            ))

    def event_score(self, user: str, hour: datetime, model: str, score: int, features: list[dict] | None = None,
                    learning: bool = False, tenant: str | None = None) -> None:
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as pg:
            ensure_partitions(pg, {hour.astimezone(timezone.utc).date()}, EVENT_SCORES)
        with self.engine.begin() as conn:
            conn.execute(insert(event_scores).values(
                tenant=tenant or self.tenant, user_name=user, hour=hour, model=model, score=score,
                features=features or [], learning=learning, run_id=str(uuid.uuid4()),
            ))

    def events(self, user: str, times: list[datetime], tenant: str | None = None) -> None:
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as pg:
            ensure_partitions(pg, {t.date() for t in times})
        with self.engine.begin() as conn:
            conn.execute(insert(events), [
                {"tenant": tenant or self.tenant, "event_id": uuid.uuid4().hex, "time": t, "user_name": user, "event_type": "logon"}
                for t in times
            ])

    def event(self, user: str, time: datetime, tenant: str | None = None, **fields: Any) -> str:
        """One event (a logon unless `fields` say otherwise); returns its id."""
        event_id = uuid.uuid4().hex
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as pg:
            ensure_partitions(pg, {time.astimezone(timezone.utc).date()})
        with self.engine.begin() as conn:
            conn.execute(insert(events).values(tenant=tenant or self.tenant, event_id=event_id, time=time, user_name=user,
                                               **{"event_type": "logon", **fields}))
        return event_id

    def rows(self, query) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def statuses(self) -> dict[str, str]:
        return dict(self.rows(select(anomalies.c.id, anomalies.c.status).where(anomalies.c.tenant == self.tenant)))


@dataclass
class Service:
    stub: query_pb2_grpc.QueryServiceStub
    address: str
    tenant: str
    store: Store
    cases: cases_pb2_grpc.CaseServiceStub
    channel: grpc.Channel


def start_query_server(engine: Engine, tenant: str, **overrides):
    settings = QuerySettings.from_env({}, tenant=tenant, listen="127.0.0.1:0", metrics_port=-1, **overrides)
    server, port = create_server(settings, engine, maintenance=False)
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(engine, database_url, tenant) -> Store:
    return Store(engine, database_url, tenant)


@pytest.fixture
def query_settings() -> dict:
    """Overrides of the server's settings; a test may change them before using `svc`."""
    return {}


@pytest.fixture
def svc(engine, tenant, store, query_settings):
    server, address = start_query_server(engine, tenant, **query_settings)
    channel = grpc.insecure_channel(address)
    try:
        yield Service(query_pb2_grpc.QueryServiceStub(channel), address, tenant, store,
                      cases_pb2_grpc.CaseServiceStub(channel), channel)
    finally:
        channel.close()
        server.stop(0)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value
