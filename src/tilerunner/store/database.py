"""Opening the state database and bringing its schema up to date.

``sqlite:///path`` (the embedded default) gets WAL, a busy timeout and ``BEGIN IMMEDIATE``
transactions so that several worker processes can share one file without "database is locked"
surprises, and a small pool of connections, each set up once: a store call borrows an open
connection instead of opening the file and running the set-up statements again (a worker makes
several calls per region, a ``run`` polls its progress). An idle pooled connection holds no
lock and no transaction (every transaction is committed or rolled back before the connection
goes back), so a process killed at any point leaves the file as WAL leaves it.
``postgresql+psycopg://`` is used as is, with migrations serialised by an advisory lock. A
database already at the newest revision is recognised with one query, without Alembic (whose
import and script loading cost a command's start-up more than its own work).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool, QueuePool

from tilerunner.errors import InvalidRequestError, StoreError
from tilerunner.store.revisions import MIGRATIONS as _MIGRATIONS
from tilerunner.store.revisions import VERSION_TABLE as _VERSION_TABLE
from tilerunner.store.revisions import head_revision

__all__ = ["head_revision", "open_engine", "schema_revisions", "sqlite_path", "upgrade"]

log = logging.getLogger(__name__)

# Connections a SQLite engine keeps open between calls; threads beyond it open (and close)
# connections of their own, so a busy process never waits for one.
_SQLITE_POOL = 4


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
        if path is None:  # in memory: every connection is a database of its own
            engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})
        else:  # a file: connections kept open (threads borrow them in turn) and reused
            engine = create_engine(
                url,
                poolclass=QueuePool,
                pool_size=_SQLITE_POOL,
                max_overflow=-1,
                connect_args={"timeout": 60, "check_same_thread": False},
            )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_size=4, max_overflow=8)


# Key of the PostgreSQL advisory lock that serialises migrations (any constant unique to us).
_MIGRATION_LOCK = 0x7452_4D49_4752  # "tRMIGR"


def schema_revisions(engine: Engine) -> set[str]:
    """The revisions the database says it is at (empty for a database never migrated)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(_VERSION_TABLE):
            return set()
        rows = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}"))
        return {str(row[0]) for row in rows}


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations up to head (idempotent).

    A database at head already is left alone after one query (no lock, no Alembic): schemas
    only move forward, so once at head it stays there. Otherwise every process that opens the
    store migrates it, so a cluster's workers starting together race to create the same
    tables. SQLite serialises them with ``BEGIN IMMEDIATE``; on PostgreSQL a
    transaction-scoped advisory lock does, and whoever comes second finds the schema at head
    and does nothing (instead of failing on a duplicate ``CREATE TABLE``). A new, empty SQLite
    file gets the newest schema at once (:func:`_create_at_head`).
    """
    started = time.monotonic()
    try:
        head = head_revision()
        revisions = schema_revisions(engine) if head is not None else None
        if head is not None and revisions == {head}:
            log.debug("state database at revision %s already; nothing to migrate", head)
            return
        if head is None or revisions or not _create_at_head(engine, head):
            _alembic_upgrade(engine)
    except OperationalError as error:
        raise StoreError(f"cannot migrate the state database: {error.orig}") from None
    log.debug("migrated the state database to head in %.3f s", time.monotonic() - started)


def _create_at_head(engine: Engine, head: str) -> bool:
    """Create a new, empty SQLite database's tables straight from the table definitions and
    stamp it at ``head`` (Alembic's "building an up to date database from scratch"): the same
    schema as running every migration (a test compares the two), without Alembic's import and
    seven migrations in the start-up of ``tilerunner run``. False when the database is not
    SQLite or not empty (then the migrations run)."""
    if engine.dialect.name != "sqlite":
        return False
    from tilerunner.store.tables import metadata

    with engine.begin() as connection:  # BEGIN IMMEDIATE: one process creates, others wait
        if inspect(connection).get_table_names():
            return False
        metadata.create_all(connection)
        connection.execute(
            text(
                f"CREATE TABLE {_VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                f"CONSTRAINT {_VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
            )
        )
        connection.execute(
            text(f"INSERT INTO {_VERSION_TABLE} (version_num) VALUES (:head)"), {"head": head}
        )
    return True


def _alembic_upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
