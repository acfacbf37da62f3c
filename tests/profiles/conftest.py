from __future__ import annotations

import pytest

from ueba.db import create_db_engine


@pytest.fixture(scope="module")
def own_database_url(server_url):
    """A migrated database for one test module: these tests create event partitions, which the
    session database's schema check would otherwise meet."""
    from tests.conftest import create_database, drop_database
    from ueba.db import with_database
    from ueba.store.migrate import upgrade

    name = create_database(server_url, "ueba_tp")
    url = with_database(server_url, name)
    upgrade(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def own_engine(own_database_url):
    eng = create_db_engine(own_database_url, pool_size=4)
    yield eng
    eng.dispose()
