"""Python clients of the UEBA services."""
