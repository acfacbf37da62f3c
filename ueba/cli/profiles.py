"""`ueba profiles ...`: rule profiles from the command line (list, get, create, update,
enable, disable, delete, preview, risk), printed through ueba.cli.output. A profile is named
by its id or by its name (`ueba profiles get "Failed logins"`)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict

from ueba.cli import output
from ueba.cli.common import UsageError, add_range_options, explain, range_of, service_options
from ueba.cli.exits import EXIT_USAGE
from ueba.cli.output import emit, enum_word, fields, say, when
from ueba.client.channel import add_channel_options, channel_config, open_channel
from ueba.v1 import common_pb2, profiles_pb2, profiles_pb2_grpc

P = profiles_pb2
KINDS = [n.removeprefix("PROFILE_KIND_").lower() for n in P.ProfileKind.keys() if n != "PROFILE_KIND_UNSPECIFIED"]


def register(sub) -> None:
    p = sub.add_parser("profiles", help="rule profiles: list, get, create, update, enable, disable, delete, preview, risk")
    service_options(p, "profiles", "UEBA_PROFILES_ADDRESS", "127.0.0.1:50052")
    add_channel_options(p, token=False)
    leaf = argparse.ArgumentParser(add_help=False)
    service_options(leaf, "profiles", "UEBA_PROFILES_ADDRESS", "127.0.0.1:50052", inherited=True)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    action = functools.partial(actions.add_parser, parents=[leaf])  # the common options after the action too

    ls = action("list", help="every profile")
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--enabled-only", action="store_true")
    ls.set_defaults(func=_list)

    get = action("get", help="one profile with its parameters")
    get.add_argument("id", help="profile id or name")
    get.set_defaults(func=_get)

    create = action("create", help="a new profile")
    create.add_argument("--name", required=True)
    create.add_argument("--kind", required=True, choices=KINDS)
    create.add_argument("--risk-score", type=int, required=True, help="1-100")
    _definition_options(create)
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    create.set_defaults(func=_create)

    update = action("update", help="change the given fields of a profile")
    update.add_argument("id")
    update.add_argument("--name")
    update.add_argument("--risk-score", type=int)
    _definition_options(update)
    update.set_defaults(func=_update)

    for name, enabled in (("enable", True), ("disable", False)):
        cmd = action(name, help=f"{name} a profile")
        cmd.add_argument("id")
        cmd.set_defaults(func=_set_enabled, enabled=enabled)

    delete = action("delete", help="delete a profile")
    delete.add_argument("id")
    delete.set_defaults(func=_delete)

    preview = action("preview", help="what a definition would have raised over a past range (writes nothing)")
    preview.add_argument("id", nargs="?", help="start from a stored profile (options override its fields)")
    preview.add_argument("--name", default="")
    preview.add_argument("--kind", choices=KINDS)
    preview.add_argument("--risk-score", type=int)
    _definition_options(preview)
    add_range_options(preview)  # default: the last 7 days
    preview.add_argument("--max", type=int, default=50, help="most anomalies to show")
    preview.set_defaults(func=_preview)

    risk = action("risk", help="a user's open rule and model risk")
    risk.add_argument("user")
    risk.set_defaults(func=_risk)


def _definition_options(p) -> None:
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter; VALUE is JSON when it parses (5, true, [\"KP\"]), else text (repeatable)")
    p.add_argument("--parameters", help="all parameters as one JSON object")
    p.add_argument("--app", action="append", default=None, help="only these applications (repeatable)")
    p.add_argument("--description")
    p.add_argument("--dimension")


# --- plumbing ----------------------------------------------------------------------------

def _stub(args):
    channel = open_channel(args.address, channel_config(args))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    return profiles_pb2_grpc.ProfileServiceStub(channel), metadata


def _call(args, method: str, request):
    stub, metadata = _stub(args)
    try:
        return getattr(stub, method)(request, metadata=metadata, timeout=300)
    except grpc.RpcError as exc:
        message, code = explain(exc, "profiles", args.address, "UEBA_PROFILES_ADDRESS")
        print(message, file=sys.stderr)
        raise SystemExit(code)


def _profile_id(args, named: str) -> str:
    """The id of the profile `named` (an id, or a name or kind when exactly one profile has it)."""
    try:
        return str(uuid.UUID(named))
    except ValueError:
        pass
    profiles = _all_profiles(args)
    matches = [p for p in profiles if p.name.casefold() == named.casefold()]
    matches = matches or [p for p in profiles if _kind_name(p.kind) == named.casefold()]
    if len(matches) == 1:
        return matches[0].id
    choices = ", ".join(sorted(repr(p.name) for p in (matches or profiles)))
    why = "several profiles match" if matches else "no profile has that id, name or kind"
    print(output.printable(f"ueba: profile {named!r}: {why} (profiles: {choices})"), file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _kind_name(value: int) -> str:
    return enum_word(P.ProfileKind.DESCRIPTOR, value)


def _parameters(args, base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The parameters the options give, merged over `base`; None when none are given."""
    if args.parameters is None and not args.param:
        return None
    params = dict(base or {})
    if args.parameters is not None:
        try:
            params = json.loads(args.parameters)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--parameters: not JSON: {exc}")
        if not isinstance(params, dict):
            raise SystemExit("--parameters: expected a JSON object")
    for item in args.param:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param {item!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


PROFILE_HEADERS = ["id", "name", "kind", "enabled", "risk_score", "dimension", "parameters"]


def _row(p) -> list[Any]:
    return [p.id, p.name, _kind_name(p.kind), "yes" if p.enabled else "no", p.risk_score, p.dimension,
            json.dumps(output.to_data(p.parameters), separators=(",", ":"))]


def _detail(p) -> None:
    fields([("id", p.id), ("name", p.name), ("kind", _kind_name(p.kind)), ("enabled", "yes" if p.enabled else "no"),
            ("risk score", p.risk_score), ("dimension", p.dimension), ("applications", ", ".join(p.applications) or "all"),
            ("description", p.description), ("updated", when(p.updated_at))])
    print("parameters:")
    fields([(f"  {name}", json.dumps(value)) for name, value in sorted(output.to_data(p.parameters).items())])


def _show(args, profile) -> int:
    if args.output == "table":
        _detail(profile)
    else:
        emit(args.output, profile, [_row(profile)], PROFILE_HEADERS)
    return 0


# --- commands ----------------------------------------------------------------------------

def _all_profiles(args, kind: int = 0, enabled_only: bool = False) -> list:
    profiles, token = [], ""
    while True:
        page = _call(args, "ListProfiles", P.ListProfilesRequest(page_size=500, page_token=token, kind=kind,
                                                                 enabled_only=enabled_only))
        profiles += list(page.profiles)
        token = page.next_page_token
        if not token:
            return profiles


def _list(args) -> int:
    kind = P.ProfileKind.Value("PROFILE_KIND_" + args.kind.upper()) if args.kind else 0
    profiles = _all_profiles(args, kind, args.enabled_only)
    if args.output == "table":  # the id last: a profile is named by its name as well
        output.table([_row(p)[1:] + [p.id] for p in profiles], PROFILE_HEADERS[1:] + ["id"],
                     optional=("id", "parameters", "dimension"))
    else:
        emit(args.output, output.page("profiles", profiles), [_row(p) for p in profiles], PROFILE_HEADERS, items=profiles)
    return 0


def _get(args) -> int:
    return _show(args, _call(args, "GetProfile", P.GetProfileRequest(id=_profile_id(args, args.id))))


def _create(args) -> int:
    profile = P.Profile(
        name=args.name, kind=P.ProfileKind.Value("PROFILE_KIND_" + args.kind.upper()), enabled=not args.disabled,
        risk_score=args.risk_score, description=args.description or "", dimension=args.dimension or "",
        applications=args.app or [], parameters=_struct(_parameters(args) or {}),
    )
    return _show(args, _call(args, "CreateProfile", P.CreateProfileRequest(profile=profile)))


def _update(args) -> int:
    args.id = _profile_id(args, args.id)
    current = _call(args, "GetProfile", P.GetProfileRequest(id=args.id))
    profile, mask = P.Profile(id=args.id), []
    for option, field in (("name", "name"), ("risk_score", "risk_score"), ("description", "description"),
                          ("dimension", "dimension")):
        value = getattr(args, option)
        if value is not None:
            setattr(profile, field, value)
            mask.append(field)
    if args.app is not None:
        profile.applications.extend(a for a in args.app if a)
        mask.append("applications")
    params = _parameters(args, MessageToDict(current.parameters))
    if params is not None:
        profile.parameters.update(params)
        mask.append("parameters")
    if not mask:
        raise SystemExit("update: nothing to change; give --name, --risk-score, --param, ...")
    return _show(args, _call(args, "UpdateProfile", P.UpdateProfileRequest(profile=profile, update_mask=mask)))


def _set_enabled(args) -> int:
    request = P.SetProfileEnabledRequest(id=_profile_id(args, args.id), enabled=args.enabled)
    return _show(args, _call(args, "SetProfileEnabled", request))


def _delete(args) -> int:
    args.id = _profile_id(args, args.id)
    _call(args, "DeleteProfile", P.DeleteProfileRequest(id=args.id))
    if args.output == "table":
        say(f"deleted {args.id}")
    else:
        emit(args.output, {"deleted": args.id}, [[args.id]], ["deleted"])
    return 0


def _preview(args) -> int:
    if args.id:
        profile = _call(args, "GetProfile", P.GetProfileRequest(id=_profile_id(args, args.id)))
    elif args.kind is None or args.risk_score is None:
        raise SystemExit("preview: give a profile id, or --kind and --risk-score")
    else:
        profile = P.Profile(name=args.name, risk_score=args.risk_score)
    if args.kind:
        profile.kind = P.ProfileKind.Value("PROFILE_KIND_" + args.kind.upper())
    if args.risk_score is not None:
        profile.risk_score = args.risk_score
    if args.description is not None:
        profile.description = args.description
    if args.dimension is not None:
        profile.dimension = args.dimension
    if args.app is not None:
        del profile.applications[:]
        profile.applications.extend(args.app)
    params = _parameters(args, MessageToDict(profile.parameters))
    if params is not None:
        profile.parameters.Clear()
        profile.parameters.update(params)
    try:
        start, end = range_of(args)
    except UsageError as exc:
        raise SystemExit(f"preview: {exc}")
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(days=7)
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(start)
    rng.end.FromDatetime(end)
    result = _call(args, "PreviewProfile", P.PreviewProfileRequest(profile=profile, range=rng, max_anomalies=args.max))
    rows = [[when(a.time), a.user, a.risk_score, a.description] for a in result.anomalies]
    if args.output != "table":
        emit(args.output, result, rows, ["time", "user", "risk_score", "description"], items=list(result.anomalies))
        return 0
    say(f"{result.events_examined} events examined, {result.total_anomalies} anomalies "
        f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)")
    output.table(rows, ["time", "user", "risk", "description"])
    return 0


def _risk(args) -> int:
    risk = _call(args, "GetUserRisk", P.GetUserRiskRequest(user=args.user))
    level = enum_word(common_pb2.RiskLevel.DESCRIPTOR, risk.risk_level)
    if args.output == "table":
        say(f"{risk.user}: risk {risk.risk} ({level}), {risk.total_points} points from {risk.open_anomalies} open anomalies")
    else:
        emit(args.output, risk, [[risk.user, risk.risk, level, risk.total_points, risk.open_anomalies]],
             ["user", "risk", "risk_level", "total_points", "open_anomalies"])
    return 0
