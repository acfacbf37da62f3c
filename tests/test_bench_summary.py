"""The bench summary reads each figure beside its target, and says which were not run."""

import json

from bench.summary import summarise, table


def test_the_summary_judges_each_figure_and_names_what_was_not_run(tmp_path):
    (tmp_path / "ingest.json").write_text(json.dumps(
        {"ratio_to_raw_copy": 0.83, "end_to_end": {"events_per_second": 50_000}, "load_average_1m": 0.7}))
    (tmp_path / "ship.json").write_text(json.dumps(
        {"ratio_to_raw_copy": 0.31, "dry_run": {"all_workers_lines_per_second": 60_000}, "load_average_1m": 0.9}))
    (tmp_path / "scorer.json").write_text(json.dumps(
        {"runs": [{"users": 1000, "seconds": 3.9, "peak_rss_bytes": 2**28},
                  {"users": 10_000, "seconds": 38.0, "peak_rss_bytes": 2**29}]}))
    rows = {r["path"]: r for r in summarise(tmp_path)["rows"]}
    assert rows["ingest: protobuf batches through the ingest process, / raw COPY"]["met"] is True
    assert rows["ueba ship of ECS JSON lines into ingest, / raw COPY"]["met"] is False
    assert rows["ueba ship --dry-run, every worker"]["met"] is True  # 60,000 lines/s against ingest's 50,000
    assert rows["scorer: 10,000 users x 24 h, one run"]["figure"] == 38.0  # the largest run, not the first
    assert rows["scorer: 10,000 users x 24 h, one run"]["met"] is False
    assert rows["scorer: peak memory of that run"]["met"] is True
    assert rows["rules: commit -> anomaly p95 while ingest streams"]["note"] == "not run"
    text = table(summarise(tmp_path))
    assert "NO" in text and "not run" in text and "load average now" in text
