"""The scorer service: hourly features, baselines, behaviour models, event and user anomaly scores."""
