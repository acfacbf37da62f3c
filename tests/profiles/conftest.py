from __future__ import annotations

import pytest

from ueba.db import create_db_engine


@pytest.fixture
def fresh_engine(fresh_database_url):
    eng = create_db_engine(fresh_database_url, pool_size=4)
    yield eng
    eng.dispose()
