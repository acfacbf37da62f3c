"""All of the scorer's SQL but the feature aggregation and baseline loads (features.py, baseline.py,
baseline_share.py): one module per table or concern."""

from services.scorer.store.reads import PeerGroupRow, RunRow, ScorerStore

__all__ = ["PeerGroupRow", "RunRow", "ScorerStore"]
