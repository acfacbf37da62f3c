"""Shared code of the UEBA services: settings, database, server bootstrap, generated API stubs."""
