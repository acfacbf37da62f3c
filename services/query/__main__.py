"""`python -m services.query`: the query service; with UEBA_QUERY_WORKERS above 1 a supervisor of
that many server processes sharing the port (services/query/workers.py)."""

import sys

from services.query.server import create_server
from services.query.settings import QuerySettings
from services.query.workers import supervise
from ueba.entry import run_service

if __name__ == "__main__":
    sys.exit(run_service("query", QuerySettings, create_server, lambda s: supervise(s) if s.workers > 1 else None))
