"""`python -m services.delivery`: the delivery service as a container runs it."""

import sys

from services.delivery.server import create_server
from services.delivery.settings import DeliverySettings
from ueba.entry import run_service

if __name__ == "__main__":
    sys.exit(run_service("delivery", DeliverySettings, create_server))
