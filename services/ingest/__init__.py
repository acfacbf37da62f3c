"""The ingest service: validates, normalises, deduplicates and stores events from agents."""
