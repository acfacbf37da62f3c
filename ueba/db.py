"""Engines and connections for the shared Postgres store."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL as SQLAlchemy's psycopg 3 dialect URL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def libpq_url(url: str) -> str:
    """Any postgres URL as the plain form psycopg.connect() takes."""
    return make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def create_db_engine(url: str, pool_size: int = 8, application_name: str = "ueba") -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"application_name": application_name},
    )


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    return make_url(sqlalchemy_url(url)).set(database=database).render_as_string(hide_password=False)
