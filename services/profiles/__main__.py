"""`python -m services.profiles`: the profiles service as a container runs it."""

import sys

from services.profiles.server import create_server
from services.profiles.settings import ProfilesSettings
from ueba.entry import run_service

if __name__ == "__main__":
    sys.exit(run_service("profiles", ProfilesSettings, create_server))
