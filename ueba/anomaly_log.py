"""The anomaly.log sink: JSON lines for the SIEM, to stdout, a file or syslog.

stdout by default; a file when the target is a path; RFC 5424 syslog over UDP
(ueba/syslog.py) when it is syslog://host:port; nothing when it is `off`. The
scorer writes its score lines here after its run committed; the delivery service
writes every finding (docs/integrations.md).
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Iterable

from ueba.settings import SettingsError
from ueba.syslog import FACILITIES, SyslogTransport, message

_INFO = 6


def check_target(target: str) -> None:
    """UEBA_ANOMALY_LOG: a syslog target must name host and port."""
    if target.startswith("syslog://"):
        host, sep, port = target[len("syslog://"):].rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingsError(f"UEBA_ANOMALY_LOG={target!r}: expected syslog://host:port")


class AnomalySink:
    def __init__(self, target: str = "", app_name: str = "ueba"):
        self.target = target
        self.app_name = app_name
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._syslog: SyslogTransport | None = None
        self._off = target.strip().lower() == "off"
        if target.startswith("syslog://"):
            self._syslog = SyslogTransport("udp://" + target[len("syslog://"):])
        elif target and not self._off:
            self._file = open(target, "a", encoding="utf-8")

    def write(self, lines: Iterable[str]) -> int:
        if self._off:
            return 0
        n = 0
        with self._lock:
            if self._syslog is not None:
                for line in lines:
                    self._syslog.send(message(line, severity=_INFO, facility=FACILITIES["user"], app_name=self.app_name,
                                              msg_id="anomaly"))
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
