"""The start-up short cut of ``upgrade``: a database at head is recognised with one query and
left alone; one behind head is still migrated by Alembic (under the advisory lock on
PostgreSQL); the head is read from the version scripts exactly as Alembic reads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect
from test_repository import store_url  # noqa: F401 - fixture

from tilerunner.store import database, open_engine, upgrade
from tilerunner.store.database import _MIGRATIONS, head_revision, schema_revisions


def _config(connection: object | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@pytest.fixture
def fresh_head() -> Iterator[None]:
    head_revision.cache_clear()
    yield
    head_revision.cache_clear()


def test_head_revision_is_alembics_head() -> None:
    assert head_revision() == ScriptDirectory.from_config(_config()).get_current_head()


def test_a_database_at_head_is_left_alone(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = open_engine(store_url)
    assert schema_revisions(engine) == set()  # never migrated
    upgrade(engine)
    assert schema_revisions(engine) == {head_revision()}
    calls: list[object] = []
    monkeypatch.setattr(database, "_alembic_upgrade", calls.append)
    upgrade(engine)
    assert calls == []
    engine.dispose()


def test_a_database_behind_head_is_migrated_under_the_lock(store_url: str) -> None:  # noqa: F811
    engine = open_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0006")
    assert schema_revisions(engine) == {"0006"}
    statements: list[str] = []

    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", _record)
    upgrade(engine)
    event.remove(engine, "before_cursor_execute", _record)
    assert schema_revisions(engine) == {head_revision()}
    assert "model_info" in {c["name"] for c in inspect(engine).get_columns("workers")}
    if engine.dialect.name == "postgresql":
        lock = next(i for i, s in enumerate(statements) if "pg_advisory_xact_lock" in s)
        alter = next(i for i, s in enumerate(statements) if s.lstrip().upper().startswith("ALTER"))
        assert lock < alter
    engine.dispose()


def _scripts(folder: Path, *bodies: str) -> None:
    versions = folder / "versions"
    versions.mkdir(parents=True)
    for i, body in enumerate(bodies):
        (versions / f"{i:04d}_step.py").write_text(body)


_ROOT = 'revision = "a"\ndown_revision = None\n'


@pytest.mark.usefixtures("fresh_head")
@pytest.mark.parametrize(
    ("bodies", "head"),
    [
        ([_ROOT, 'revision: str = "b"\ndown_revision = "a"\n'], "b"),
        # a merge, two heads, a revision not written as a literal, one missing: ask Alembic
        ([_ROOT, 'revision = "b"\ndown_revision = ("a",)\n'], None),
        ([_ROOT, 'revision = "b"\ndown_revision = None\n'], None),
        (['revision = "a" + ""\ndown_revision = None\n'], None),
        (["down_revision = None\n"], None),
        ([], None),
    ],
)
def test_head_is_read_only_from_plain_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bodies: list[str], head: str | None
) -> None:
    _scripts(tmp_path, *bodies)
    monkeypatch.setattr(database, "_MIGRATIONS", tmp_path)
    assert head_revision() == head
