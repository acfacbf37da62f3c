"""Bulk download, upload and delete: many files or many bytes within an interval."""

from __future__ import annotations

from typing import Sequence

from services.profiles.kinds.base import ProfileDetector, human_bytes, human_duration
from services.profiles.kinds.params import Param, ParameterError, non_negative_int, positive_int
from services.profiles.records import EventRecord
from services.profiles.windows import BurstWindows, Entry
from ueba.store.anomalies import AnomalyRecord

MAX_EVIDENCE_EVENTS = 50


class BulkActivityProfile(ProfileDetector):
    default_dimension = "data"
    verb = ""
    parameters = (
        Param("file_count", non_negative_int, 200, "files within the interval that raise an anomaly; 0: ignore file counts"),
        Param("bytes", non_negative_int, 0, "bytes within the interval that raise an anomaly; 0: ignore volume"),
        Param("interval_seconds", positive_int, 3600, "length of the sliding window"),
    )

    @classmethod
    def check_combination(cls, params) -> None:
        if not params["file_count"] and not params["bytes"]:
            raise ParameterError("parameters.file_count", "file_count or bytes must be positive")

    def __init__(self, spec):
        super().__init__(spec)
        self.files = self.params["file_count"]
        self.volume = self.params["bytes"]
        self.interval = float(self.params["interval_seconds"])
        self._windows = BurstWindows(self.interval)

    def fired_windows(self, group: str) -> BurstWindows:
        return self._windows

    def _reached(self, window: Sequence[Entry]) -> bool:
        if self.files and sum(x.weight for x in window) >= self.files:
            return True
        return bool(self.volume) and sum(x.key for x in window) >= self.volume

    def observe(self, e: EventRecord) -> list[AnomalyRecord]:
        # An event without a file count is one file. Kept: files (weight), bytes (key), id and application.
        entry = Entry(e.ts, (e.event_id, e.application), weight=max(1, e.file_count), key=e.bytes)
        burst = self._windows.add(f"user:{e.user}", entry, self._reached)
        if not burst:
            return []
        entries = burst.entries
        files = int(sum(x.weight for x in entries))
        volume = sum(x.key for x in entries)
        apps = sorted({x.item[1] for x in entries if x.item[1]})
        return [self.fire(
            user=e.user, group=burst.group, at=entries[-1].ts, start=burst.start, end=burst.end,
            description=f"{e.user} {self.verb} {files} files ({human_bytes(volume)}) within "
            f"{human_duration(self.interval)}" + (f" in {', '.join(apps[:3])}" if apps else ""),
            evidence={
                "event_ids": [x.item[0] for x in entries[:MAX_EVIDENCE_EVENTS]],
                "events": len(entries),
                "files": files,
                "bytes": volume,
                "file_threshold": self.files,
                "bytes_threshold": self.volume,
                "interval_seconds": int(self.interval),
                "applications": apps,
            },
        )]


class BulkDownloadProfile(BulkActivityProfile):
    kind = "bulk_download"
    event_types = frozenset({"file_download"})
    verb = "downloaded"
    title = "Bulk download"


class BulkUploadProfile(BulkActivityProfile):
    kind = "bulk_upload"
    event_types = frozenset({"file_upload"})
    verb = "uploaded"
    title = "Bulk upload"


class BulkDeleteProfile(BulkActivityProfile):
    kind = "bulk_delete"
    event_types = frozenset({"file_delete"})
    verb = "deleted"
    title = "Bulk delete"
