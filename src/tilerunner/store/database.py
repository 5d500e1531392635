"""Opening the state database and bringing its schema up to date.

``sqlite:///path`` (the embedded default) gets WAL, a busy timeout and ``BEGIN IMMEDIATE``
transactions so that several worker processes can share one file without "database is locked"
surprises; ``postgresql+psycopg://`` is used as is, with migrations serialised by an advisory
lock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from tilerunner.errors import InvalidRequestError, StoreError

__all__ = ["open_engine", "sqlite_path", "upgrade"]

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not pysqlite, opens transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")  # first: switching to WAL may wait too
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str) -> Engine:
    """Create an engine for the store URL; raise InvalidRequestError for a malformed URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidRequestError(
            f"cannot parse store URL {url!r}; use sqlite:///path/state.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None and not path.parent.exists():
            raise InvalidRequestError(
                f"cannot create state database {str(path)!r}: directory {str(path.parent)!r} "
                "does not exist; create it or choose another --state path"
            )
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_size=4, max_overflow=8)


# Key of the PostgreSQL advisory lock that serialises migrations (any constant unique to us).
_MIGRATION_LOCK = 0x7452_4D49_4752  # "tRMIGR"


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations up to head (idempotent).

    Every process that opens the store migrates it, so a cluster's workers starting together
    race to create the same tables. SQLite serialises them with ``BEGIN IMMEDIATE``; on
    PostgreSQL a transaction-scoped advisory lock does, and whoever comes second finds the
    schema at head and does nothing (instead of failing on a duplicate ``CREATE TABLE``).
    """
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as error:
        raise StoreError(f"cannot migrate the state database: {error.orig}") from None
