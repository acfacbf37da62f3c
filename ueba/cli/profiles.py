"""`ueba profiles ...`: rule profiles from the command line (list, get, create, update,
enable, disable, delete, preview, risk), as tables or with --output json."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict

from ueba.client.channel import add_channel_options, channel_config, open_channel
from ueba.v1 import common_pb2, profiles_pb2, profiles_pb2_grpc

P = profiles_pb2
KINDS = [n.removeprefix("PROFILE_KIND_").lower() for n in P.ProfileKind.keys() if n != "PROFILE_KIND_UNSPECIFIED"]


def register(sub) -> None:
    p = sub.add_parser("profiles", help="rule profiles: list, show, create, change, enable, disable, delete, preview")
    p.add_argument("--address", default=os.environ.get("UEBA_PROFILES_ADDRESS", "127.0.0.1:50052"), help="profiles host:port")
    p.add_argument("--token", default=os.environ.get("UEBA_TOKEN"), help="bearer token (admin role)")
    p.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or json")
    add_channel_options(p, token=False)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = actions.add_parser("list", help="every profile")
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--enabled-only", action="store_true")
    ls.set_defaults(func=_list)

    get = actions.add_parser("get", help="one profile with its parameters")
    get.add_argument("id")
    get.set_defaults(func=_get)

    create = actions.add_parser("create", help="a new profile")
    create.add_argument("--name", required=True)
    create.add_argument("--kind", required=True, choices=KINDS)
    create.add_argument("--risk-score", type=int, required=True, help="1-100")
    _definition_options(create)
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    create.set_defaults(func=_create)

    update = actions.add_parser("update", help="change the given fields of a profile")
    update.add_argument("id")
    update.add_argument("--name")
    update.add_argument("--risk-score", type=int)
    _definition_options(update)
    update.set_defaults(func=_update)

    for name, enabled in (("enable", True), ("disable", False)):
        cmd = actions.add_parser(name, help=f"{name} a profile")
        cmd.add_argument("id")
        cmd.set_defaults(func=_set_enabled, enabled=enabled)

    delete = actions.add_parser("delete", help="delete a profile")
    delete.add_argument("id")
    delete.set_defaults(func=_delete)

    preview = actions.add_parser("preview", help="what a definition would have raised over a past range (writes nothing)")
    preview.add_argument("id", nargs="?", help="start from a stored profile (options override its fields)")
    preview.add_argument("--name", default="")
    preview.add_argument("--kind", choices=KINDS)
    preview.add_argument("--risk-score", type=int)
    _definition_options(preview)
    preview.add_argument("--start", help="ISO time (default: 7 days ago)")
    preview.add_argument("--end", help="ISO time, exclusive (default: now)")
    preview.add_argument("--max", type=int, default=50, help="most anomalies to show")
    preview.set_defaults(func=_preview)

    risk = actions.add_parser("risk", help="a user's open rule and model risk")
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
        print(f"profiles: {exc.code().name}: {exc.details()}", file=sys.stderr)
        raise SystemExit(1)


def _kind_name(value: int) -> str:
    return P.ProfileKind.Name(value).removeprefix("PROFILE_KIND_").lower()


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


def _time(value: str, option: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"{option}: not an ISO time: {value!r}")
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _json(message_or_list) -> None:
    if isinstance(message_or_list, list):
        print(json.dumps([MessageToDict(m) for m in message_or_list], indent=2))
    else:
        print(json.dumps(MessageToDict(message_or_list), indent=2))


def _table(profiles) -> None:
    print(f"{'id':36}  {'name':28}  {'kind':18}  {'on':3}  {'risk':4}  {'dimension':14}  parameters")
    for p in profiles:
        params = json.dumps(MessageToDict(p.parameters), separators=(",", ":"))
        if len(params) > 70:
            params = params[:67] + "..."
        print(f"{p.id:36}  {p.name[:28]:28}  {_kind_name(p.kind):18}  {'yes' if p.enabled else 'no':3}  "
              f"{p.risk_score:4}  {p.dimension:14}  {params}")


def _detail(p) -> None:
    print(f"id:           {p.id}")
    print(f"name:         {p.name}")
    print(f"kind:         {_kind_name(p.kind)}")
    print(f"enabled:      {'yes' if p.enabled else 'no'}")
    print(f"risk score:   {p.risk_score}")
    print(f"dimension:    {p.dimension}")
    print(f"applications: {', '.join(p.applications) or 'all'}")
    print(f"description:  {p.description}")
    print(f"updated:      {p.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S} UTC")
    print("parameters:")
    for name, value in sorted(MessageToDict(p.parameters).items()):
        print(f"  {name}: {json.dumps(value)}")


def _show(args, profile) -> int:
    if args.output == "json":
        _json(profile)
    else:
        _detail(profile)
    return 0


# --- commands ----------------------------------------------------------------------------

def _list(args) -> int:
    profiles, token = [], ""
    kind = P.ProfileKind.Value("PROFILE_KIND_" + args.kind.upper()) if args.kind else 0
    while True:
        page = _call(args, "ListProfiles", P.ListProfilesRequest(page_size=500, page_token=token, kind=kind,
                                                                 enabled_only=args.enabled_only))
        profiles += list(page.profiles)
        token = page.next_page_token
        if not token:
            break
    if args.output == "json":
        _json(profiles)
    else:
        _table(profiles)
    return 0


def _get(args) -> int:
    return _show(args, _call(args, "GetProfile", P.GetProfileRequest(id=args.id)))


def _create(args) -> int:
    profile = P.Profile(
        name=args.name, kind=P.ProfileKind.Value("PROFILE_KIND_" + args.kind.upper()), enabled=not args.disabled,
        risk_score=args.risk_score, description=args.description or "", dimension=args.dimension or "",
        applications=args.app or [], parameters=_struct(_parameters(args) or {}),
    )
    return _show(args, _call(args, "CreateProfile", P.CreateProfileRequest(profile=profile)))


def _update(args) -> int:
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
    return _show(args, _call(args, "SetProfileEnabled", P.SetProfileEnabledRequest(id=args.id, enabled=args.enabled)))


def _delete(args) -> int:
    _call(args, "DeleteProfile", P.DeleteProfileRequest(id=args.id))
    if args.output == "json":
        print(json.dumps({"deleted": args.id}))
    else:
        print(f"deleted {args.id}")
    return 0


def _preview(args) -> int:
    if args.id:
        profile = _call(args, "GetProfile", P.GetProfileRequest(id=args.id))
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
    end = _time(args.end, "--end") if args.end else datetime.now(timezone.utc)
    start = _time(args.start, "--start") if args.start else end - timedelta(days=7)
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(start)
    rng.end.FromDatetime(end)
    result = _call(args, "PreviewProfile", P.PreviewProfileRequest(profile=profile, range=rng, max_anomalies=args.max))
    if args.output == "json":
        _json(result)
        return 0
    print(f"{result.events_examined} events examined, {result.total_anomalies} anomalies "
          f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)")
    for a in result.anomalies:
        print(f"{a.time.ToDatetime():%Y-%m-%d %H:%M:%S}  {a.user:20}  {a.risk_score:3}  {a.description}")
    return 0


def _risk(args) -> int:
    risk = _call(args, "GetUserRisk", P.GetUserRiskRequest(user=args.user))
    if args.output == "json":
        _json(risk)
    else:
        level = common_pb2.RiskLevel.Name(risk.risk_level).removeprefix("RISK_LEVEL_").lower()
        print(f"{risk.user}: risk {risk.risk} ({level}), {risk.total_points} points from {risk.open_anomalies} open anomalies")
    return 0
