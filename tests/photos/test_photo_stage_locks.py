"""Two stages of one photo group completing at the same time on PostgreSQL: an earlier stage
redone (finding a new detection) and the later stage's item that was given the detections there
were before. Whichever transaction takes the group's later-stage row first, the other waits for
it, and the new detection ends up with the later-stage item pending for it: nothing is lost.

Each test holds one completion inside its transaction (a hook on its write of features), sees
the other one wait for it in ``pg_stat_activity``, then lets it commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, text
from tr_pg import pg_schema_url

from tilerunner.jobs.features import FeatureRows
from tilerunner.jobs.states import RegionState
from tilerunner.store import Store, open_store
from tilerunner.store import photo_stages as stages_module
from tilerunner.store.photo_crops import CropRun
from tilerunner.store.photo_stages import StageOutcome
from tilerunner.store.photos import PhotoPlan
from tilerunner.work.results import MemberOutcome

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

CONSUMERS = [(1, 0.5)]


@pytest.fixture
def store() -> Iterator[Store]:
    with pg_schema_url() as url:
        opened = open_store(url)
        yield opened
        opened.engine.dispose()


def _rows(found: list[tuple[int, str, str | None]]) -> FeatureRows:
    n = len(found)
    return FeatureRows(
        boxes=np.tile([1.0, 2.0, 11.0, 12.0], (n, 1)),
        scores=np.full(n, 0.9),
        class_ids=np.zeros(n, dtype=np.int64),
        labels=["thing"] * n,
        extra=[{"image": i, "key": k, "parent": p} for i, k, p in found],
    )


def _redo_both(store: Store) -> None:
    """Photo 0's detection has no result (the crop item failed); photo 1 could not be read:
    both put back, neither run yet."""
    document = {
        "sources": ["x"],
        "photos": {"group_size": 2},
        "pipeline": [
            {"task": "detect", "model": "det"},
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": 0.5},
        ],
    }
    store.accept_job("j", None, document)
    assert store.add_photo_plans("j", [PhotoPlan(i, f"p{i}", f"/p{i}.png", {}) for i in (0, 1)], 2)
    members = [MemberOutcome(0, 4, 4), MemberOutcome(1, error="/p1.png: not a photo")]
    store.complete_photo_stage("j", 0, 0, _rows([(0, "0.0.0", None)]), members,
                               group_size=2, consumers=CONSUMERS)  # fmt: skip
    assert store.fail_photo_stage("j", 0, 1, "model_error: broke", group_size=2)
    assert store.retry_photo_stage("j", 0, 1, group_size=2)
    assert store.reopen_failed_photos("j", 2) == {0: 1}


class Held:
    """Holds the completion run by thread ``name`` right after its write of features."""

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name, self.pid = name, 0
        self.inside, self.go = threading.Event(), threading.Event()
        real = stages_module.insert_features

        def insert(conn: Connection, *args: Any) -> None:
            real(conn, *args)
            if threading.current_thread().name == self.name:
                self.pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                self.inside.set()
                assert self.go.wait(60), "never let go"

        monkeypatch.setattr(stages_module, "insert_features", insert)


def _run(
    name: str, call: Callable[[], StageOutcome], out: dict[str, StageOutcome]
) -> threading.Thread:
    def target() -> None:
        out[name] = call()

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def _wait_until_blocked_by(store: Store, pid: int) -> None:
    """Poll until a backend waits for ``pid``'s locks (fails after 30 s)."""
    deadline = time.monotonic() + 30
    with store.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
                ),
                {"pid": pid},
            ).scalar_one()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.05)  # polling a condition, with a deadline
    raise AssertionError(f"nothing waited for backend {pid}")


def _redo() -> FeatureRows:
    return _rows([(1, "0.1.0", None)])


def _classified() -> FeatureRows:
    return _rows([(0, "1.0.0.0", "0.0.0")])


def _complete_redo(store: Store) -> StageOutcome:
    return store.complete_photo_stage("j", 0, 0, _redo(), [MemberOutcome(1, 4, 4)],
                                      group_size=2, consumers=CONSUMERS)  # fmt: skip


def _complete_crops(store: Store) -> StageOutcome:
    return store.complete_photo_stage("j", 0, 1, _classified(), [], group_size=2, consumers=[],
                                      crops=CropRun(0, 0.5, frozenset({"0.0.0"})))  # fmt: skip


def _still_to_crop(store: Store) -> list[str]:
    done = store.stage_cropped("j", 0, 2, 1)
    return [k for k, *_ in store.stage_features("j", 0, 2, 0, 0.5) if k not in done]


def test_a_crop_item_completing_during_the_redo_waits_and_goes_back_for_its_detection(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _redo_both(store)
    held = Held("redo", monkeypatch)
    out: dict[str, StageOutcome] = {}
    redo = _run("redo", lambda: _complete_redo(store), out)
    assert held.inside.wait(30)
    crops = _run("crops", lambda: _complete_crops(store), out)
    _wait_until_blocked_by(store, held.pid)  # the crop item waits for the group's row
    held.go.set()
    redo.join(60)
    crops.join(60)
    assert out["redo"].new_stages == ()  # the crop item was pending: it sees the detection
    assert out["crops"].again  # and goes back to pending for it
    assert store.region_state("j", 0, 1) is RegionState.PENDING
    assert _still_to_crop(store) == ["0.1.0"]


def test_a_redo_completing_during_the_crop_item_waits_and_reopens_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _redo_both(store)
    held = Held("crops", monkeypatch)
    out: dict[str, StageOutcome] = {}
    crops = _run("crops", lambda: _complete_crops(store), out)
    assert held.inside.wait(30)
    redo = _run("redo", lambda: _complete_redo(store), out)
    _wait_until_blocked_by(store, held.pid)  # the redo waits for the crop item's row
    held.go.set()
    crops.join(60)
    redo.join(60)
    assert not out["crops"].again  # it saw nothing new: done
    assert out["redo"].new_stages == (1,)  # the redo found it done and reopened it
    assert store.region_state("j", 0, 1) is RegionState.PENDING
    assert _still_to_crop(store) == ["0.1.0"]
