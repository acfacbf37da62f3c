"""The query service's composition root: engines, read routing, servicer, background work, server."""

from __future__ import annotations

from sqlalchemy import Engine

from services.query import risk_state
from services.query.case_servicer import CaseServicer
from services.query.servicer import QueryServicer
from services.query.settings import QuerySettings
from services.query.store.replica import ReadRouting
from ueba.db import create_db_engine
from ueba.server import Registration, ServiceServer, build_server
from ueba.v1 import cases_pb2_grpc, query_pb2_grpc

SERVICE_NAME = "ueba.v1.QueryService"
CASE_SERVICE_NAME = "ueba.v1.CaseService"


def create_server(settings: QuerySettings, engine: Engine, maintenance: bool = True) -> tuple[ServiceServer, int]:
    """The query server bound to settings.listen (not started) and its port.

    `engine` is the primary's; with UEBA_QUERY_READ_DATABASE_URL the reads
    get an engine of their own on the replica (services/query/store/replica.py).
    """
    replica = None
    if settings.read_database_url:
        replica = create_db_engine(settings.read_database_url, settings.db_pool_size, application_name="ueba-query")
    routing = ReadRouting(engine, settings.db_pool_size, replica, settings.replica_max_lag_seconds,
                          settings.replica_sample_seconds)
    servicer = QueryServicer(settings, engine, routing)
    background: list = [routing]
    if maintenance and settings.maintenance:
        background.append(risk_state.Maintainer(engine, settings.risk_window_days, settings.maintenance_seconds,
                                                settings.user_name_mode))
    return build_server(
        settings,
        [Registration(query_pb2_grpc.add_QueryServiceServicer_to_server, servicer, SERVICE_NAME),
         Registration(cases_pb2_grpc.add_CaseServiceServicer_to_server, CaseServicer(settings, engine, routing),
                      CASE_SERVICE_NAME)],
        max_workers=settings.threads,
        background=background,
    )
