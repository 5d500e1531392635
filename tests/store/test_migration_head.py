"""The start-up short cuts of ``upgrade``: a database at head is recognised with one query and
left alone; a new SQLite file is created from the table definitions and stamped at head, which
gives the schema the migrations build; one behind head is still migrated by Alembic (under the
advisory lock on PostgreSQL); the head is read from the version scripts exactly as Alembic
reads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, inspect
from test_repository import store_url  # noqa: F401 - fixture

from tilerunner.store import database, open_engine, revisions, upgrade
from tilerunner.store.database import _MIGRATIONS, head_revision, schema_revisions
from tilerunner.store.tables import metadata


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


def _schema_differences(engine: Engine) -> list[object]:
    """What Alembic's autogenerate sees between the database and the table definitions."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def test_the_migrations_build_the_schema_the_tables_define(store_url: str) -> None:  # noqa: F811
    engine = open_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "head")
    assert _schema_differences(engine) == []
    engine.dispose()


def test_a_new_sqlite_file_is_created_at_head_without_the_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'new.db'}")
    calls: list[object] = []
    monkeypatch.setattr(database, "_alembic_upgrade", calls.append)
    upgrade(engine)
    assert calls == []
    assert schema_revisions(engine) == {head_revision()}
    assert _schema_differences(engine) == []
    monkeypatch.undo()
    with engine.begin() as conn:  # Alembic agrees that it is at head: nothing left to run
        command.upgrade(_config(conn), "head")
        assert MigrationContext.configure(conn).get_current_heads() == (head_revision(),)
    engine.dispose()


def test_a_sqlite_file_with_tables_but_no_version_goes_through_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    calls: list[object] = []
    monkeypatch.setattr(database, "_alembic_upgrade", calls.append)
    upgrade(engine)
    assert calls == [engine]
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
    monkeypatch.setattr(revisions, "MIGRATIONS", tmp_path)
    assert head_revision() == head
