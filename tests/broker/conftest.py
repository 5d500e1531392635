"""Engine fixtures for the broker tests.

The conformance suite runs once per entry of ``ENGINE_CASES``. To put a new engine through it,
append one ``EngineCase``: how to build its URL, whether another process sees the same queue,
and any marks (e.g. ``pytest.mark.services`` for an engine that needs a running server).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tilerunner.broker import Queue, open_queue
from tilerunner.broker.contract import Clock
from tilerunner.broker.memory import MemoryQueue


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class EngineCase:
    """One engine under test."""

    id: str
    url: Callable[[Path], str]  # tmp_path -> queue URL
    # True when a second process (and a reopened handle) sees the same messages.
    cross_process: bool = True
    reset: Callable[[], None] = _nothing
    marks: tuple[pytest.MarkDecorator, ...] = ()
    # False for engines whose server keeps time (NATS, SQS, RabbitMQ): the suite then sleeps.
    fake_clock: bool = True
    # Seconds per tick of the suite's timeline; real-time engines use a short one.
    tick: float = 1.0
    # Slack for comparing a lease's expires_at with the expected time (real-time engines).
    tolerance: float = 1e-9


ENGINE_CASES: list[EngineCase] = [
    EngineCase("memory", lambda tmp: "memory://", cross_process=False, reset=MemoryQueue.reset_all),
    EngineCase("sqlite", lambda tmp: f"sqlite:///{tmp / 'state.db'}"),
]


class FakeClock:
    """A clock the test moves by hand, so expiry is tested without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Engine:
    """An engine bound to one test: a URL, a queue name unique to the test, and an opener."""

    case: EngineCase
    url: str
    name: str
    clock: FakeClock
    opened: list[Queue] = field(default_factory=list)

    @property
    def cross_process(self) -> bool:
        return self.case.cross_process

    def t(self, ticks: float) -> float:
        """A duration of ``ticks`` on this engine's timeline, in seconds."""
        return ticks * self.case.tick

    def advance(self, ticks: float) -> None:
        """Let ``ticks`` pass: move the fake clock, or sleep for a real-time engine."""
        if self.case.fake_clock:
            self.clock.advance(self.t(ticks))
        else:
            time.sleep(self.t(ticks))

    def now(self) -> float:
        return self.clock.now if self.case.fake_clock else time.time()

    def expires_about(self, at: float) -> object:
        """Comparable with a lease's ``expires_at``: exact on a fake clock, approximate else."""
        return pytest.approx(at, abs=max(self.case.tolerance, 1e-9))

    def open(self, *, max_attempts: int = 3, clock: Clock | None = None) -> Queue:
        """Open the test's queue; closed (and purged) when the test ends."""
        if not self.case.fake_clock:
            clock = time.time
        queue = open_queue(
            self.url, self.name, max_attempts=max_attempts, clock=clock or self.clock
        )
        self.opened.append(queue)
        return queue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[pytest.param(case, id=case.id, marks=case.marks) for case in ENGINE_CASES])
def engine(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Engine]:
    case: EngineCase = request.param
    case.reset()
    bound = Engine(case, case.url(tmp_path), f"t-{uuid.uuid4().hex[:12]}", clock)
    yield bound
    # a shared server keeps queues between tests: leave nothing behind
    cleaner = open_queue(bound.url, bound.name, clock=clock if case.fake_clock else time.time)
    cleaner.purge()
    cleaner.close()
    for queue in bound.opened:
        queue.close()
    case.reset()
