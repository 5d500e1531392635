"""Choosing an engine by URL, and the memory fake's sharing rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilerunner.broker import ENGINES, Message, Queue, open_queue
from tilerunner.broker.engines import load_engine
from tilerunner.broker.memory import MemoryQueue
from tilerunner.broker.sqlite import SQLiteQueue
from tilerunner.errors import InvalidRequestError, UnknownNameError


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    MemoryQueue.reset_all()


def test_url_scheme_picks_the_engine(tmp_path: Path) -> None:
    memory = open_queue("memory://", "regions")
    sqlite = open_queue(f"sqlite:///{tmp_path / 'state.db'}", "regions")
    driver_suffix = open_queue(f"sqlite+pysqlite:///{tmp_path / 'state.db'}", "regions")
    assert isinstance(memory, MemoryQueue)
    assert isinstance(sqlite, SQLiteQueue) and isinstance(driver_suffix, SQLiteQueue)
    assert all(isinstance(q, Queue) for q in (memory, sqlite, driver_suffix))
    assert (sqlite.name, sqlite.max_attempts) == ("regions", 3)
    sqlite.close()
    driver_suffix.close()


def test_every_registered_engine_loads() -> None:
    for scheme in ENGINES:
        assert hasattr(load_engine(scheme), "from_url")


def test_misspelt_scheme_suggests_the_known_one() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'sqlite'") as info:
        open_queue("sqlit:///state.db", "regions")
    assert info.value.kind == "queue engine" and "memory" in info.value.known


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("state.db", "no scheme"),
        ("://state.db", "empty scheme"),
        ("memory://somewhere", "takes no host"),
        ("sqlite://host/state.db", "host part"),
        ("sqlite:///state.db?journal=off", "unknown sqlite queue option"),
        ("sqlite:///state.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:////no/such/directory/state.db", "directory does not exist"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        open_queue(url, "regions")


@pytest.mark.parametrize("name", ["", "has space", "a.b", "x" * 81])
def test_queue_names_must_work_on_every_engine(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="queue name"):
        open_queue("memory://", name)


def test_max_attempts_must_allow_a_delivery() -> None:
    with pytest.raises(InvalidRequestError, match="max_attempts"):
        open_queue("memory://", "regions", max_attempts=0)


def test_memory_queues_are_shared_by_name_within_the_process() -> None:
    first = open_queue("memory://", "regions")
    second = open_queue("memory://", "regions")
    other = open_queue("memory://", "other")
    first.publish([Message("a", b"1")])
    (lease,) = second.lease(1, 30.0)
    assert lease.message_id == "a"
    assert other.depth().total == 0
    first.ack(lease)  # a lease taken through one handle can be acked through another
    assert second.depth().total == 0


def test_memory_reset_all_forgets_every_queue() -> None:
    open_queue("memory://", "regions").publish([Message("a", b"1")])
    MemoryQueue.reset_all()
    assert open_queue("memory://", "regions").depth().total == 0
