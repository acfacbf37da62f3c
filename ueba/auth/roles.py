"""Which roles may call which method: one table for every RPC of every service.

A method missing from the table is refused to every role (fail closed), a
server started with UEBA_AUTH=tokens refuses to start while one of its methods
is missing, and tests/security checks the table against the protos.

- agent: sends events (IngestService, OTLP Export) and nothing else.
- analyst: reads everything, reviews anomalies and works cases; may also preview a profile
  (a dry run that writes nothing) and read profiles, runs, peer groups and
  models. Changes to what the system detects (profiles, the ignore list,
  suppression rules, scoring runs) are the admin's.
- admin: everything, including ingest (so that one token can load a backfill).
"""

from __future__ import annotations

AGENT = "agent"
ANALYST = "analyst"
ADMIN = "admin"
ROLES = (AGENT, ANALYST, ADMIN)

_SENDERS = frozenset({AGENT, ADMIN})
_READERS = frozenset({ANALYST, ADMIN})
_ADMINS = frozenset({ADMIN})

METHOD_ROLES: dict[str, frozenset[str]] = {
    # --- ingest ---
    "/ueba.v1.IngestService/IngestEvents": _SENDERS,
    "/ueba.v1.IngestService/StreamEvents": _SENDERS,
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": _SENDERS,
    # --- profiles ---
    "/ueba.v1.ProfileService/ListProfiles": _READERS,
    "/ueba.v1.ProfileService/GetProfile": _READERS,
    "/ueba.v1.ProfileService/CreateProfile": _ADMINS,
    "/ueba.v1.ProfileService/UpdateProfile": _ADMINS,
    "/ueba.v1.ProfileService/SetProfileEnabled": _ADMINS,
    "/ueba.v1.ProfileService/DeleteProfile": _ADMINS,
    "/ueba.v1.ProfileService/PreviewProfile": _READERS,
    "/ueba.v1.ProfileService/GetUserRisk": _READERS,
    # --- scorer ---
    "/ueba.v1.ScorerService/RunScoring": _ADMINS,
    "/ueba.v1.ScorerService/GetScoringRun": _READERS,
    "/ueba.v1.ScorerService/ListScoringRuns": _READERS,
    "/ueba.v1.ScorerService/ListPeerGroups": _READERS,
    "/ueba.v1.ScorerService/ListModels": _READERS,
    # --- query ---
    "/ueba.v1.QueryService/GetSummary": _READERS,
    "/ueba.v1.QueryService/ListAnomalies": _READERS,
    "/ueba.v1.QueryService/GetAnomaly": _READERS,
    "/ueba.v1.QueryService/ListAnomalyEvents": _READERS,
    "/ueba.v1.QueryService/ReviewAnomalies": _READERS,
    "/ueba.v1.QueryService/ListUsers": _READERS,
    "/ueba.v1.QueryService/GetUser": _READERS,
    "/ueba.v1.QueryService/ListUserScores": _READERS,
    "/ueba.v1.QueryService/GetUserTimeline": _READERS,
    "/ueba.v1.QueryService/GetRiskTimeline": _READERS,
    "/ueba.v1.QueryService/ExportAnomalies": _READERS,
    "/ueba.v1.QueryService/AddIgnoredUser": _ADMINS,
    "/ueba.v1.QueryService/RemoveIgnoredUser": _ADMINS,
    "/ueba.v1.QueryService/ListIgnoredUsers": _READERS,
    "/ueba.v1.QueryService/ListEntities": _READERS,
    "/ueba.v1.QueryService/GetEntity": _READERS,
    "/ueba.v1.QueryService/GetEntityTimeline": _READERS,
    "/ueba.v1.QueryService/ListIncidents": _READERS,
    "/ueba.v1.QueryService/GetIncident": _READERS,
    "/ueba.v1.QueryService/ReviewIncidents": _READERS,
    "/ueba.v1.QueryService/CreateSuppressionRule": _ADMINS,
    "/ueba.v1.QueryService/ListSuppressionRules": _READERS,
    "/ueba.v1.QueryService/DeleteSuppressionRule": _ADMINS,
    # --- cases (served by query) ---
    "/ueba.v1.CaseService/OpenCase": _READERS,
    "/ueba.v1.CaseService/ListCases": _READERS,
    "/ueba.v1.CaseService/GetCase": _READERS,
    "/ueba.v1.CaseService/CommentCase": _READERS,
    "/ueba.v1.CaseService/UpdateCase": _READERS,
    "/ueba.v1.CaseService/CloseCase": _READERS,
    # --- delivery ---
    "/ueba.v1.DeliveryService/ListDeliveries": _READERS,
    "/ueba.v1.DeliveryService/RetryDeliveries": _ADMINS,
}

# Open to everyone, with or without a token: probes and tooling need them.
OPEN_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def allowed_roles(method: str) -> frozenset[str]:
    return METHOD_ROLES.get(method, frozenset())


def service_methods(service_name: str) -> list[str]:
    """Full method names ('/pkg.Service/Method') of a service in the default descriptor pool."""
    from google.protobuf import descriptor_pool

    service = descriptor_pool.Default().FindServiceByName(service_name)
    return [f"/{service.full_name}/{m.name}" for m in service.methods]


def missing_methods(service_names: list[str]) -> list[str]:
    return [m for name in service_names for m in service_methods(name) if m not in METHOD_ROLES]
