"""The SQLite engine keeps its connections: store calls borrow one that is already set up
(WAL, busy timeout, foreign keys) instead of opening the file again, from any thread, and a
transaction still takes the write lock at its start."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, text

from tilerunner.store import open_store


def test_store_calls_reuse_a_connection_set_up_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    connects: list[int] = []
    event.listen(store.engine, "connect", lambda *_: connects.append(1))
    for _ in range(20):
        assert store.get_job("none") is None
    worker = threading.Thread(target=lambda: [store.get_job("none") for _ in range(5)])
    worker.start()
    worker.join()
    assert len(connects) <= 1  # at most one more than the connection the migration check used
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 60000
    store.engine.dispose()


def test_a_pooled_connection_holds_no_lock_between_calls(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}")
    assert store.get_job("none") is None  # the connection goes back to the pool, kept open
    other = sqlite3.connect(path, timeout=0)  # would fail at once if a lock were held
    other.execute("BEGIN EXCLUSIVE")
    other.execute("ROLLBACK")
    other.close()
    with store.engine.begin() as connection:  # BEGIN IMMEDIATE: the write lock at once
        assert connection.exec_driver_sql("SELECT 1").scalar() == 1
        other = sqlite3.connect(path, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    store.engine.dispose()
