"""Rolling jobs through the real watch loop (a folder, the SQLite store and queue): jobs of N
objects or S seconds, and a half-full batch that survives a new watcher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tr_clock import FakeClock
from tr_watch import recorded

from tilerunner.broker import open_queue
from tilerunner.jobs import JobState
from tilerunner.store import open_store
from tilerunner.watch import JobTemplate, KeyFilter, RollingPolicy, Watcher
from tilerunner.watch.directory import DirectoryScan


def test_rolling_jobs_by_count_then_by_age_across_a_new_watcher(
    tmp_path: Path, shared_data: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(5):
        shutil.copy(shared_data / "test_tiled.tif", inbox / f"{i}.tif")
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"pipeline": [{"task": "detect", "model": "det"}]}))
    template = JobTemplate.load(path, rolling=True)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    clock = FakeClock(now=2e9)  # every file was written long before

    def watcher() -> Watcher:
        scan = DirectoryScan(inbox, KeyFilter((".tif",)), settle_seconds=1.0, clock=clock)
        return Watcher(
            store, lambda name: open_queue(url, name), scan, template,
            RollingPolicy(every=2, seconds=60.0), clock=clock,
        )  # fmt: skip

    first = watcher().poll()
    assert (first.recorded, len(first.jobs)) == (5, 2)
    assert [o.key for o in store.waiting_objects(inbox.resolve().as_posix())] == ["4.tif"]

    clock.advance(59.0)  # a new watcher: the half-full batch is still waiting in the store
    assert watcher().poll().jobs == []
    clock.advance(1.0)
    last = watcher().poll()
    assert len(last.jobs) == 1 and last.recorded == 0
    rows = recorded(store)
    assert sorted(key for key, _, _ in rows) == [f"{i}.tif" for i in range(5)]
    sizes = sorted(sum(1 for *_, job in rows if job == j) for j in {job for *_, job in rows})
    assert sizes == [1, 2, 2]
    jobs = store.list_jobs()
    assert {j.status for j in jobs} == {JobState.QUEUED}  # planned by the watcher
    assert sorted(j.images_total for j in jobs) == [1, 2, 2]
