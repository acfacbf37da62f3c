"""`python -m services.ingest`: the ingest service as a container runs it."""

import sys

from services.ingest.server import create_server
from services.ingest.settings import IngestSettings
from ueba.entry import run_service

if __name__ == "__main__":
    sys.exit(run_service("ingest", IngestSettings, create_server))
