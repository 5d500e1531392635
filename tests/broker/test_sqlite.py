"""What the embedded SQLite engine promises beyond the contract: it shares the store's file,
several handles and threads work on one file, and lock timeouts are retryable."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from tr_clock import FakeClock

from tilerunner.broker import Depth, Message, open_queue
from tilerunner.broker.sqlite import SQLiteQueue
from tilerunner.errors import RetryableError


def test_queue_table_lives_beside_the_store_tables(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    metadata = sa.MetaData()
    jobs = sa.Table("jobs", metadata, sa.Column("id", sa.String, primary_key=True))
    metadata.create_all(engine)
    queue = open_queue(f"sqlite:///{db}", "regions")
    queue.publish([Message("job1:img:0", b"{}")])
    with engine.begin() as conn:
        conn.execute(jobs.insert().values(id="job1"))
        tables = set(sa.inspect(conn).get_table_names())
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert {"jobs", "queue_messages"} <= tables
    assert mode == "wal"
    queue.close()
    engine.dispose()


def test_queues_of_one_file_are_separate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    regions, aggregations = open_queue(url, "regions"), open_queue(url, "aggregations")
    regions.publish([Message("a", b"1"), Message("b", b"2")])
    aggregations.publish([Message("a", b"other")])
    assert [le.body for le in aggregations.lease(5, 30.0)] == [b"other"]
    assert regions.purge() == 2
    assert aggregations.depth() == Depth(visible=0, in_flight=1, delayed=0, dead=0)
    regions.close()
    aggregations.close()


def test_lease_walks_the_index_in_order(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "state.db", "regions")
    conn = sqlite3.connect(tmp_path / "state.db")
    plan = " ".join(
        row[-1]
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id, body, attempts FROM queue_messages "
            "WHERE queue = ? AND state <> 'dead' AND visible_at <= ? ORDER BY visible_at LIMIT ?",
            ("regions", 0.0, 10),
        )
    )
    conn.close()
    queue.close()
    assert "queue_messages_available" in plan and "TEMP B-TREE" not in plan


def test_equal_publish_times_lease_in_publish_order(tmp_path: Path, clock: FakeClock) -> None:
    queue = SQLiteQueue(tmp_path / "state.db", "regions", clock=clock)
    ids = [f"r{i}" for i in (5, 3, 9, 1, 7)]
    queue.publish([Message(i, b"") for i in ids])
    assert [le.message_id for le in queue.lease(5, 30.0)] == ids


def test_late_lease_not_taken_by_anyone_can_still_be_acked(
    tmp_path: Path, clock: FakeClock
) -> None:
    queue = SQLiteQueue(tmp_path / "state.db", "regions", clock=clock)
    queue.publish([Message("a", b"")])
    (lease,) = queue.lease(1, 10.0)
    clock.advance(20.0)  # expired, but no other worker leased it in between
    queue.ack(lease)
    assert queue.depth().total == 0


def test_in_memory_database_is_shared_by_threads() -> None:
    queue = open_queue("sqlite:///:memory:", "regions")
    queue.publish([Message(f"m{i}", b"") for i in range(50)])
    got: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        while batch := queue.lease(2, 30.0):
            with lock:
                got.extend(le.message_id for le in batch)

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(got) == sorted(f"m{i}" for i in range(50))
    queue.close()


def test_heartbeat_thread_extends_a_lease_taken_on_the_main_thread(
    tmp_path: Path, clock: FakeClock
) -> None:
    queue = SQLiteQueue(tmp_path / "state.db", "regions", clock=clock)
    queue.publish([Message("a", b"")])
    (lease,) = queue.lease(1, 10.0)
    extended = []
    heartbeat = threading.Thread(target=lambda: extended.append(queue.extend(lease, 60.0)))
    heartbeat.start()
    heartbeat.join(timeout=30)
    clock.advance(30.0)
    assert queue.lease(1, 10.0) == []
    queue.ack(extended[0])
    queue.close()


def test_lock_held_too_long_is_a_retryable_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    queue = open_queue(f"sqlite:///{db}?busy_timeout=0.1", "regions")
    queue.publish([Message("a", b"")])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RetryableError, match="locked"):
            queue.lease(1, 30.0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [le.message_id for le in queue.lease(1, 30.0)] == ["a"]  # nothing was lost
    queue.close()


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_a_threads_connection_is_closed_when_the_thread_ends(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "state.db", "regions")
    opened: list[sqlite3.Connection] = []

    def publish() -> None:
        queue.publish([Message("a", b"")])
        opened.append(queue._local.conn)

    thread = threading.Thread(target=publish)
    thread.start()
    thread.join(timeout=30)
    deadline = time.monotonic() + 30
    while not _is_closed(opened[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _is_closed(opened[0])
    assert opened[0] not in queue._connections
    assert [le.message_id for le in queue.lease(1, 30.0)] == ["a"]  # the main thread's own
    queue.close()


def test_close_closes_every_threads_connection_and_the_log_is_folded_away(
    tmp_path: Path,
) -> None:
    db, wal = tmp_path / "state.db", tmp_path / "state.db-wal"
    queue = SQLiteQueue(db, "regions")
    queue.publish([Message("a", b"")])
    leased, release = threading.Event(), threading.Event()

    def hold() -> None:  # a thread that is still alive, with its connection open
        queue.lease(1, 30.0)
        leased.set()
        release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert leased.wait(30)
    assert wal.exists()
    queue.close()
    release.set()
    holder.join(timeout=30)
    assert not wal.exists()  # the last connection closed: the log went into the file
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT id, state FROM queue_messages").fetchall() == [("a", "leased")]


def _lease_in_forked_child(queue: SQLiteQueue, out: Path) -> None:
    inherited = queue._local.conn  # what the parent's thread-local held at the fork
    ids = ",".join(le.message_id for le in queue.lease(5, 30.0))
    out.write_text(f"{ids}|{queue._connection() is not inherited}")


def test_handle_inherited_through_fork_opens_its_own_connection(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "state.db", "regions")
    queue.publish([Message("a", b""), Message("b", b"")])
    (mine,) = queue.lease(1, 30.0)  # the parent's connection exists before the fork
    out = tmp_path / "child.txt"
    child = multiprocessing.get_context("fork").Process(
        target=_lease_in_forked_child, args=(queue, out)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert out.read_text() == ("b" if mine.message_id == "a" else "a") + "|True"
    queue.ack(mine)  # the parent's connection still works after the child used its own
    assert queue.depth() == Depth(visible=0, in_flight=1, delayed=0, dead=0)
    queue.close()
