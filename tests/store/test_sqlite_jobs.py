"""``status``'s job list read with sqlite3 alone: the same jobs in the same order as the store's
``list_jobs``, and no answer (so the store opens, creates or migrates as usual) for anything but
an existing SQLite file at the newest schema."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import text

from tilerunner.jobs import JobState
from tilerunner.store import ImagePlan, Store, open_engine, open_store, upgrade
from tilerunner.store.sqlite_jobs import list_jobs


def _store_with_jobs(url: str) -> Store:
    ticks = itertools.chain([5.0, 5.0, 7.0], itertools.count(8.0))  # two jobs created together
    store = Store(open_store(url).engine, clock=lambda: next(ticks))
    plan = ImagePlan(0, "a.tif", "/data/a.tif", 100, 100, 2, [4, 2])
    for job_id, name in (("b-job", "second"), ("a-job", None), ("c-job", "newest")):
        assert store.create_job(job_id, name, {"k": 1}, [plan])
    assert store.set_job_state("c-job", JobState.RUNNING)
    return store


def test_lists_what_the_store_lists_in_its_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = _store_with_jobs(url)
    expected = [(j.id, j.name, j.status.value, j.regions_total) for j in store.list_jobs()]
    listed = list_jobs(url)
    assert listed is not None
    assert [(j.id, j.name, j.status, j.regions_total) for j in listed] == expected
    assert [j.id for j in listed] == ["c-job", "a-job", "b-job"]
    assert [j.id for j in list_jobs(url, limit=2) or []] == ["c-job", "a-job"]


def test_a_relative_path_is_read_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _store_with_jobs("sqlite:///state.db")
    assert [j.id for j in list_jobs("sqlite:///state.db") or []] == ["c-job", "a-job", "b-job"]


def test_no_answer_for_a_missing_file_which_it_does_not_create(tmp_path: Path) -> None:
    assert list_jobs(f"sqlite:///{tmp_path / 'missing.db'}") is None
    assert not (tmp_path / "missing.db").exists()


def test_no_answer_for_a_database_not_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = open_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE unrelated (x INTEGER)"))
    assert list_jobs(url) is None  # never migrated: no version table
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert list_jobs(url) is None  # behind head: the store migrates it first
    engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user@localhost/db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///state.db",
        "sqlite:///state.db?mode=ro",
    ],
)
def test_no_answer_for_other_databases(url: str) -> None:
    assert list_jobs(url) is None


def test_no_answer_for_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database\n" * 100)
    assert list_jobs(f"sqlite:///{tmp_path / 'notes.db'}") is None
