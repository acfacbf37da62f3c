"""The `ueba` command line: a gRPC client for people, plus local run commands."""
