"""`ueba scoring ...` against a real scorer: every table fits the terminal, every format parses."""

from __future__ import annotations

import json

import pytest

from tests.scorer.test_server import served  # noqa: F401  (the module's scorer server)
from ueba.cli.main import main


@pytest.mark.parametrize("columns", [80, 120])
def test_scoring_tables_fit_the_terminal(served, capsys, monkeypatch, columns):  # noqa: F811
    _url, port, _stub = served
    monkeypatch.setenv("COLUMNS", str(columns))
    for argv in (["run"], ["runs"], ["peers"], ["models"]):
        assert main(["scoring", *argv, "--address", f"127.0.0.1:{port}"]) == 0
        out = capsys.readouterr().out
        assert out and all(len(line) <= columns for line in out.splitlines()), (argv, out)


def test_scoring_json_is_typed_and_paged(served, capsys):  # noqa: F811
    _url, port, _stub = served
    assert main(["scoring", "runs", "--address", f"127.0.0.1:{port}", "-o", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["runs"] and body["runs"][0]["status"] in ("succeeded", "failed", "running")
    assert isinstance(body["runs"][0]["event_scores"], int) and "next_page_token" in body
    assert main(["scoring", "--json", "models", "--address", f"127.0.0.1:{port}"]) == 0  # the old spelling
    assert json.loads(capsys.readouterr().out)["models"][0]["name"]
