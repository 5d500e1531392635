"""A fresh PostgreSQL schema per test (dropped afterwards), or a skip when the server is away."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/tilerunner_test"


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """A ``postgresql+psycopg://`` URL whose search path is a new, empty schema."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = os.environ.get("TILERUNNER_TEST_POSTGRES_URL", POSTGRES_URL_DEFAULT)
    dbname = str(conninfo_to_dict(url).get("dbname", "postgres"))
    try:
        with psycopg.connect(make_conninfo(url, dbname="postgres", connect_timeout=3)) as conn:
            conn.autocommit = True
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(f'CREATE DATABASE "{dbname}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {url} is not reachable ({exc}); start it or set "
                    "TILERUNNER_TEST_POSTGRES_URL")  # fmt: skip
    schema = f"trp_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        base = url.replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
