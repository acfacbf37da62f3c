"""ProfileService: profile CRUD with audit, dry runs and user risk."""

from __future__ import annotations

import base64
import binascii
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from services.profiles import store
from services.profiles.convert import (
    LEVELS,
    anomaly_message,
    from_struct,
    kind_name,
    profile_message,
    to_datetime,
)
from services.profiles.kinds import KINDS, ParameterError, ProfileSpec, build_detector, check_definition
from services.profiles.settings import ProfilesSettings
from services.profiles.warmup import warm_detector
from ueba.callctx import current_caller
from ueba.names import canonical_user
from ueba.risk import open_scores, user_risk
from ueba.v1 import common_pb2, profiles_pb2, profiles_pb2_grpc

DEFAULT_PAGE = 50
MAX_PAGE = 500
DEFAULT_PREVIEW_ANOMALIES = 100
MAX_PREVIEW_ANOMALIES = 1000
MUTABLE = ("name", "description", "enabled", "risk_score", "applications", "parameters", "dimension")




def _token(name: str) -> str:
    return base64.urlsafe_b64encode(f"after:{name}".encode()).decode()


def _untoken(token: str) -> str:
    try:
        decoded = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.startswith("after:"):
        raise ValueError("page_token: not a token this service issued")
    return decoded[len("after:"):]


class ProfileServicer(profiles_pb2_grpc.ProfileServiceServicer):
    def __init__(self, settings: ProfilesSettings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self._seeded: set[str] = set()
        self._seed_lock = threading.Lock()

    # --- helpers ---------------------------------------------------------------------
    def _caller(self):
        caller = current_caller(self.settings.tenant)
        if self.settings.seed_defaults and caller.tenant not in self._seeded:
            with self._seed_lock, self.engine.begin() as conn:
                store.seed_defaults(conn, caller.tenant)
                self._seeded.add(caller.tenant)
        return caller

    @staticmethod
    def _invalid(context, exc: Exception):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def _definition(self, p: profiles_pb2.Profile, require_name: bool = True) -> dict[str, Any]:
        """Checked column values of a profile message; raises ParameterError."""
        kind = kind_name(p.kind)
        if not kind:
            raise ParameterError("kind", "required: one of " + ", ".join(KINDS))
        params = check_definition(
            name=p.name, kind=kind, risk_score=p.risk_score, parameters=from_struct(p.parameters),
            applications=list(p.applications), dimension=p.dimension, description=p.description,
            require_name=require_name,
        )
        return {
            "name": p.name.strip(), "kind": kind, "enabled": p.enabled, "risk_score": p.risk_score,
            "description": p.description, "applications": [a.strip() for a in p.applications],
            "parameters": params, "dimension": p.dimension,
        }

    # --- CRUD --------------------------------------------------------------------------
    def ListProfiles(self, request, context):
        caller = self._caller()
        if request.page_size < 0:
            self._invalid(context, ValueError("page_size: must not be negative"))
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        try:
            after = _untoken(request.page_token) if request.page_token else None
        except ValueError as exc:
            self._invalid(context, exc)
        kind = kind_name(request.kind) if request.kind else None
        with self.engine.connect() as conn:
            rows = store.list_profiles(conn, caller.tenant, kind=kind, enabled_only=request.enabled_only,
                                       after_name=after, limit=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return profiles_pb2.ListProfilesResponse(
            profiles=[profile_message(r) for r in rows], next_page_token=_token(rows[-1].name) if more else ""
        )

    def GetProfile(self, request, context):
        caller = self._caller()
        with self.engine.connect() as conn:
            row = store.get_profile(conn, caller.tenant, self._id(request.id, context))
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"profile {request.id} not found")
        return profile_message(row)

    def CreateProfile(self, request, context):
        caller = self._caller()
        try:
            values = self._definition(request.profile)
        except ParameterError as exc:
            self._invalid(context, exc)
        try:
            with self.engine.begin() as conn:
                if store.name_taken(conn, caller.tenant, values["name"]):
                    context.abort(grpc.StatusCode.ALREADY_EXISTS, f"name: a profile named {values['name']!r} exists")
                row = store.insert_profile(conn, caller.tenant, values)
                store.audit(conn, caller.tenant, caller.actor, "profile.create", str(row.id), _jsonable(values))
        except IntegrityError:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"name: a profile named {values['name']!r} exists")
        return profile_message(row)

    def UpdateProfile(self, request, context):
        caller = self._caller()
        pid = self._id(request.profile.id, context, field="profile.id")
        mask = list(request.update_mask)
        for i, name in enumerate(mask):
            if name == "kind":
                self._invalid(context, ValueError(f"update_mask[{i}]: kind cannot change; create a new profile"))
            if name not in MUTABLE:
                self._invalid(context, ValueError(f"update_mask[{i}]: unknown field {name!r}; expected one of {', '.join(MUTABLE)}"))
        try:
            with self.engine.begin() as conn:
                row = store.get_profile(conn, caller.tenant, pid, for_update=True)
                if row is None:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"profile {pid} not found")
                incoming = request.profile
                if not mask and incoming.kind and kind_name(incoming.kind) != row.kind:
                    self._invalid(context, ValueError("kind: cannot change; create a new profile"))
                merged = profiles_pb2.Profile()
                merged.CopyFrom(profile_message(row))
                merged.dimension = row.dimension
                for name in mask or MUTABLE:
                    if name in ("applications",):
                        del merged.applications[:]
                        merged.applications.extend(incoming.applications)
                    elif name == "parameters":
                        merged.parameters.Clear()
                        merged.parameters.update(from_struct(incoming.parameters))
                    else:
                        setattr(merged, name, getattr(incoming, name))
                try:
                    values = self._definition(merged)
                except ParameterError as exc:
                    self._invalid(context, exc)
                values.pop("kind")
                if store.name_taken(conn, caller.tenant, values["name"], except_id=pid):
                    context.abort(grpc.StatusCode.ALREADY_EXISTS, f"name: a profile named {values['name']!r} exists")
                before = {k: _jsonable(getattr(row, k)) for k in values}
                changes = {k: {"from": before[k], "to": _jsonable(v)} for k, v in values.items() if before[k] != _jsonable(v)}
                updated = store.update_profile(conn, caller.tenant, pid, values)
                store.audit(conn, caller.tenant, caller.actor, "profile.update", pid, {"name": updated.name, "changes": changes})
        except IntegrityError:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "name: a profile with that name exists")
        return profile_message(updated)

    def SetProfileEnabled(self, request, context):
        caller = self._caller()
        pid = self._id(request.id, context)
        with self.engine.begin() as conn:
            row = store.get_profile(conn, caller.tenant, pid, for_update=True)
            if row is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"profile {pid} not found")
            updated = store.update_profile(conn, caller.tenant, pid, {"enabled": request.enabled})
            action = "profile.enable" if request.enabled else "profile.disable"
            store.audit(conn, caller.tenant, caller.actor, action, pid, {"name": row.name, "was_enabled": row.enabled})
        return profile_message(updated)

    def DeleteProfile(self, request, context):
        caller = self._caller()
        pid = self._id(request.id, context)
        with self.engine.begin() as conn:
            row = store.get_profile(conn, caller.tenant, pid, for_update=True)
            if row is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"profile {pid} not found")
            store.delete_profile(conn, caller.tenant, pid)
            store.audit(conn, caller.tenant, caller.actor, "profile.delete", pid,
                        {"name": row.name, "kind": row.kind, "parameters": row.parameters})
        return profiles_pb2.DeleteProfileResponse()

    @staticmethod
    def _id(value: str, context, field: str = "id") -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT if not value else grpc.StatusCode.NOT_FOUND,
                          f"{field}: required" if not value else f"profile {value} not found")

    # --- dry run -------------------------------------------------------------------------
    def PreviewProfile(self, request, context):
        caller = self._caller()
        try:
            values = self._definition(request.profile, require_name=False)
        except ParameterError as exc:
            self._invalid(context, exc)
        if not request.range.HasField("start"):
            self._invalid(context, ValueError("range.start: required"))
        start = to_datetime(request.range.start)
        end = to_datetime(request.range.end) if request.range.HasField("end") else datetime.now(timezone.utc)
        if end <= start:
            self._invalid(context, ValueError("range.end: must be after range.start"))
        if end - start > timedelta(days=self.settings.preview_max_days):
            self._invalid(context, ValueError(f"range: at most {self.settings.preview_max_days} days"))
        if request.max_anomalies < 0:
            self._invalid(context, ValueError("max_anomalies: must not be negative"))
        limit = min(request.max_anomalies or DEFAULT_PREVIEW_ANOMALIES, MAX_PREVIEW_ANOMALIES)
        spec = ProfileSpec(
            id=request.profile.id or "preview", name=values["name"] or values["kind"], kind=values["kind"],
            risk_score=values["risk_score"], parameters=values["parameters"], applications=tuple(values["applications"]),
            dimension=values["dimension"], tenant=caller.tenant,
        )
        detector = build_detector(spec)
        kept, total, examined = [], 0, 0
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                warm_detector(conn, detector, start, until_inclusive=False)
                for event in store.replay_events(conn, caller.tenant, start, end, event_types=detector.event_types,
                                                 until_inclusive=False):
                    examined += 1
                    if not detector.accepts(event):
                        continue
                    for firing in detector.observe(event):
                        total += 1
                        if len(kept) < limit:
                            kept.append(firing)
                    if examined % 10_000 == 0 and not context.is_active():
                        context.abort(grpc.StatusCode.CANCELLED, "preview cancelled")
        return profiles_pb2.PreviewProfileResponse(
            anomalies=[anomaly_message(f) for f in kept], events_examined=examined, total_anomalies=total
        )

    # --- risk -------------------------------------------------------------------------------
    def GetUserRisk(self, request, context):
        caller = self._caller()
        user = canonical_user(request.user)
        if not user:
            self._invalid(context, ValueError("user: required"))
        now = datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            scores = open_scores(conn, caller.tenant, now, self.settings.risk_window_days, users=[user]).get(user, [])
        points, risk, level = user_risk(scores)
        return common_pb2.UserRisk(user=user, total_points=points, risk=risk, risk_level=LEVELS[level],
                                   open_anomalies=len(scores))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
