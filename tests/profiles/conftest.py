from __future__ import annotations

import pytest

from ueba.db import create_db_engine


@pytest.fixture(scope="module")
def own_database_url(server_url):
    """A migrated database for one test module: these tests create event partitions, which the
    session database's schema check would otherwise meet."""
    from ueba.store.databases import drop_database, new_database
    from ueba.store.migrate import upgrade

    name, url = new_database(server_url, "ueba_tp")
    upgrade(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def own_engine(own_database_url):
    eng = create_db_engine(own_database_url, pool_size=4)
    yield eng
    eng.dispose()
