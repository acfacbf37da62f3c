"""The CaseService API, served by the query process beside QueryService: each method checks its
request, calls services/query/cases.py in one transaction, and builds the answer."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Engine

from services.query import cases
from services.query.convert import case, case_entry, incident, risk_change
from services.query.settings import QuerySettings
from services.query.store.replica import ReadRouting
from ueba.callctx import Caller, current_caller
from ueba.paging import page_size
from ueba.v1 import cases_pb2, cases_pb2_grpc


def _message(view: cases.CaseView) -> cases_pb2.Case:
    return case(view.row, view.incident_ids, view.comments)


class CaseServicer(cases_pb2_grpc.CaseServiceServicer):
    def __init__(self, settings: QuerySettings, engine: Engine, routing: ReadRouting):
        self.settings = settings
        self.engine = engine  # the primary: every change
        self.routing = routing

    def _caller(self) -> Caller:
        return current_caller(self.settings.tenant)

    def _write(self, change, *args):
        caller = self._caller()
        with self.engine.begin() as conn:
            result = change(conn, caller.tenant, *args, caller.actor, datetime.now(timezone.utc))
        self.routing.wrote(caller.tenant)
        return result

    def OpenCase(self, request, context):
        return _message(self._write(cases.open_case, request))

    def ListCases(self, request, context):
        tenant = self._caller().tenant
        size = page_size(request.page_size, self.settings.max_page_size)
        with self.routing.engine(tenant).connect() as conn:
            found, token = cases.list_cases(conn, tenant, request, size)
        return cases_pb2.ListCasesResponse(cases=[_message(v) for v in found], next_page_token=token)

    def GetCase(self, request, context):
        tenant = self._caller().tenant
        with self.routing.engine(tenant).connect() as conn:
            view, incidents, entries = cases.get_case(conn, tenant, request.id)
        return cases_pb2.CaseDetail(case=_message(view), incidents=[incident(r) for r in incidents],
                                    timeline=[case_entry(e) for e in entries])

    def CommentCase(self, request, context):
        return _message(self._write(cases.comment, request))

    def UpdateCase(self, request, context):
        return _message(self._write(cases.update, request))

    def CloseCase(self, request, context):
        caller = self._caller()
        with self.engine.begin() as conn:
            view, reviewed, changes = cases.close(conn, caller.tenant, request, caller.actor, datetime.now(timezone.utc),
                                                  self.settings.risk_window_days)
        self.routing.wrote(caller.tenant)
        return cases_pb2.CloseCaseResponse(case=_message(view), anomalies_updated=reviewed,
                                           risk_changes=[risk_change(c) for c in changes])
