"""Authentication and authorisation: bearer tokens bound to a tenant and a role,
the per-method role table, per-token rate limits, and TLS credentials.

docs/security.md describes the model; ueba/server.py applies it to every call.
"""

from ueba.auth.roles import ADMIN, AGENT, ANALYST, METHOD_ROLES, ROLES, allowed_roles

__all__ = ["ADMIN", "AGENT", "ANALYST", "METHOD_ROLES", "ROLES", "allowed_roles"]
