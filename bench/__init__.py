"""Benchmarks (`make bench`) and the detection evaluation (`make eval`)."""

from pathlib import Path

# Where benchmarks keep their embedded Postgres and outputs.
DATA = Path(__file__).resolve().parent.parent / ".data"
