"""The detection evaluation behind `make eval`."""
