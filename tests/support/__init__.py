"""Helpers every test folder shares: waiting for a condition, free ports, service processes."""
