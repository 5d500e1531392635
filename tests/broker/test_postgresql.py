"""What the PostgreSQL engine promises beyond the contract: messages survive a server restart,
stale connections are replaced, SKIP LOCKED never blocks a leaser, URL options are checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tr_clock import FakeClock

from tilerunner.broker import Depth, Message, open_queue
from tilerunner.broker.postgres import TABLE, PostgresQueue
from tilerunner.broker.postgres_connection import ConnectionPool, parse_url
from tilerunner.errors import InvalidRequestError, RetryableError

from .conftest import postgres_probe

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.services


@pytest.fixture
def url() -> str:
    found, skip_reason = postgres_probe()
    if skip_reason:
        pytest.skip(skip_reason)
    return found


@pytest.fixture
def name() -> Iterator[str]:
    """A queue name of this test; its rows are deleted afterwards."""
    queue_name = f"pg-{uuid.uuid4().hex[:12]}"
    yield queue_name
    found, skip_reason = postgres_probe()
    if not skip_reason:
        with psycopg.connect(found, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {TABLE} WHERE queue = %s", (queue_name,))


def _messages(*ids: str) -> list[Message]:
    return [Message(i, f"body of {i}".encode()) for i in ids]


def _backends(url: str, application_name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return int(row[0])


def _cluster() -> tuple[str, str]:
    """(version, name) of the local cluster that pg_ctlcluster can restart."""
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if (p / "main").is_dir())
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.skip("no local PostgreSQL cluster that pg_ctlcluster can restart")
    return versions[-1], "main"


def _wait_until_reachable(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_messages_and_leases_survive_a_server_crash_restart(url: str, name: str) -> None:
    if "127.0.0.1" not in url and "localhost" not in url:
        pytest.skip("the server is not local; it cannot be restarted from here")
    version, cluster = _cluster()
    queue = open_queue(url, name, max_attempts=3)
    ids = [f"job:img:{i}" for i in range(50)]
    assert queue.publish(_messages(*ids)) == 50
    (held,) = queue.lease(1, visibility=300.0)
    # "immediate" stops like a crash (no shutdown checkpoint): only what was flushed survives
    restart = ["pg_ctlcluster", "--skip-systemctl-redirect", "-m", "immediate"]
    restart += [version, cluster, "restart"]
    try:
        subprocess.run(restart, check=True, capture_output=True, timeout=60)
    finally:
        # whatever happened, leave the shared server running for everyone else
        try:
            _wait_until_reachable(url, seconds=10.0)
        except psycopg.OperationalError:
            start = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"]
            subprocess.run(start, check=False, capture_output=True, timeout=60)
            _wait_until_reachable(url)
    # the same handle goes on: its idle connections died with the server and are replaced
    assert queue.depth() == Depth(visible=49, in_flight=1, delayed=0, dead=0)
    queue.ack(queue.extend(held, 300.0))  # a lease taken before the restart is still held
    leased = []
    while batch := queue.lease(10, 300.0):
        leased += [le.message_id for le in batch]
        for lease in batch:
            queue.ack(lease)
    assert sorted(leased) == sorted(set(ids) - {held.message_id})
    queue.close()


def test_killed_connections_are_replaced_without_an_error(url: str, name: str) -> None:
    app = f"tr-{uuid.uuid4().hex[:8]}"
    queue = open_queue(f"{url}?application_name={app}", name)
    queue.publish(_messages("a"))
    assert _backends(url, app) == 1
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )
    assert [le.message_id for le in queue.lease(5, 30.0)] == ["a"]
    queue.close()
    assert _backends(url, app) == 0


def test_lease_skips_rows_another_transaction_holds(url: str, name: str) -> None:
    queue = open_queue(url, name)
    queue.publish(_messages("locked", "free"))
    with psycopg.connect(url) as other:  # a transaction stuck while holding one row
        other.execute(
            f"SELECT id FROM {TABLE} WHERE queue = %s AND id = 'locked' FOR UPDATE", (name,)
        )
        started = time.monotonic()
        assert [le.message_id for le in queue.lease(5, 30.0)] == ["free"]
        assert time.monotonic() - started < 5.0  # it did not wait for the lock
        other.rollback()
    assert [le.message_id for le in queue.lease(5, 30.0)] == ["locked"]
    queue.close()


def test_threads_lease_extend_and_ack_with_a_bounded_pool(url: str, name: str) -> None:
    app = f"tr-{uuid.uuid4().hex[:8]}"
    queue = open_queue(f"{url}?application_name={app}&pool_size=2", name)
    queue.publish(_messages(*(f"m{i}" for i in range(40))))
    errors: list[BaseException] = []

    def work() -> None:  # lease here, heartbeat and ack from two more short-lived threads
        try:
            for lease in queue.lease(2, 30.0):
                heartbeat = threading.Thread(target=queue.extend, args=(lease, 60.0))
                heartbeat.start()
                heartbeat.join()
                acker = threading.Thread(target=queue.ack, args=(lease,))
                acker.start()
                acker.join()
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert queue.depth().total == 0
    assert _backends(url, app) <= 2  # 60 threads came and went; only the pool stays open
    queue.close()


def test_equal_publish_times_lease_in_publish_order(url: str, name: str, clock: FakeClock) -> None:
    queue = open_queue(url, name, clock=clock)
    ids = [f"r{i}" for i in (5, 3, 9, 1, 7)]
    queue.publish([Message(i, b"") for i in ids])
    assert [le.message_id for le in queue.lease(5, 30.0)] == ids
    queue.close()


def test_concurrent_openers_create_the_table_once(url: str) -> None:
    schema = f"trq_{uuid.uuid4().hex[:10]}"
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            open_queue(f"{url}?schema={schema}", f"q{i}").close()
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        with psycopg.connect(url, autocommit=True) as conn:
            persistence = conn.execute(
                "SELECT c.relpersistence FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, TABLE),
            ).fetchone()
        assert persistence == ("p",)  # a logged table: its rows survive a crash
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_every_connection_commits_synchronously_unless_told_otherwise(url: str) -> None:
    for query, expected in (("", "on"), ("?synchronous_commit=off", "off")):
        pool = ConnectionPool(parse_url(url + query))
        with pool.transaction() as conn:
            row = conn.execute("SHOW synchronous_commit").fetchone()
        pool.close()
        assert row == (expected,)


def test_store_url_form_and_libpq_options_are_accepted(url: str, name: str) -> None:
    queue = open_queue(
        url.replace("postgresql://", "postgresql+psycopg://") + "?sslmode=disable", name
    )
    assert isinstance(queue, PostgresQueue)
    assert queue.publish(_messages("a")) == 1
    queue.close()


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("?bogus=1", "libpq parameter"),
        ("?pool_size=0", "pool_size"),
        ("?synchronous_commit=sometimes", "synchronous_commit"),
    ],
)
def test_bad_url_options_are_rejected_before_connecting(query: str, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        open_queue(f"postgresql://u:secret@127.0.0.1:5432/db{query}", "q")


def test_unreachable_server_is_retryable_and_named_without_password() -> None:
    bad = "postgresql://someone:secret@127.0.0.1:9/db?connect_timeout=2"
    with pytest.raises(RetryableError, match=r"127\.0\.0\.1:9/db") as caught:
        open_queue(bad, "q")
    assert "secret" not in str(caught.value)
    assert "secret" not in repr(parse_url(bad))


def test_missing_database_is_a_configuration_error(url: str) -> None:
    missing = url.rsplit("/", 1)[0] + f"/no_such_db_{uuid.uuid4().hex[:6]}"
    with pytest.raises(InvalidRequestError, match="create the database"):
        open_queue(missing, "q")


def test_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    with pytest.raises(InvalidRequestError, match=r"tilerunner\[postgres\]"):
        open_queue("postgresql://u@127.0.0.1:5432/db", "q")


def test_lease_walks_the_index_in_order(url: str, name: str) -> None:
    queue = open_queue(url, name)
    queue.publish(_messages(*(f"m{i}" for i in range(2000))))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {TABLE}")
        plan = "\n".join(
            str(row[0])
            for row in conn.execute(
                f"EXPLAIN SELECT id FROM {TABLE} WHERE queue = %s AND state <> 'dead' "
                "AND visible_at <= %s AND NOT (state = 'leased' AND attempts >= 3) "
                "ORDER BY visible_at, seq LIMIT 10 FOR UPDATE SKIP LOCKED",
                (name, 2e9),
            )
        )
    queue.close()
    assert f"{TABLE}_available" in plan and "Sort" not in plan
