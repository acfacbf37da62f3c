"""The simulator's internal event record and its conversion to ueba.v1.Event.

A record is a plain tuple, sorted by its time alone with a stable sort, so records with equal
times keep the order they were made in, which is deterministic:
(time_us, user_index, type, outcome, source_ip, source_host, destination_host,
 destination_ip, application, geo, bytes, file_count, object, user_agent, action, producer,
 logon_type, failure_reason)
"""

from __future__ import annotations

from typing import Any

from ueba.v1 import common_pb2 as pb

Record = tuple[Any, ...]

TIME, USER, TYPE, OUTCOME, SOURCE_IP, SOURCE_HOST, DEST_HOST, DEST_IP, APPLICATION, GEO, BYTES, FILES, \
    OBJECT, USER_AGENT, ACTION, PRODUCER, LOGON_TYPE, FAILURE_REASON = range(18)

LOGON = pb.EVENT_TYPE_LOGON
LOGOFF = pb.EVENT_TYPE_LOGOFF
FILE_DOWNLOAD = pb.EVENT_TYPE_FILE_DOWNLOAD
FILE_UPLOAD = pb.EVENT_TYPE_FILE_UPLOAD
FILE_DELETE = pb.EVENT_TYPE_FILE_DELETE
FILE_SHARE = pb.EVENT_TYPE_FILE_SHARE
HOST_ACCESS = pb.EVENT_TYPE_HOST_ACCESS
APP_ACCESS = pb.EVENT_TYPE_APP_ACCESS
PRIVILEGE_USE = pb.EVENT_TYPE_PRIVILEGE_USE
PASSWORD_CHANGE = pb.EVENT_TYPE_PASSWORD_CHANGE
ACCOUNT_CHANGE = pb.EVENT_TYPE_ACCOUNT_CHANGE
SUCCESS = pb.OUTCOME_SUCCESS
FAILURE = pb.OUTCOME_FAILURE


def to_event(r: Record, event_id: str, user: str, department: str) -> pb.Event:
    event = pb.Event(
        event_id=event_id, user=user, type=r[2], outcome=r[3], source_ip=r[4], source_host=r[5],
        destination_host=r[6], destination_ip=r[7], application=r[8], geo=r[9], bytes=r[10], file_count=r[11],
        object=r[12], department=department, user_agent=r[13], action=r[14], producer=r[15], logon_type=r[16],
        failure_reason=r[17],
    )
    t = r[0]
    stamp = event.time  # setting the fields in place is cheaper than building a Timestamp
    stamp.seconds = t // 1_000_000
    stamp.nanos = t % 1_000_000 * 1000
    return event
