"""The job list of a SQLite state file, read with the standard library's ``sqlite3``.

``tilerunner status`` without a job id reads only this: importing SQLAlchemy (and building its
tables) costs the command several times what the query does. It answers only for a file that
exists and is at the newest schema revision, so it reads the tables SQLAlchemy would; anything
else (another database, a new file, one to migrate) returns None and the caller opens the store
as usual, which creates or migrates it.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tilerunner.store.revisions import VERSION_TABLE, head_revision

__all__ = ["JobLine", "list_jobs"]

# ``sqlite:///relative.db`` or ``sqlite:////absolute.db``: no driver, query or escapes
_PLAIN_SQLITE = re.compile(r"^sqlite:///([^?%]+)$")


@dataclass(frozen=True, slots=True)
class JobLine:
    """One row of the job list."""

    id: str
    name: str | None
    status: str
    regions_total: int


def list_jobs(url: str, limit: int = 50) -> list[JobLine] | None:
    """The newest ``limit`` jobs (ties by id), as ``Store.list_jobs`` orders them; None when
    ``url`` is not a plain SQLite file at the newest revision (see the module's docstring)."""
    match = _PLAIN_SQLITE.match(url)
    head = head_revision()
    if match is None or head is None:
        return None
    path = Path(match.group(1))
    if path.name == ":memory:" or not path.is_file():
        return None
    try:
        # mode=rw: never create the file; the store opens it the same way, with a busy timeout
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", timeout=60, uri=True)
    except sqlite3.Error:
        return None
    try:
        revisions = {
            row[0] for row in connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")
        }
        if revisions != {head}:
            return None
        rows = connection.execute(
            "SELECT id, name, status, regions_total FROM jobs ORDER BY created_at DESC, id LIMIT ?",
            (limit,),
        ).fetchall()
    except sqlite3.Error:  # no version table, not a database, locked past the timeout
        return None
    finally:
        connection.close()
    return [JobLine(str(i), name, str(status), int(regions)) for i, name, status, regions in rows]
