"""Connections for the ``postgresql://`` queue engine: URL options, a small pool, error mapping.

A worker touches its queue from several threads at once (leases on the main thread, ``extend``
from the heartbeat thread, ``ack``/``nack`` from post-processing), and threads come and go. So
instead of one connection per thread, which would leak a server connection for every short-lived
thread, transactions borrow a connection from a small pool of idle ones and give it back;
``pool_size`` bounds how many idle connections are kept, not how many threads may work at once.

After a server restart every idle connection is dead, but nothing tells the client until it
speaks. The first thing a transaction sends is ``BEGIN``; if that fails on a pooled connection,
nothing can have been written, so the pool drops all its idle connections and retries once on a
fresh one. A failure later in a transaction is reported as :class:`RetryableError` and the broken
connection is thrown away.

psycopg is imported inside functions only, so this module can be imported (and a missing
dependency reported with the install command) without the optional extra installed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tilerunner.errors import InvalidRequestError, QueueError, RetryableError, TilerunnerError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

__all__ = ["ConnectionPool", "PostgresSettings", "parse_url", "require_psycopg"]

log = logging.getLogger(__name__)

_SYNCHRONOUS_COMMIT = ("on", "remote_apply", "remote_write", "local", "off")
# SQLSTATEs that mean the URL or the server setup is wrong, not that the server is away.
_CONFIG_STATES = {
    "28000": "check the user name in the URL and pg_hba.conf",
    "28P01": "check the user name and password in the URL",
    "3D000": "create the database or fix its name in the URL",
    "42501": "grant the user CREATE on the schema and write access to the queue table",
    "3F000": "create the schema or fix the schema option in the URL",
}
# libpq reports a refused login as text without a SQLSTATE; these FATAL messages mean the same.
_LOGIN_REFUSALS = (
    (re.compile(r"password authentication failed"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry|role \S+ does not exist"), "28000"),
    (re.compile(r"database \S+ does not exist"), "3D000"),
)


def require_psycopg() -> None:
    """Fail early, with the install command, when the optional dependency is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise InvalidRequestError(
            f"the postgresql queue engine needs psycopg 3 ({exc}); "
            "install it with pip install 'tilerunner[postgres]'"
        ) from exc


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """What the queue URL says: how to connect, and the engine's own options."""

    conninfo: str = field(repr=False)  # for libpq (host, dbname, user, password, sslmode, ...)
    display_url: str  # the URL with its password masked, for messages and logs
    schema: str | None  # where the queue table lives; None: the first schema on search_path
    pool_size: int  # idle connections kept for reuse
    synchronous_commit: str  # set on every connection; 'on' waits for the WAL flush


def parse_url(url: str) -> PostgresSettings:
    """Split ``postgresql[+psycopg]://user[:password]@host[:port]/db?options`` into settings.

    The engine's own options are ``schema``, ``pool_size`` and ``synchronous_commit``; every
    other query parameter is a libpq connection parameter (``sslmode``, ``connect_timeout``,
    ``application_name``, ...) and is validated by libpq here, before anything connects.
    """
    require_psycopg()
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgresql+psycopg"):
        raise InvalidRequestError(
            f"queue URL {_mask(url)!r} is not a PostgreSQL URL; write "
            "postgresql://user@host:5432/database"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = options.pop("schema", None) or None
    synchronous_commit = options.pop("synchronous_commit", "on").lower()
    if synchronous_commit not in _SYNCHRONOUS_COMMIT:
        raise InvalidRequestError(
            f"synchronous_commit={synchronous_commit!r} in {_mask(url)!r} is not valid; "
            f"use one of {', '.join(_SYNCHRONOUS_COMMIT)} ('on' keeps messages across a crash)"
        )
    pool_text = options.pop("pool_size", "4")
    if not pool_text.isdigit() or int(pool_text) < 1:
        raise InvalidRequestError(
            f"pool_size={pool_text!r} in {_mask(url)!r} must be an integer >= 1"
        )
    plain = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(options), ""))
    try:
        given = conninfo_to_dict(plain)
    except ProgrammingError as exc:
        raise InvalidRequestError(
            f"queue URL {_mask(url)!r} is not valid ({str(exc).strip()}); the engine's options are "
            "schema, pool_size and synchronous_commit, any other must be a libpq parameter"
        ) from exc
    defaults = {"connect_timeout": "10", "application_name": "tilerunner-queue"}
    extra = {key: value for key, value in defaults.items() if key not in given}
    return PostgresSettings(
        conninfo=make_conninfo(plain, **extra),
        display_url=_mask(urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))),
        schema=schema,
        pool_size=int(pool_text),
        synchronous_commit=synchronous_commit,
    )


def _mask(url: str) -> str:
    """The URL with its password (in the user part or the query) hidden, for errors and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    masked = urlencode([(k, "***" if k == "password" else v) for k, v in query], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, masked, parts.fragment))


def translate_error(exc: psycopg.Error, settings: PostgresSettings) -> TilerunnerError:
    """Map a psycopg error onto the project's tree, naming the server and what to do."""
    import psycopg

    state = exc.sqlstate or _login_state(str(exc))
    where = settings.display_url
    if state in _CONFIG_STATES:
        return InvalidRequestError(f"PostgreSQL at {where} refused: {exc}; {_CONFIG_STATES[state]}")
    if isinstance(exc, psycopg.OperationalError) or state[:2] in ("40", "55", "57", "08", "53"):
        # no connection, restart, shutdown, deadlock, serialization, lock or resource limits
        return RetryableError(
            f"PostgreSQL at {where} is not reachable or is busy ({exc}); "
            "retry, and check that the server runs and accepts connections"
        )
    if state == "25006":
        return RetryableError(
            f"PostgreSQL at {where} is read-only (a standby?); point the URL at the primary"
        )
    return QueueError(f"queue database at {where} failed: {exc}")


def _login_state(message: str) -> str:
    """The SQLSTATE a refused login would have had, read from libpq's FATAL text."""
    fatal = message.partition("FATAL:")[2]
    return next((state for pattern, state in _LOGIN_REFUSALS if pattern.search(fatal)), "")


class ConnectionPool:
    """Idle connections shared by the threads of one queue handle."""

    def __init__(self, settings: PostgresSettings) -> None:
        require_psycopg()
        self.settings = settings
        self._idle: list[psycopg.Connection[TupleRow]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """Run the block in one transaction on a borrowed connection.

        psycopg errors become project errors here; any other exception (a LeaseLostError raised
        by the block) rolls the transaction back and passes through unchanged.
        """
        import psycopg

        conn = self._begin()
        try:
            yield conn
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._drop(conn)  # broken, or aborted mid-transaction: not worth saving
            raise translate_error(exc, self.settings) from exc
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                self._drop(conn)
            else:
                self._release(conn)
            raise
        self._release(conn)

    def close(self) -> None:
        """Close the idle connections; borrowed ones are closed when they come back."""
        self._closed = True
        self._drop_idle()

    def _begin(self) -> psycopg.Connection[TupleRow]:
        """A connection inside a fresh ``BEGIN``, replacing idle ones that went stale."""
        import psycopg

        if self._closed:
            raise QueueError(
                f"postgresql queue on {self.settings.display_url} is closed; "
                "open it again with open_queue"
            )
        with self._lock:
            if self._pid != os.getpid():
                # forked: the parent's sockets must be neither used nor closed here
                self._pid, self._idle = os.getpid(), []
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:
                conn.execute("BEGIN")
                return conn
            except psycopg.OperationalError:
                # the server restarted while the connection sat idle; nothing was sent yet
                log.info(
                    "queue connections to %s went stale; reconnecting", self.settings.display_url
                )
                self._drop(conn)
                self._drop_idle()
        conn = self._connect()
        try:
            conn.execute("BEGIN")
        except psycopg.Error as exc:
            self._drop(conn)
            raise translate_error(exc, self.settings) from exc
        return conn

    def _connect(self) -> psycopg.Connection[TupleRow]:
        import psycopg
        from psycopg import sql

        setting = sql.SQL("SET synchronous_commit = {}").format(
            sql.Literal(self.settings.synchronous_commit)
        )
        try:
            conn = psycopg.connect(self.settings.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise translate_error(exc, self.settings) from exc
        try:
            conn.execute(setting)
        except psycopg.Error as exc:
            conn.close()
            raise translate_error(exc, self.settings) from exc
        log.debug("opened queue connection to %s", self.settings.display_url)
        return conn

    def _release(self, conn: psycopg.Connection[TupleRow]) -> None:
        with self._lock:
            keep = (
                not self._closed
                and not conn.broken
                and self._pid == os.getpid()
                and len(self._idle) < self.settings.pool_size
            )
            if keep:
                self._idle.append(conn)
                return
        conn.close()

    def _drop(self, conn: psycopg.Connection[TupleRow]) -> None:
        if self._pid == os.getpid():
            conn.close()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            forked = self._pid != os.getpid()
        if not forked:
            for conn in idle:
                conn.close()
