"""Account names a caller types are canonicalised in the deployment's UEBA_USER_NAME_MODE, as ingest stores them."""

from datetime import timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ueba.v1 import query_pb2

from .conftest import NOW

DAY0 = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)

# (mode, the name ingest stores for alice@corp and CORP\alice, another account in the tenant)
MODES = [
    ({"user_name_mode": "strip_domain"}, "alice", "bob"),
    ({"user_name_mode": "qualified"}, "alice@corp", "alice@partner"),
]
TYPED = ["alice@corp", "Alice@Corp", r"CORP\alice"]  # spellings of one account that map to the stored name in both modes


@pytest.fixture
def accounts(request, store):
    _settings, stored, other = request.param
    store.user(stored, "Finance")
    store.user(other, "Finance")
    store.anomaly(stored, 80, NOW - timedelta(hours=2))
    store.anomaly(other, 60, NOW - timedelta(hours=2))
    store.user_score(stored, DAY0.date(), 40.0)
    store.user_score(other, DAY0.date(), 10.0)
    return stored, other


def modes():
    return pytest.mark.parametrize(
        "query_settings,accounts", [(m, (m, s, o)) for m, s, o in MODES], indirect=["accounts"], ids=[m["user_name_mode"] for m, _s, _o in MODES]
    )


def users_of(response) -> set[str]:
    return {a.user for a in response.anomalies}


@modes()
@pytest.mark.parametrize("typed", TYPED)
def test_the_query_string_and_the_filter_find_the_stored_account(svc, accounts, typed):
    """In qualified mode `user:alice@corp` used to look for `alice` and find nothing (issue 13)."""
    stored, _other = accounts
    by_query = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query=f'user:"{typed}"')))
    by_filter = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(users=[typed])))
    assert users_of(by_query) == users_of(by_filter) == {stored}
    excluded = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query=f'-user:"{typed}"')))
    assert stored not in users_of(excluded) and users_of(excluded)


@modes()
@pytest.mark.parametrize("typed", TYPED)
def test_user_calls_find_the_stored_account(svc, accounts, typed):
    stored, _other = accounts
    assert svc.stub.GetUser(query_pb2.GetUserRequest(user=typed)).risk.user == stored
    scores = svc.stub.ListUserScores(query_pb2.ListUserScoresRequest(users=[typed])).scores
    assert [(s.user, s.anomaly_score) for s in scores] == [(stored, 40.0)]
    day = Timestamp()
    day.FromDatetime(DAY0)
    assert svc.stub.GetUserTimeline(query_pb2.GetUserTimelineRequest(user=typed, day=day)).user == stored


@modes()
def test_user_prefix_and_the_ignore_list_use_the_stored_form(svc, accounts):
    stored, other = accounts
    listed = svc.stub.ListUsers(query_pb2.ListUsersRequest(user_prefix="Alice@c")).users
    assert [u.risk.user for u in listed] == [stored]
    assert svc.stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user=r"CORP\Alice", reason="test account")).user == stored
    assert [u.user for u in svc.stub.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest()).users] == [stored]
    assert stored not in users_of(svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest()))
    svc.stub.RemoveIgnoredUser(query_pb2.RemoveIgnoredUserRequest(user="alice@corp"))
    assert not svc.stub.ListIgnoredUsers(query_pb2.ListIgnoredUsersRequest()).users
