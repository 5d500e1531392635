"""The table behind the ``postgresql://`` queue engine, and creating it safely.

Every queue of a database shares one table, keyed by ``(queue, id)`` so that publishing an id
that is still present is a no-op. ``seq`` breaks ties between messages published at the same
instant, so equal ``visible_at`` values lease in publish order. Three partial indexes keep each
hot query a short index walk however many messages wait: the lease walk (rows not dead, by
``visible_at, seq``), the dead-lettering of expired leases (only the leased rows, which are as
few as the workers), and the dead-letter listing.

The table is an ordinary, logged one: an UNLOGGED table would be emptied by the server's crash
recovery, losing every message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tilerunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from psycopg import sql

    from tilerunner.broker.postgres_connection import ConnectionPool

__all__ = ["TABLE", "compose", "ensure_table"]

log = logging.getLogger(__name__)

TABLE = "tilerunner_queue_messages"

_INDEXES = ("available", "leased", "dead")

_DDL = (
    """CREATE TABLE IF NOT EXISTS {table} (
        queue text NOT NULL,
        id text NOT NULL,
        body bytea NOT NULL,
        state text NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
        visible_at double precision NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        receipt text,
        reason text NOT NULL DEFAULT '',
        died_at double precision,
        enqueued_at double precision NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (queue, id)
    )""",
    "CREATE INDEX IF NOT EXISTS {available} ON {table} (queue, visible_at, seq) "
    "WHERE state <> 'dead'",
    "CREATE INDEX IF NOT EXISTS {leased} ON {table} (queue, visible_at) WHERE state = 'leased'",
    "CREATE INDEX IF NOT EXISTS {dead} ON {table} (queue, died_at, id) WHERE state = 'dead'",
)


def compose(template: str, schema: str | None) -> sql.Composed:
    """Fill ``{table}`` (schema-qualified when a schema is given) and the index names in."""
    from psycopg import sql

    table = sql.Identifier(schema, TABLE) if schema else sql.Identifier(TABLE)
    names = {name: sql.Identifier(f"{TABLE}_{name}") for name in _INDEXES}
    return sql.SQL(template).format(table=table, **names)


def ensure_table(pool: ConnectionPool) -> None:
    """Create the table and its indexes once per database, under an advisory lock.

    ``CREATE INDEX IF NOT EXISTS`` takes a SHARE lock on the table before it notices that the
    index exists, which would stall every leaser for a moment each time a worker starts; so the
    DDL runs only when the last index is missing, and concurrent creators queue on the lock.
    """
    from psycopg import sql

    check = "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s"
    given = pool.settings.schema
    with pool.transaction() as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = given or (str(row[0]) if row and row[0] else "")
        if not schema:
            raise InvalidRequestError(
                f"the search_path of {pool.settings.display_url} names no existing schema; "
                "add ?schema=NAME to the queue URL"
            )
        params = (schema, f"{TABLE}_{_INDEXES[-1]}")
        if conn.execute(check, params).fetchone():
            return
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{TABLE}",))
        if conn.execute(check, params).fetchone():
            return  # another process created it while we waited
        if given:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(given)))
        for statement in _DDL:
            conn.execute(compose(statement, given))
    log.info("created queue table %s.%s on %s", schema, TABLE, pool.settings.display_url)
