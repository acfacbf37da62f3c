"""The four UEBA services; each runs as `python -m services.NAME`."""
