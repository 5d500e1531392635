"""The schema revision a state database must be at, read from the migration scripts.

Without SQLAlchemy or Alembic: ``upgrade`` and ``status``'s read of a SQLite file
(:mod:`tilerunner.store.sqlite_jobs`) both start with it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

__all__ = ["MIGRATIONS", "VERSION_TABLE", "head_revision"]

MIGRATIONS = Path(__file__).parent / "migrations"
"""Alembic's script folder (``env.py`` and ``versions/``)."""
VERSION_TABLE = "alembic_version"
"""The table that holds the revision a database is at."""


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision id, read from the version scripts without importing
    them; None when it cannot be told for certain (then :func:`upgrade` asks Alembic).

    Every script must assign ``revision`` and ``down_revision`` plain string literals (or
    ``None``), as Alembic's template writes them, and exactly one revision must be no other's
    parent; anything else (a merge, a script written differently) gives None.
    """
    parents: dict[str, str | None] = {}
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            target, value = _assignment(node)
            if target in ("revision", "down_revision"):
                try:
                    values[target] = ast.literal_eval(value) if value is not None else None
                except ValueError:
                    return None
        revision, parent = values.get("revision"), values.get("down_revision", ...)
        if not isinstance(revision, str) or not (parent is None or isinstance(parent, str)):
            return None
        if revision in parents:
            return None
        parents[revision] = parent
    heads = set(parents) - {p for p in parents.values() if p is not None}
    return heads.pop() if len(heads) == 1 else None


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return (target.id if isinstance(target, ast.Name) else None), node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None
