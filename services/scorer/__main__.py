"""`python -m services.scorer`: the scorer service as a container runs it."""

import sys

from services.scorer.server import create_server
from services.scorer.settings import ScorerSettings
from ueba.entry import run_service

if __name__ == "__main__":
    sys.exit(run_service("scorer", ScorerSettings, create_server))
