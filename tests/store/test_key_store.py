"""API keys and job projects in the state database, on SQLite and PostgreSQL.

The fixtures of ``test_repository`` run every test on the embedded SQLite store and, when the
server is reachable, on PostgreSQL in a fresh schema.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from test_repository import store, store_url  # noqa: F401 - fixtures

from tilerunner.jobs import JobState
from tilerunner.security.keys import Scope, generate_key, hash_key
from tilerunner.store import KeyRepository, Store, open_engine, upgrade
from tilerunner.store.database import _MIGRATIONS
from tilerunner.store.keys import LAST_USED_EVERY


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_key_is_stored_by_hash_and_found_by_it(store: Store) -> None:  # noqa: F811
    keys = KeyRepository(store.engine)
    new = generate_key()
    made = keys.create(
        new.id, new.key_hash, project="team-a", scopes={Scope.READ, Scope.SUBMIT}, name="ci"
    )
    assert made.id == new.id and made.scopes == {Scope.READ, Scope.SUBMIT}
    found = keys.lookup(hash_key(new.key))
    assert found == made
    assert found is not None and found.project == "team-a" and not found.revoked
    assert keys.lookup(generate_key().key_hash) is None
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_keys")).mappings().one()
    assert new.key not in str(dict(stored))  # the key itself is never written
    assert new.key_hash not in repr(found)


def test_revoking_a_key_is_seen_by_the_next_lookup(store: Store) -> None:  # noqa: F811
    keys = KeyRepository(store.engine)
    new = generate_key()
    keys.create(new.id, new.key_hash, project="default", scopes={Scope.ADMIN})
    assert keys.revoke(new.id)
    found = keys.lookup(new.key_hash)
    assert found is not None and found.revoked
    assert not keys.revoke(new.id)  # once
    assert not keys.revoke("000000000000")
    assert [k.id for k in keys.list_keys()] == [new.id]


def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:  # noqa: F811
    clock = Clock()
    keys = KeyRepository(store.engine, clock=clock)
    new = generate_key()
    record = keys.create(new.id, new.key_hash, project="default", scopes={Scope.READ})
    assert keys.touch(record)
    seen = keys.get(new.id)
    assert seen is not None and seen.last_used_at == 1_000.0
    clock.now += LAST_USED_EVERY - 1
    assert not keys.touch(seen)
    assert not keys.touch(record)  # a stale record: the guarded update still writes nothing
    clock.now += 1
    assert keys.touch(seen)
    again = keys.get(new.id)
    assert again is not None and again.last_used_at == 1_000.0 + LAST_USED_EVERY


def test_jobs_are_listed_by_project_status_and_name_with_a_cursor(store: Store) -> None:  # noqa: F811
    clock = Clock()
    jobs = Store(store.engine, clock=clock)
    for i in range(7):
        clock.now = 100.0 + i // 2  # pairs share a created_at: the id breaks the tie
        project = "a" if i != 3 else "b"
        assert jobs.create_job(f"j{i}", "even" if i % 2 == 0 else "odd", {}, [], project=project)
    assert jobs.set_job_state("j5", JobState.CANCELLED)
    everything = [j.id for j in jobs.list_jobs(100, project="a")]
    assert everything == ["j6", "j4", "j5", "j2", "j0", "j1"]
    pages: list[str] = []
    after = None
    while True:
        page = jobs.list_jobs(2, project="a", after=after)
        pages += [j.id for j in page]
        if len(page) < 2:
            break
        after = (page[-1].created_at, page[-1].id)
    assert pages == everything
    assert [j.id for j in jobs.list_jobs(100, project="a", name="odd")] == ["j5", "j1"]
    assert [j.id for j in jobs.list_jobs(100, project="a", status=JobState.CANCELLED)] == ["j5"]
    assert [j.id for j in jobs.list_jobs(100, project="b")] == ["j3"]
    assert {j.project for j in jobs.list_jobs(100)} == {"a", "b"}


def _alembic(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def test_migration_puts_existing_jobs_in_the_default_project(store_url: str) -> None:  # noqa: F811
    engine = open_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0002")
        conn.execute(
            text(
                "INSERT INTO jobs (id, name, spec, status, created_at, images_total, "
                "images_finished, regions_total, tiles_total) "
                "VALUES ('old', 'n', '{}', 'succeeded', 1.0, 0, 0, 0, 0)"
            )
        )
    upgrade(engine)
    migrated = Store(engine)
    job = migrated.get_job("old")
    assert job is not None and job.project == "default"
    assert [j.id for j in migrated.list_jobs(10, project="default")] == ["old"]
    assert "api_keys" in inspect(engine).get_table_names()
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0002")
    assert "api_keys" not in inspect(engine).get_table_names()
    assert "project" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()
