"""`ueba simulate`: files, labels beside them, JSON lines that parse back into Event, and ingest."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import psycopg
import pytest
from google.protobuf import json_format

from ueba.cli.main import main
from ueba.simulator import Label, SimulationConfig, read_labels, simulate, write_labels
from ueba.v1 import common_pb2 as pb

ARGS = ["simulate", "--users", "12", "--days", "9", "--seed", "4", "--start", "2026-10-01", "-o", "json"]


def test_writes_json_lines_that_round_trip_into_events(tmp_path, capsys):
    out = tmp_path / "run" / "events.jsonl"
    assert main(ARGS + ["--events", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = out.read_text().splitlines()
    assert summary["events"] == len(lines) > 0
    parsed = [json_format.ParseDict(json.loads(line), pb.Event()) for line in lines]
    expected = list(simulate(SimulationConfig(users=12, days=9, seed=4,
                                              start=datetime(2026, 10, 1, tzinfo=timezone.utc))).events())
    assert parsed == expected
    first = json.loads(lines[0])
    assert "event_id" in first and "country_code" in first["geo"]  # proto field names, not camelCase


def test_labels_are_written_beside_the_events(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    assert main(ARGS + ["--events", str(out)]) == 0
    labels = read_labels(tmp_path / "events.jsonl.labels.json")
    assert labels and json.loads(capsys.readouterr().out)["labels"] == len(labels)
    assert {label.kind for label in labels} >= {"brute_force", "mass_deletion"}


def test_no_scenarios_and_an_explicit_labels_path(tmp_path, capsys):
    out, labels = tmp_path / "clean.jsonl", tmp_path / "truth.json"
    assert main(ARGS + ["--no-scenarios", "--events", str(out), "--labels", str(labels)]) == 0
    assert json.loads(labels.read_text()) == []
    assert json.loads(capsys.readouterr().out)["labels"] == 0


def test_needs_somewhere_to_put_the_events(capsys):
    assert main(ARGS) == 2
    assert "--events" in capsys.readouterr().err


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--users", "0", "--events", "x"])
    with pytest.raises(SystemExit):
        main(["simulate", "--start", "yesterday", "--events", "x"])


def test_labels_round_trip_through_json(tmp_path):
    label = Label("password_spray", "ada.kim", datetime(2026, 10, 9, 3, 4, 5, 6, tzinfo=timezone.utc),
                  datetime(2026, 10, 9, 3, 34, tzinfo=timezone.utc), "spray", "41.16.0.9", {"accounts": 20})
    write_labels(tmp_path / "l.json", [label])
    assert read_labels(tmp_path / "l.json") == [label]
    assert label.to_dict()["start"] == "2026-10-09T03:04:05.000006+00:00"


@pytest.mark.e2e
def test_streams_into_a_running_ingest_service(fresh_database_url, tmp_path, capsys):
    from ueba.launcher import start_service

    service = start_service("ingest", {
        "DATABASE_URL": fresh_database_url, "UEBA_LISTEN": "127.0.0.1:0", "UEBA_METRICS_PORT": "-1",
        "UEBA_MAX_PAST_DAYS": "0", "UEBA_RETENTION_DAYS": "0",
    }, log_path=tmp_path / "ingest.log")
    try:
        args = ["simulate", "--users", "6", "--days", "2", "--seed", "9", "--ingest", service.address,
                "--batch-size", "250", "--events", str(tmp_path / "e.jsonl"), "-o", "json"]
        assert main(args) == 0
        first = json.loads(capsys.readouterr().out)["ingest"]
        lines = (tmp_path / "e.jsonl").read_text().splitlines()
        assert first == {"sent": len(lines), "accepted": len(lines), "duplicates": 0, "rejected": 0}
        # the same seed again: stable event ids make every event a duplicate
        assert main(args) == 0
        again = json.loads(capsys.readouterr().out)["ingest"]
        assert again == {"sent": len(lines), "accepted": 0, "duplicates": len(lines), "rejected": 0}
    finally:
        service.stop()
    from ueba.db import libpq_url

    with psycopg.connect(libpq_url(fresh_database_url)) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    assert stored == (len(lines), len(lines))
