"""Drivers for exercising a running system from outside, shared by tests/ and bench/.

Neither of those may import the other for this (bench is installed, tests are not; tests import
bench only to test bench itself), and no service imports this package (tests/test_layering.py).
"""
