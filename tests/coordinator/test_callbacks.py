"""Signed callbacks through the outbox, against a real HTTP receiver on loopback.

The receiver is a ``ThreadingHTTPServer`` that records every request and answers from a
script. The store runs on a fake clock, so a retry becomes due by moving the clock, never by
sleeping; deliveries run on the dispatcher's threads and ``drain`` waits for them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tr_cli import tilerunner
from tr_clock import FakeClock
from tr_scenes import make_scene

from tilerunner.broker import open_queue
from tilerunner.broker.memory import MemoryQueue
from tilerunner.coordinator import Coordinator, job_view, submit_job
from tilerunner.coordinator.callbacks import Backoff, CallbackDispatcher, verify_signature
from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JobState, parse_job, queue_name
from tilerunner.security.urls import UrlPolicy
from tilerunner.store import FeatureRows, Store, open_engine, open_store

SECRET = "s3cret-s3cret-s3cret"
LOOPBACK = UrlPolicy(allowed_hosts=("127.0.0.1",))


# ----------------------------------------------------------------------------- receiver
@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def job(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def signed_with(self, secret: str) -> bool:
        stamp = self.headers["X-Tilerunner-Timestamp"]
        return verify_signature(secret, stamp, self.body, self.headers["X-Tilerunner-Signature"])


class Receiver:
    """Records requests; answers the statuses in ``script`` in turn, then 200."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.script: list[int] = []
        self.hold: threading.Event | None = None  # set: requests wait until it is set
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # where a followed redirect would land
                self.do_POST()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.hits.append(Hit(self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", f"{receiver.base}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    bound = Receiver()
    yield bound
    bound.close()


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True)
def _fresh_memory_queues() -> Iterator[None]:
    MemoryQueue.reset_all()
    yield
    MemoryQueue.reset_all()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Store:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_store(url).engine.dispose()  # migrate
    return Store(open_engine(url), clock=clock)


@pytest.fixture
def tif(tmp_path: Path) -> Path:
    path: Path = make_scene(tmp_path, width=400, height=300, n_boxes=5)[0]
    return path  # tiles of 128 px with overlap 48: 5 x 4 tiles; regions of 2 x 2: 6


def _queue(_name: str) -> Any:
    return open_queue("memory://", queue_name("det"))


def coordinator(
    store: Store, *, attempts: int = 8, policy: UrlPolicy = LOOPBACK, timeout: float = 5.0
) -> Coordinator:
    callbacks = CallbackDispatcher(
        store, policy=policy, timeout=timeout, max_attempts=attempts,
        backoff=Backoff(base=1.0, cap=1.0), rng=random.Random(7),
    )  # fmt: skip
    return Coordinator(store, _queue, callbacks=callbacks, progress_seconds=0, sweep_seconds=1e9)


def submit(store: Store, tif: Path, callback: dict[str, Any] | None, job_id: str = "j") -> str:
    document: dict[str, Any] = {
        "sources": [str(tif)],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 48, "region_size": 160},
        "callback": callback,
    }
    submit_job(store, _queue, parse_job(document), job_id=job_id)
    return job_id


def complete(store: Store, job_id: str, n: int | None = None) -> None:
    """Complete ``n`` pending regions (all if None) with no features."""
    for image_idx, region_idx in store.pending_regions(job_id)[:n]:
        assert store.complete_region(job_id, image_idx, region_idx, FeatureRows(), "w")


def step(coord: Coordinator) -> None:
    coord.run_once()
    assert coord.callbacks.drain(30), "a callback delivery did not finish"


def kinds(store: Store, job_id: str) -> list[str]:
    return [str(e["kind"]) for e in store.events(job_id)]


def messages(store: Store, job_id: str, kind: str) -> list[str]:
    return [str(e["message"]) for e in store.events(job_id) if e["kind"] == kind]


# -------------------------------------------------------------------------------- tests
def test_receiver_failing_twice_gets_the_job_once_after_the_retries(
    store: Store, clock: FakeClock, tif: Path, receiver: Receiver
) -> None:
    receiver.script = [500, 500]
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    coord = coordinator(store)
    complete(store, job_id)
    step(coord)  # aggregates, then the first attempt
    assert [h.status for h in receiver.hits] == [500]
    step(coord)
    assert len(receiver.hits) == 1, "retried before the backoff was over"
    for expected in (2, 3):
        clock.now += 2.0
        step(coord)
        assert len(receiver.hits) == expected
    clock.now += 3600.0
    step(coord)
    step(coord)
    assert [h.status for h in receiver.hits] == [500, 500, 200]  # one success, then nothing
    assert {h.headers["X-Tilerunner-Event"] for h in receiver.hits} == {"job.succeeded"}
    assert all(h.job["id"] == job_id and h.job["status"] == "succeeded" for h in receiver.hits)
    assert all(h.signed_with(SECRET) for h in receiver.hits)  # each attempt signed anew
    attempts = messages(store, job_id, "callback_attempt")
    assert len(attempts) == 3
    for n, (attempt, outcome) in enumerate(zip(attempts, ("500", "500", "200"), strict=True), 1):
        assert f"attempt {n} to 127.0.0.1" in attempt and f"HTTP {outcome}" in attempt
    assert "callback_failed" not in kinds(store, job_id)
    assert not store.pending_outbox(job_id)


def test_signature_verifies_with_the_secret_and_fails_with_another(
    store: Store, tif: Path, receiver: Receiver
) -> None:
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    assert store.set_job_state(job_id, JobState.CANCELLED)
    step(coordinator(store))
    [hit] = receiver.hits
    stamp, signature = hit.headers["X-Tilerunner-Timestamp"], hit.headers["X-Tilerunner-Signature"]
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["X-Tilerunner-Event"] == "job.cancelled"
    assert signature.startswith("sha256=")
    assert abs(int(stamp) - time.time()) < 60
    assert verify_signature(SECRET, stamp, hit.body, signature)
    assert not verify_signature("another-secret-of-16+", stamp, hit.body, signature)
    assert not verify_signature(SECRET, stamp, hit.body + b" ", signature)
    assert not verify_signature(SECRET, int(stamp) + 1, hit.body, signature)
    assert not verify_signature(SECRET, stamp, hit.body, signature, now=int(stamp) + 301)
    assert verify_signature(SECRET, stamp, hit.body, signature, now=int(stamp) + 299)
    assert hit.job["status"] == "cancelled"
    assert hit.job["spec"]["callback"]["secret"] == ""
    assert SECRET.encode() not in hit.body


def test_a_restarted_coordinator_delivers_what_the_last_one_left(
    store: Store, clock: FakeClock, tif: Path, receiver: Receiver
) -> None:
    receiver.script = [500]
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    assert store.set_job_state(job_id, JobState.CANCELLED)
    first = coordinator(store)
    step(first)
    first.close()
    assert [h.status for h in receiver.hits] == [500]
    # a new process: a new store object and a new coordinator on the same database
    again = Store(open_engine(str(store.engine.url)), clock=clock)
    clock.now += 2.0
    step(coordinator(again))
    assert [h.status for h in receiver.hits] == [500, 200]
    assert len(messages(store, job_id, "callback_attempt")) == 2


def test_a_delivery_held_by_a_dead_coordinator_is_taken_over_after_its_lease(
    store: Store, clock: FakeClock, tif: Path, receiver: Receiver
) -> None:
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    assert store.set_job_state(job_id, JobState.FAILED, error="nothing planned")
    [held] = store.claim_callbacks("dead-coordinator", lease_seconds=60.0, limit=10)
    assert held.kind == "callback:failed"
    coord = coordinator(store)
    step(coord)
    assert receiver.hits == []  # the claim is still live
    clock.now += 61.0
    step(coord)
    assert [h.headers["X-Tilerunner-Event"] for h in receiver.hits] == ["job.failed"]


def test_milestones_fire_once_each_then_the_final_state(
    store: Store, tif: Path, receiver: Receiver
) -> None:
    milestones = [0.75, 0.25, 0.5]  # stored sorted
    callback = {"url": receiver.url, "secret": SECRET, "progress": milestones}
    job_id = submit(store, tif, callback)
    coord = coordinator(store)
    step(coord)
    assert receiver.hits == []  # nothing done yet
    while store.pending_regions(job_id):
        complete(store, job_id, 1)
        counts = store.counts(job_id)
        step(coord)
        step(coord)  # checking again fires nothing twice
        if counts.regions_finished < counts.regions_total:
            fired = sorted(float(h.headers["X-Tilerunner-Milestone"]) for h in receiver.hits)
            done = counts.tiles_done / counts.tiles_total
            assert fired == [f for f in sorted(milestones) if f <= done]
    events = [h.headers["X-Tilerunner-Event"] for h in receiver.hits]
    assert events == ["job.progress"] * 3 + ["job.succeeded"]
    assert [h.headers.get("X-Tilerunner-Milestone") for h in receiver.hits[:3]] == [
        "0.25",
        "0.5",
        "0.75",
    ]
    assert all(h.job["status"] == "running" for h in receiver.hits[:3])
    assert all(hit.signed_with(SECRET) for hit in receiver.hits)


def test_redirects_are_not_followed_and_delivery_gives_up_after_max_attempts(
    store: Store, clock: FakeClock, tif: Path, receiver: Receiver
) -> None:
    receiver.script = [302, 503]
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    assert store.set_job_state(job_id, JobState.CANCELLED)
    coord = coordinator(store, attempts=2)
    for _ in range(4):
        step(coord)
        clock.now += 2.0
    assert [(h.path, h.status) for h in receiver.hits] == [("/hook", 302), ("/hook", 503)]
    assert len(messages(store, job_id, "callback_attempt")) == 2
    [failed] = messages(store, job_id, "callback_failed")
    assert "after 2 attempts" in failed and "HTTP 503" in failed
    assert not store.pending_outbox(job_id)


def test_a_refused_url_is_a_permanent_failure_without_a_request(
    store: Store, tif: Path, receiver: Receiver
) -> None:
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    assert store.set_job_state(job_id, JobState.CANCELLED)
    step(coordinator(store, policy=UrlPolicy()))  # the default refuses loopback
    assert receiver.hits == []
    [failed] = messages(store, job_id, "callback_failed")
    assert "refused" in failed and "loopback" in failed
    assert "callback_attempt" not in kinds(store, job_id)
    assert not store.pending_outbox(job_id)


def test_a_slow_receiver_holds_up_neither_aggregation_nor_the_loop(
    store: Store, tif: Path, receiver: Receiver
) -> None:
    receiver.hold = threading.Event()
    slow = submit(store, tif, {"url": receiver.url, "secret": SECRET}, job_id="slow")
    other = submit(store, tif, None, job_id="other")
    assert store.set_job_state(slow, JobState.CANCELLED)
    complete(store, other)
    coord = coordinator(store)
    coord.run_once()  # starts the held delivery, then aggregates the other job
    assert receiver.arrived.wait(10)
    job = store.get_job(other)
    assert job is not None and job.status == JobState.SUCCEEDED
    assert receiver.hits == [] and not coord.callbacks.drain(0.1)  # still held
    receiver.hold.set()
    assert coord.callbacks.drain(30)
    assert [h.headers["X-Tilerunner-Event"] for h in receiver.hits] == ["job.cancelled"]


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    store: Store, tif: Path, receiver: Receiver
) -> None:
    receiver.hold = threading.Event()
    job_id = submit(store, tif, {"url": receiver.url, "secret": SECRET})
    assert store.set_job_state(job_id, JobState.CANCELLED)
    step(coordinator(store, timeout=0.3))
    [attempt] = messages(store, job_id, "callback_attempt")
    assert "attempt 1 to 127.0.0.1" in attempt and "Timeout" in attempt
    assert store.pending_outbox(job_id)  # to be retried


# ------------------------------------------------------------------- document and views
@pytest.mark.parametrize(
    ("callback", "message"),
    [
        ({"url": "https://hooks.example/x"}, "at least 16 characters"),
        ({"url": "https://hooks.example/x", "secret": "short"}, "at least 16 characters"),
        ({"url": "https://h.example/x", "secret": SECRET, "progress": [0.5, 1.0]}, "between 0"),
        ({"url": "https://h.example/x", "secret": SECRET, "progress": []}, "between 0"),
        ({"url": "https://h.example/x", "secret": SECRET, "style": "zapier"}, "callback.style"),
    ],
)
def test_callback_documents_that_cannot_be_delivered_are_refused(
    callback: dict[str, Any], message: str
) -> None:
    document = {"sources": ["a.tif"], "pipeline": [{"task": "detect", "model": "m"}]}
    with pytest.raises(InvalidRequestError, match=message) as refused:
        parse_job({**document, "callback": callback})
    assert "callback." in str(refused.value)


def test_the_secret_and_token_are_never_shown_back(store: Store, tif: Path) -> None:
    callback = {"url": "https://hooks.example/x", "secret": SECRET, "token": "tok-123456",
                "progress": [0.5, 0.25, 0.5]}  # fmt: skip
    job_id = submit(store, tif, callback)
    spec = parse_job(json.dumps({"sources": ["a"], "pipeline": [{"task": "detect", "model": "m"}],
                                 "callback": callback}))  # fmt: skip
    assert spec.callback is not None and spec.callback.progress == [0.25, 0.5]
    assert spec.public_dump()["callback"] == {
        "url": "https://hooks.example/x", "secret": "", "progress": [0.25, 0.5],
        "style": "tilerunner", "token": "",
    }  # fmt: skip
    assert spec.model_dump()["callback"]["secret"] == SECRET  # stored for signing
    assert SECRET not in repr(spec)
    view = json.dumps(job_view(store, job_id))
    assert SECRET not in view and "tok-123456" not in view
    url = str(store.engine.url)
    shown = tilerunner("status", job_id, "--json", "--store", url, cwd=Path(url[10:]).parent)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["spec"]["callback"]["secret"] == ""
    assert SECRET not in shown.stdout and "tok-123456" not in shown.stdout


def test_an_antenna_callback_carries_the_detections_and_the_token(
    store: Store, tif: Path, receiver: Receiver
) -> None:
    callback = {"url": receiver.url, "secret": SECRET, "style": "antenna", "token": "tok-123"}
    job_id = submit(store, tif, callback)
    coord = coordinator(store)
    pending = store.pending_regions(job_id)
    boxes = FeatureRows(
        boxes=np.array([[10.0, 10.0, 30.0, 30.0]]), scores=np.array([0.9]),
        class_ids=np.array([0]), labels=["moth"],
    )  # fmt: skip
    assert store.complete_region(job_id, *pending[0], boxes, "w")
    complete(store, job_id)
    step(coord)
    [hit] = receiver.hits
    assert hit.headers["Authorization"] == "Token tok-123"
    assert "X-Tilerunner-Signature" not in hit.headers  # Antenna authenticates by its token
    result = json.loads(hit.body)
    [detection] = result["detections"]
    assert detection["classifications"][0]["classification"] == "moth"
    assert detection["bbox"] == {"x1": 10.0, "y1": 10.0, "x2": 30.0, "y2": 30.0}
