"""`ueba scoring run|runs|peers|models`: the scorer service from the command line."""

from __future__ import annotations

import argparse
import functools
import sys

import grpc

from ueba.cli import output
from ueba.cli.common import UsageError, add_range_options, explain, range_of, service_options
from ueba.cli.exits import EXIT_FAILED, EXIT_USAGE
from ueba.cli.output import emit, enum_word, say, when
from ueba.client.channel import add_channel_options, channel_config, open_channel
from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

ADDRESS = ("scorer", "UEBA_SCORER_ADDRESS", "127.0.0.1:50053")
RUN_HEADERS = ["id", "status", "trigger", "start", "end", "users_scored", "hours_scored", "event_scores", "anomalies",
               "learning_users", "error"]


def register(sub) -> None:
    p = sub.add_parser("scoring", help="behaviour-model scoring: run on demand, run history, peer groups, models")
    service_options(p, *ADDRESS)
    add_channel_options(p, token=False)
    leaf = argparse.ArgumentParser(add_help=False)
    service_options(leaf, *ADDRESS, inherited=True)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    action = functools.partial(actions.add_parser, parents=[leaf])  # the common options after the action too
    run = action("run", help="score a window now (default: the last 24 complete hours)")
    add_range_options(run, since=False)
    run.add_argument("--user", action="append", default=[], help="score only this user (repeatable)")
    run.set_defaults(func=_run)
    runs = action("runs", help="run history, newest first; with an id, that run")
    runs.add_argument("id", nargs="?")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=_runs)
    peers = action("peers", help="peer groups and their members")
    peers.add_argument("--limit", type=int, default=100)
    peers.set_defaults(func=_peers)
    models = action("models", help="the behaviour models, their features and weights")
    models.set_defaults(func=_models)


def _stub(args) -> tuple[scorer_pb2_grpc.ScorerServiceStub, list]:
    channel = open_channel(args.address, channel_config(args))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    return scorer_pb2_grpc.ScorerServiceStub(channel), metadata


def _call(args, fn, request, metadata):
    try:
        return fn(request, metadata=metadata)
    except grpc.RpcError as exc:
        message, code = explain(exc, *ADDRESS[:1], args.address, ADDRESS[1])
        print(message, file=sys.stderr)
        raise SystemExit(code)


def _run_row(r) -> list:
    return [r.id, enum_word(scorer_pb2.RunStatus.DESCRIPTOR, r.status), enum_word(scorer_pb2.RunTrigger.DESCRIPTOR, r.trigger),
            when(r.range.start)[:16], when(r.range.end)[:16], r.users_scored, r.hours_scored, r.event_scores, r.anomalies,
            r.learning_users, r.error]


def _print_runs(args, runs) -> None:
    if args.output != "table":
        emit(args.output, output.page("runs", runs), [_run_row(r) for r in runs], RUN_HEADERS, items=runs)
        return
    output.table([_run_row(r)[1:10] + [r.id] for r in runs],
                 ["status", "trigger", "start", "end", "users", "hours", "scores", "anomalies", "learning", "id"],
                 fixed=("id",), optional=("trigger", "hours", "learning", "scores"))
    for r in runs:
        if r.error:
            say(f"run {r.id} error: {r.error}")


def _run(args) -> int:
    stub, md = _stub(args)
    rng = common_pb2.TimeRange()
    try:
        start, end = range_of(args)
    except UsageError as exc:
        print(f"ueba: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if start:
        rng.start.FromDatetime(start)
    if end:
        rng.end.FromDatetime(end)
    run = _call(args, stub.RunScoring, scorer_pb2.RunScoringRequest(range=rng, users=args.user), md)
    _print_runs(args, [run])
    return 0 if run.status == scorer_pb2.RUN_STATUS_SUCCEEDED else EXIT_FAILED


def _runs(args) -> int:
    stub, md = _stub(args)
    if args.id:
        _print_runs(args, [_call(args, stub.GetScoringRun, scorer_pb2.GetScoringRunRequest(id=args.id), md)])
        return 0
    runs, token = [], ""
    while len(runs) < args.limit:
        page = _call(args, stub.ListScoringRuns,
                     scorer_pb2.ListScoringRunsRequest(page_size=min(100, args.limit), page_token=token), md)
        runs.extend(page.runs)
        token = page.next_page_token
        if not token:
            break
    _print_runs(args, runs[: args.limit])
    return 0


def _peers(args) -> int:
    stub, md = _stub(args)
    groups, token = [], ""
    while len(groups) < args.limit:
        page = _call(args, stub.ListPeerGroups, scorer_pb2.ListPeerGroupsRequest(page_size=100, page_token=token), md)
        groups.extend(page.groups)
        token = page.next_page_token
        if not token:
            break
    groups = groups[: args.limit]
    rows = [[g.id, g.method, g.member_count, ", ".join(g.members[:8]) + (" ..." if g.member_count > 8 else "")]
            for g in groups]
    emit(args.output, output.page("groups", groups), rows, ["id", "method", "member_count", "members"], items=groups)
    return 0


def _models(args) -> int:
    stub, md = _stub(args)
    models = list(_call(args, stub.ListModels, scorer_pb2.ListModelsRequest(), md).models)
    if args.output != "table":
        rows = [[m.name, m.weight, f.name, f.description] for m in models for f in m.features]
        emit(args.output, output.page("models", models), rows, ["model", "weight", "feature", "description"], items=models)
        return 0
    for m in models:
        say(f"{m.name} (weight {m.weight:g}): {m.description}")
        output.fields([(f"    {f.name}", f.description) for f in m.features])
    return 0
