"""Profiles service: rule profiles with risk scores, evaluated as events commit."""
