"""The anomaly.log sink: one JSON line per score, for the SIEM.

stdout by default; a file when UEBA_ANOMALY_LOG is a path; syslog (RFC 3164
over UDP, through logging.handlers.SysLogHandler) when it is syslog://host:port;
nothing when it is `off`. Lines are written only after the run committed, so
the SIEM never sees scores that were rolled back.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from typing import IO, Iterable


class AnomalySink:
    def __init__(self, target: str = ""):
        self.target = target
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._syslog: logging.Handler | None = None
        self._off = target.strip().lower() == "off"
        if target.startswith("syslog://"):
            host, _, port = target[len("syslog://"):].rpartition(":")
            self._syslog = logging.handlers.SysLogHandler(address=(host, int(port)))
            self._syslog.setFormatter(logging.Formatter("ueba-scorer: %(message)s"))
        elif target and not self._off:
            self._file = open(target, "a", encoding="utf-8")

    def write(self, lines: Iterable[str]) -> int:
        if self._off:
            return 0
        n = 0
        with self._lock:
            if self._syslog is not None:
                for line in lines:
                    self._syslog.emit(logging.LogRecord("anomaly", logging.INFO, __file__, 0, line, None, None))
                    n += 1
                return n
            out = self._file if self._file is not None else sys.stdout
            chunk: list[str] = []
            for line in lines:
                chunk.append(line)
                n += 1
                if len(chunk) >= 5000:
                    out.write("\n".join(chunk) + "\n")
                    chunk.clear()
            if chunk:
                out.write("\n".join(chunk) + "\n")
            out.flush()
        return n

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._syslog is not None:
                self._syslog.close()
                self._syslog = None
