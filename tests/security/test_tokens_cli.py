"""`ueba tokens create|list|revoke` against the database, and what the stored row holds."""

from __future__ import annotations

import json

import grpc
import pytest
from sqlalchemy import select

from ueba.auth.tokens import token_hash
from ueba.cli.main import main
from ueba.store.schema import api_tokens, audit_log

from .rpcs import RPCS_BY_NAME, code_of


def test_create_list_revoke(monkeypatch, capsys, security_url, security_engine, stack):
    monkeypatch.setenv("DATABASE_URL", security_url)
    assert main(["tokens", "create", "--tenant", "cli-t", "--role", "analyst", "--name", "soc-dashboard", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["token"].startswith("ueba_") and len(made["token"]) == 48
    with security_engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == made["id"])).one()
        audit = conn.execute(select(audit_log.c.action).where(audit_log.c.target == made["id"])).scalars().all()
    assert row.token_hash == token_hash(made["token"]) and made["token"] not in row.token_hash  # only the hash is kept
    assert (row.tenant, row.role, row.name) == ("cli-t", "analyst", "soc-dashboard") and audit == ["token.create"]

    assert code_of(stack.channel("query"), RPCS_BY_NAME["GetSummary"], token=made["token"]) == grpc.StatusCode.OK

    assert main(["tokens", "list", "--tenant", "cli-t", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["tokens"]
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    assert listed[0]["last_used_at"]  # the call above was recorded

    assert main(["tokens", "revoke", made["id"]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["tokens", "revoke", made["id"]]) == 1  # already revoked
    assert main(["tokens", "revoke", "not-an-id"]) == 2
    assert main(["tokens", "list", "--tenant", "cli-t", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == []
    assert main(["tokens", "list", "--tenant", "cli-t", "--all"]) == 0
    assert "soc-dashboard" in capsys.readouterr().out
    import time

    time.sleep(0.3)  # the servers' token cache (0.2 s in these tests)
    assert code_of(stack.channel("query"), RPCS_BY_NAME["GetSummary"], token=made["token"]) == grpc.StatusCode.UNAUTHENTICATED


def test_bad_arguments_are_refused(monkeypatch, capsys, security_url):
    monkeypatch.setenv("DATABASE_URL", security_url)
    assert main(["tokens", "create", "--tenant", "x" * 65, "--role", "admin", "--name", "n"]) == 2
    assert "tenant" in capsys.readouterr().err


@pytest.mark.parametrize("columns", [80, 120])
def test_token_tables_fit_the_terminal(monkeypatch, capsys, security_url, columns):
    monkeypatch.setenv("DATABASE_URL", security_url)
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["tokens", "create", "--tenant", "wide-t", "--role", "analyst", "--name", "a rather long name " * 4,
                 "-o", "json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert main(["tokens", "list", "--tenant", "wide-t", "--all"]) == 0
    out = capsys.readouterr().out
    assert made["id"] in out and all(len(line) <= columns for line in out.splitlines()), out  # the id is never cut
