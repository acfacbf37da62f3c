"""The query-string parser: what it accepts, and clear errors for everything else."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from ueba.errors import InvalidArgument
from services.query.store.conditions import like_pattern
from services.query.querystring import MAX_QUERY_LENGTH, Clause, Text, parse

NOW = datetime(2026, 10, 20, 12, 0, tzinfo=timezone.utc)


def error(query: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse(query, NOW)
    return info.value.message


def test_the_documented_example():
    q = parse('user:alice profile:failed_logins risk>=high "new country"', NOW)
    assert q.texts == (Text("new country"),)
    assert [(c.field, c.value, c.negated) for c in q.clauses] == [
        ("user", "alice", False),
        ("profile", "failed_logins", False),
        ("risk", (70, 100), False),
    ]


@pytest.mark.parametrize(
    "term,bounds",
    [
        ("risk>=high", (70, 100)),
        ("risk>high", (90, 100)),
        ("risk:high", (70, 89)),
        ("risk=critical", (90, 100)),
        ("risk<medium", (0, 39)),
        ("risk<=medium", (0, 69)),
        ("score>70", (71, 100)),
        ("risk:75", (75, 75)),
        ("RISK>=LOW", (0, 100)),
    ],
)
def test_risk_comparisons(term, bounds):
    (clause,) = parse(term, NOW).clauses
    assert clause.field == "risk" and clause.value == bounds


def test_values_are_normalised():
    q = parse(r'user:CORP\Alice status:fp model:Origin_Location dimension:DATA -user:bob@corp.com status:reviewed', NOW)
    assert [(c.field, c.value, c.negated) for c in q.clauses] == [
        ("user", "alice", False),
        ("status", ("false_positive",), False),
        ("model", "origin_location", False),
        ("dimension", "data", False),
        ("user", "bob", True),
        ("status", ("acknowledged", "resolved", "false_positive"), False),
    ]
    assert parse("status:all", NOW).clauses[0].value is None


def test_quoted_values_and_escapes():
    q = parse(r'profile:"Failed logins" "say \"hi\"" plain', NOW)
    assert q.clauses == (Clause("profile", "Failed logins", False, 'profile:"Failed logins"'),)
    assert q.texts == (Text('say "hi"'), Text("plain"))


def test_times_absolute_and_relative():
    q = parse("after:24h before:2026-10-20T06:00Z", NOW)
    assert q.clauses[0].value == NOW - timedelta(hours=24)
    assert q.clauses[1].value == datetime(2026, 10, 20, 6, 0, tzinfo=timezone.utc)
    assert parse("after:2026-10-01", NOW).clauses[0].value == datetime(2026, 10, 1, tzinfo=timezone.utc)


def test_sql_fragments_are_only_text():
    q = parse("'; DROP TABLE anomalies; --", NOW)
    assert q.clauses == ()
    assert q.texts == (Text("';"), Text("DROP"), Text("TABLE"), Text("anomalies;"), Text("--"))
    q = parse("\"x' OR '1'='1\"", NOW)
    assert q.texts == (Text("x' OR '1'='1"),)


@pytest.mark.parametrize(
    "query,fragment",
    [
        ("colour:red", "unknown field 'colour' in 'colour:red'"),
        ("user:alice foo=bar", "unknown field 'foo' in 'foo=bar'"),
        ('user:alice "new country', "unbalanced quote: the quote at position 11"),
        ('profile:"x', "unbalanced quote"),
        ('ab"cd', "unexpected quote"),
        ("risk>=extreme", "invalid risk 'extreme' in 'risk>=extreme'"),
        ("risk>=101", "invalid risk '101'"),
        ("status:pending", "invalid status 'pending' in 'status:pending'"),
        ("source:human", "invalid source 'human'"),
        ("dimension:weather", "unknown dimension 'weather'"),
        ("model:crystal_ball", "unknown model 'crystal_ball'"),
        ("user>alice", "user cannot be compared with '>'"),
        ("-risk>=high", "risk cannot be negated"),
        ("after:yesterday", "invalid time 'yesterday' in 'after:yesterday'"),
        ("id:123", "invalid anomaly id '123'"),
        ("user:", "missing value in 'user:'"),
        ('user:"alice"bob', "expected a space after"),
        ("x\x00y", "NUL"),
    ],
)
def test_errors_name_the_bad_token(query, fragment):
    message = error(query)
    assert message.startswith("filter.query: ")
    assert fragment in message


def test_huge_input_is_refused():
    assert "longer than" in error("a" * (MAX_QUERY_LENGTH + 1))
    assert "more than 50 terms" in error(" ".join(["x"] * 51))


def test_like_pattern_escapes_wildcards():
    assert like_pattern("100%_sure\\") == "%100\\%\\_sure\\\\%"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_invalid_argument(text):
    try:
        q = parse(text, NOW)
    except InvalidArgument as exc:
        assert exc.message.startswith("filter.query: ")
    else:
        assert all(isinstance(t, Text) and t.text for t in q.texts)


@pytest.mark.parametrize("term", ["after:999999d", "before:999999w", "after:1969-12-31", "before:2200-01-01"])
def test_times_outside_the_store_range_name_the_term(term):
    message = error(term)
    assert message.startswith("filter.query:") and term in message and "1970-01-01 to 2200-01-01" in message


def test_user_terms_take_the_stored_form_of_the_mode():
    typed = r"user:CORP\Alice user:bob@corp.com"
    assert parse(typed, NOW).values("user") == ["alice", "bob"]
    assert parse(typed, NOW, "qualified").values("user") == ["alice@corp", "bob@corp.com"]
    assert parse(typed, NOW, "exact").values("user") == ["CORP\\Alice", "bob@corp.com"]


def test_operators_build_a_tree_with_or_loosest_and_not_tightest():
    from services.query.querystring import All, Any, Not

    q = parse("user:a OR NOT source:rule risk>=high", NOW)
    assert isinstance(q.expr, Any)
    left, right = q.expr.operands
    assert isinstance(left, Clause) and left.value == "a"
    assert isinstance(right, All) and isinstance(right.operands[0], Not)
    assert parse("user:a user:b", NOW).expr is None  # no operator: the old meaning stands
    assert parse('"AND" or_else', NOW).expr is None  # quoted or part of a word: text
    assert q.values("user") == ["a"] and parse("NOT user:a", NOW).values("user") == []
