"""Benchmarks (`make bench`) and the detection evaluation (`make eval`)."""
