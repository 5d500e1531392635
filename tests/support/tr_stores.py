"""The store URL fixture of the tests that run on SQLite and PostgreSQL: every test gets a new
SQLite file and, when the server is reachable, a fresh PostgreSQL schema, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tr_pg import pg_schema_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with pg_schema_url() as url:
        yield url
