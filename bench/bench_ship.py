"""What a user runs: `ueba ship` of an ECS JSON-lines file into ingest, against raw COPY of the
same rows, and the shipper's parsing alone (`--dry-run`) on one process and on every CPU."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import DATA, backend_pids, cpu_seconds
from bench.bench_ingest import copy_batches, count_events, ingest_env, per_event, raw_copy, simulated_events
from bench.ecs_lines import write_ecs_lines
from ueba.store.databases import postgres_server, scratch_database

# 300 users over 10 days is about 160,000 lines (75 MB): enough for the parsing workers to pay.
USERS = int(os.environ.get("BENCH_SHIP_USERS", "300"))
DAYS = int(os.environ.get("BENCH_SHIP_DAYS", "10"))
BATCH_SIZE = 5000
TARGETS = {"ratio_to_raw_copy_min": 0.5}


def _children_cpu() -> float:
    # Children's times include the parse workers a `ueba ship` process reaped.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ship(args: list[str], env: dict[str, str] | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ueba.cli.main", "ship", "--no-progress", "-o", "json", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=3600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ueba ship {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def _otlp_mapping_us(path: Path, records: int = 20_000) -> dict:
    """CPU per record of the OTLP receiver's mapping, for the same documents sent as a JSON body
    and as attributes (what the Collector's filelog receiver and an SDK send)."""
    import orjson
    from opentelemetry.proto.common.v1 import common_pb2 as otel_common
    from opentelemetry.proto.logs.v1 import logs_pb2

    from services.ingest.otlp import RecordMapper
    from ueba.parsers.fields import flatten

    def value(v) -> otel_common.AnyValue:
        if isinstance(v, list):
            return otel_common.AnyValue(array_value=otel_common.ArrayValue(values=[value(x) for x in v]))
        kind = {str: "string_value", bool: "bool_value", int: "int_value", float: "double_value"}[type(v)]
        return otel_common.AnyValue(**{kind: v})

    with path.open() as f:
        lines = [line for _, line in zip(range(records), f)]
    shapes: dict[str, list] = {"json_body": [], "attributes": []}
    for i, line in enumerate(lines):
        when = 1_764_115_200_000_000_000 + i * 10**9
        shapes["json_body"].append(logs_pb2.LogRecord(time_unix_nano=when, body=otel_common.AnyValue(string_value=line)))
        flat = flatten(orjson.loads(line))
        flat.pop("@timestamp")
        shapes["attributes"].append(logs_pb2.LogRecord(
            time_unix_nano=when, attributes=[otel_common.KeyValue(key=k, value=value(v)) for k, v in flat.items()]))
    result = {}
    for name, shaped in shapes.items():
        mapper = RecordMapper()
        started = time.process_time()
        for record in shaped:
            mapper.map({"service.name": "bench"}, b"", record)
        result[name] = round((time.process_time() - started) / len(shaped) * 1e6, 2)
    return result


def run(out_dir: Path) -> dict:
    from ueba.launcher import start_service
    from ueba.parsers.files import read_file
    from ueba.parsers.parallel import default_workers
    from ueba.store.migrate import upgrade

    work = Path(tempfile.mkdtemp(prefix="bench-ship-"))
    path = work / "ecs.jsonl"
    lines = write_ecs_lines(simulated_events(USERS, DAYS), path)
    workers = default_workers()
    dry_one, _ = _ship(["--dry-run", "--workers", "1", str(path)])
    dry_all, _ = _ship(["--dry-run", "--workers", str(workers), str(path)])
    otlp_us = _otlp_mapping_us(path)

    with postgres_server(DATA / "bench") as server_url, scratch_database(server_url, "ueba_bench_ship") as url:
        upgrade(url)
        service = start_service("ingest", ingest_env(url), log_path=work / f"ingest-{uuid.uuid4().hex[:8]}.log")
        try:
            cpu_start = (_children_cpu(), cpu_seconds(service.process.pid))
            ship_seconds, summary = _ship(["--address", service.address, "--batch-size", "1000",
                                           "--state-dir", str(work / "state"), str(path)])
            # The service's connections were opened during the run: their whole CPU time counts.
            ship_cpu = {"shipper": _children_cpu() - cpu_start[0], "ingest": cpu_seconds(service.process.pid) - cpu_start[1],
                        "postgres": sum(cpu_seconds(pid) for pid in backend_pids(url))}
        finally:
            service.stop()
        shipped = count_events(url)
        # Raw COPY gets the very rows ingest wrote, parsed and converted ahead of the clock.
        batches, days = copy_batches(read_file(path, "ecs").events, BATCH_SIZE)
        copy_seconds, copy_cpu = raw_copy(url, batches, days, binary=True)
        copied = count_events(url)

    ship_rate, copy_rate = shipped / ship_seconds, copied / copy_seconds
    ship_us, copy_us = per_event(ship_cpu, shipped), per_event(copy_cpu, copied)
    # What the CPUs allow when nothing else runs: shipping needs the three processes' CPU per event
    # out of every core. Raw COPY is not CPU-bound (9 us a row, a commit per batch).
    ship_limit = (os.cpu_count() or 1) / (sum(ship_us.values()) / 1e6)
    result = {
        "lines": lines,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "dry_run": {
            "one_process_lines_per_second": round(lines / dry_one),
            "workers": workers,
            "all_workers_lines_per_second": round(lines / dry_all),
        },
        "ship": {"seconds": round(ship_seconds, 2), "rows": shipped, "events_per_second": round(ship_rate),
                 "accepted": summary["files"][0]["accepted"], "cpu_us_per_event": ship_us},
        "raw_copy": {"seconds": round(copy_seconds, 2), "rows": copied, "events_per_second": round(copy_rate),
                     "cpu_us_per_event": copy_us},
        "ratio_to_raw_copy": round(ship_rate / copy_rate, 3),
        "otlp_mapping_cpu_us_per_record": otlp_us,
        # Set beside raw COPY on a quiet machine: under load raw COPY's own rate falls too.
        "cpu_bound_ship_events_per_second": round(ship_limit),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "targets": TARGETS,
    }
    result["targets_met"] = bool(shipped == lines and result["ratio_to_raw_copy"] >= TARGETS["ratio_to_raw_copy_min"])
    path.unlink()
    return result
