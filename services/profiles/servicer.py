"""ProfileService: profile CRUD with audit, dry runs and user risk."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.profiles.convert import from_struct, kind_name, profile_message
from ueba.messages import LEVEL_ENUM, record_message
from services.profiles.kinds import KINDS, ParameterError, ProfileSpec, build_detector, check_definition
from services.profiles.settings import ProfilesSettings
from services.profiles.store import definitions, history
from services.profiles.warmup import warm_detector
from ueba import paging
from ueba.callctx import Caller, current_caller
from ueba.errors import AlreadyExists, InvalidArgument, NotFound, check_text
from ueba.names import canonical_user
from ueba.risk import open_scores, user_risk
from ueba.store.anomalies import AnomalyRecord
from ueba.timestamps import time_range
from ueba.v1 import common_pb2, profiles_pb2, profiles_pb2_grpc

DEFAULT_PAGE = 50
MAX_PAGE = 500
DEFAULT_PREVIEW_ANOMALIES = 100
MAX_PREVIEW_ANOMALIES = 1000
MUTABLE = ("name", "description", "enabled", "risk_score", "applications", "parameters", "dimension")
# How often a preview looks whether its caller is still there.
CANCEL_CHECK_EVENTS = 10_000


class ProfileServicer(profiles_pb2_grpc.ProfileServiceServicer):
    def __init__(self, settings: ProfilesSettings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self._seeded: set[str] = set()
        self._seed_lock = threading.Lock()

    # --- CRUD --------------------------------------------------------------------------
    def ListProfiles(self, request, context):
        caller = self._caller()
        size = paging.page_size(request.page_size, MAX_PAGE, DEFAULT_PAGE)
        kind = kind_name(request.kind) or None
        fp = paging.fingerprint(caller.tenant, "profiles by name", kind, request.enabled_only)
        after = paging.decode(fp, request.page_token, (str,)).key[0] if request.page_token else None
        with self.engine.connect() as conn:
            rows = definitions.list_profiles(conn, caller.tenant, kind=kind, enabled_only=request.enabled_only,
                                             after_name=after, limit=size + 1)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = paging.encode(fp, paging.PageToken([rows[-1].name], datetime.now(timezone.utc)))
        return profiles_pb2.ListProfilesResponse(profiles=[profile_message(r) for r in rows], next_page_token=token)

    def GetProfile(self, request, context):
        caller = self._caller()
        pid = _profile_id(request.id, "id")
        with self.engine.connect() as conn:
            return profile_message(_existing(conn, caller.tenant, pid))

    def CreateProfile(self, request, context):
        caller = self._caller()
        values = _definition(request.profile)
        with _unique_name(values["name"]), self.engine.begin() as conn:
            _check_name_free(conn, caller.tenant, values["name"])
            row = definitions.insert_profile(conn, caller.tenant, values)
            definitions.audit(conn, caller.tenant, caller.actor, "profile.create", str(row.id), _jsonable(values))
        return profile_message(row)

    def UpdateProfile(self, request, context):
        caller = self._caller()
        mask = _update_mask(request.update_mask)
        incoming = request.profile
        pid = _profile_id(incoming.id, "profile.id")
        with _unique_name(incoming.name), self.engine.begin() as conn:
            row = _existing(conn, caller.tenant, pid, for_update=True)
            if not mask and incoming.kind and kind_name(incoming.kind) != row.kind:
                raise InvalidArgument("kind: cannot change; create a new profile")
            values = _definition(_merged(row, incoming, mask or MUTABLE))
            values.pop("kind")
            _check_name_free(conn, caller.tenant, values["name"], except_id=pid)
            before = {k: _jsonable(getattr(row, k)) for k in values}
            changes = {k: {"from": before[k], "to": _jsonable(v)} for k, v in values.items() if before[k] != _jsonable(v)}
            updated = definitions.update_profile(conn, caller.tenant, pid, values)
            definitions.audit(conn, caller.tenant, caller.actor, "profile.update", pid,
                              {"name": updated.name, "changes": changes})
        return profile_message(updated)

    def SetProfileEnabled(self, request, context):
        caller = self._caller()
        pid = _profile_id(request.id, "id")
        with self.engine.begin() as conn:
            row = _existing(conn, caller.tenant, pid, for_update=True)
            updated = definitions.update_profile(conn, caller.tenant, pid, {"enabled": request.enabled})
            action = "profile.enable" if request.enabled else "profile.disable"
            definitions.audit(conn, caller.tenant, caller.actor, action, pid, {"name": row.name, "was_enabled": row.enabled})
        return profile_message(updated)

    def DeleteProfile(self, request, context):
        caller = self._caller()
        pid = _profile_id(request.id, "id")
        with self.engine.begin() as conn:
            row = _existing(conn, caller.tenant, pid, for_update=True)
            definitions.delete_profile(conn, caller.tenant, pid)
            definitions.audit(conn, caller.tenant, caller.actor, "profile.delete", pid,
                              {"name": row.name, "kind": row.kind, "parameters": row.parameters})
        return profiles_pb2.DeleteProfileResponse()

    # --- dry run -------------------------------------------------------------------------
    def PreviewProfile(self, request, context):
        caller = self._caller()
        values = _definition(request.profile, require_name=False)
        start, end = self._preview_range(request)
        if request.max_anomalies < 0:
            raise InvalidArgument("max_anomalies: must not be negative")
        limit = min(request.max_anomalies or DEFAULT_PREVIEW_ANOMALIES, MAX_PREVIEW_ANOMALIES)
        detector = build_detector(ProfileSpec(
            id=request.profile.id or "preview", name=values["name"] or values["kind"], kind=values["kind"],
            risk_score=values["risk_score"], parameters=values["parameters"], applications=tuple(values["applications"]),
            dimension=values["dimension"], tenant=caller.tenant,
        ))
        # A finding raised again while its activity goes on (refresh) replaces its earlier self, as in the store.
        kept: dict[str, AnomalyRecord] = {}
        keys: set[str] = set()
        examined = 0
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                warm_detector(conn, detector, start, until_inclusive=False)
                for event in history.replay_events(conn, caller.tenant, start, end, event_types=detector.event_types,
                                                   until_inclusive=False):
                    examined += 1
                    if examined % CANCEL_CHECK_EVENTS == 0 and not context.is_active():
                        break  # the caller is gone: nobody reads the answer
                    if not detector.accepts(event):
                        continue
                    for firing in detector.observe(event):
                        keys.add(firing.dedup_key)
                        if firing.dedup_key in kept or len(kept) < limit:
                            kept[firing.dedup_key] = firing
        return profiles_pb2.PreviewProfileResponse(
            anomalies=[record_message(f) for f in kept.values()], events_examined=examined, total_anomalies=len(keys)
        )

    def _preview_range(self, request) -> tuple[datetime, datetime]:
        start, end = time_range(request, "range")
        if start is None:
            raise InvalidArgument("range.start: required")
        if end is None:
            end = datetime.now(timezone.utc)
            if end <= start:
                raise InvalidArgument("range.start: must be in the past when range.end is not set")
        if end - start > timedelta(days=self.settings.preview_max_days):
            raise InvalidArgument(f"range: at most {self.settings.preview_max_days} days")
        return start, end

    # --- risk -------------------------------------------------------------------------------
    def GetUserRisk(self, request, context):
        caller = self._caller()
        user = canonical_user(check_text("user", request.user), self.settings.user_name_mode)
        if not user:
            raise InvalidArgument("user: required")
        now = datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            scores = open_scores(conn, caller.tenant, now, self.settings.risk_window_days, users=[user]).get(user, [])
        points, risk, level = user_risk(scores)
        return common_pb2.UserRisk(user=user, total_points=points, risk=risk, risk_level=LEVEL_ENUM[level],
                                   open_anomalies=len(scores))

    def _caller(self) -> Caller:
        """The calling tenant, whose built-in profiles exist from its first call on."""
        caller = current_caller(self.settings.tenant)
        if self.settings.seed_defaults and caller.tenant not in self._seeded:
            with self._seed_lock, self.engine.begin() as conn:
                definitions.seed_defaults(conn, caller.tenant)
                self._seeded.add(caller.tenant)
        return caller


def _definition(p: profiles_pb2.Profile, require_name: bool = True) -> dict[str, Any]:
    """Checked column values of a profile message; ParameterError (INVALID_ARGUMENT) names the field."""
    kind = kind_name(p.kind)
    if not kind:
        raise ParameterError("kind", "required: one of " + ", ".join(KINDS))
    check_text("name", p.name, max_length=1000)
    check_text("description", p.description, max_length=10_000)
    for i, app in enumerate(p.applications):
        check_text(f"applications[{i}]", app)
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


def _update_mask(paths) -> list[str]:
    mask = list(paths)
    for i, name in enumerate(mask):
        if name == "kind":
            raise InvalidArgument(f"update_mask[{i}]: kind cannot change; create a new profile")
        if name not in MUTABLE:
            raise InvalidArgument(f"update_mask[{i}]: unknown field {name!r}; expected one of {', '.join(MUTABLE)}")
    return mask


def _merged(row: Any, incoming: profiles_pb2.Profile, fields) -> profiles_pb2.Profile:
    """The stored profile with `fields` taken from `incoming`."""
    merged = profiles_pb2.Profile()
    merged.CopyFrom(profile_message(row))
    merged.dimension = row.dimension
    for name in fields:
        if name == "applications":
            del merged.applications[:]
            merged.applications.extend(incoming.applications)
        elif name == "parameters":
            merged.parameters.Clear()
            merged.parameters.update(from_struct(incoming.parameters))
        else:
            setattr(merged, name, getattr(incoming, name))
    return merged


def _profile_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field}: required")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"profile {value} not found") from None


def _existing(conn: Connection, tenant: str, pid: str, for_update: bool = False) -> Any:
    row = definitions.get_profile(conn, tenant, pid, for_update=for_update)
    if row is None:
        raise NotFound(f"profile {pid} not found")
    return row


def _check_name_free(conn: Connection, tenant: str, name: str, except_id: str | None = None) -> None:
    if definitions.name_taken(conn, tenant, name, except_id=except_id):
        raise AlreadyExists(f"name: a profile named {name!r} exists")


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    """Two callers taking one name at once: the loser's unique violation is ALREADY_EXISTS."""
    try:
        yield
    except IntegrityError:
        raise AlreadyExists(f"name: a profile named {name.strip()!r} exists") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
