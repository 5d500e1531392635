"""A watch that submits to a real ``tilerunner serve`` (``--api``): each object once, also when
the answer to a POST was lost, and a refusal of the server stops the watch with its reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from tr_api import ApiServer, wait_for
from tr_watch import recorded

from tilerunner.errors import InvalidRequestError
from tilerunner.jobs import JobState
from tilerunner.store import open_store
from tilerunner.watch import JobTemplate, KeyFilter, Watcher, job_id_for
from tilerunner.watch.directory import DirectoryScan
from tilerunner.watch.remote import IDEMPOTENCY_HEADER, RemoteJobs


def _no_queue(name: str) -> None:
    raise AssertionError(f"a watch that submits to an API queues nothing itself ({name})")


@pytest.mark.slow
def test_remote_jobs_are_made_once_even_after_a_lost_answer(
    tmp_path: Path, template: Path, shared_data: Path
) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    for folder in (inbox, outside):
        folder.mkdir()
    for name in ("a.tif", "b.tif", "c.tif"):
        shutil.copy(shared_data / "test_tiled.tif", inbox / name)
    shutil.copy(shared_data / "test_tiled.tif", outside / "d.tif")
    server_store = f"sqlite:///{tmp_path / 'server.db'}"
    api = ApiServer(server_store, tmp_path, env={"TILERUNNER_ALLOWED_LOCAL_ROOTS": str(inbox)})
    api.start("--insecure")
    try:
        local = open_store(f"sqlite:///{tmp_path / 'watch.db'}")
        job_template = JobTemplate.load(template)
        scan = DirectoryScan(inbox, KeyFilter(), settle_seconds=0.0)
        remote = RemoteJobs(local, scan.name, job_template, api.url, "unused-with-insecure")

        # a watcher gave a.tif its job and POSTed it, and was killed before it noted the answer
        first = [o for o in scan.discover().objects if o.key == "a.tif"]
        local.record_objects(scan.name, first)
        job_id = job_id_for(scan.name, first)
        assert local.assign_objects(scan.name, job_id, first)
        document = job_template.spec_for(first, job_id).model_dump(mode="json")
        lost = httpx.post(f"{api.url}/v1/jobs", json=document,
                          headers={IDEMPOTENCY_HEADER: job_id}, timeout=30)  # fmt: skip
        assert lost.status_code == 202, lost.text

        watcher = Watcher(local, _no_queue, scan, job_template, remote=remote)
        look = watcher.poll()
        assert lost.json()["id"] in look.jobs and len(look.jobs) == 3  # a.tif POSTed again
        assert watcher.poll().jobs == []
        server = open_store(server_store)
        jobs = server.list_jobs()
        assert sorted(j.spec["sources"][0]["id"] for j in jobs) == ["a.tif", "b.tif", "c.tif"]
        assert all(job for *_, job in recorded(local))
        assert local.unsubmitted_jobs(scan.name) == {}
        wait_for(
            lambda: {j.status for j in server.list_jobs()} == {JobState.QUEUED},
            120, "serve's coordinator plans the submitted jobs",
        )  # fmt: skip

        refused = DirectoryScan(outside, KeyFilter(), settle_seconds=0.0)
        remote_out = RemoteJobs(local, refused.name, job_template, api.url, "unused")
        with pytest.raises(InvalidRequestError, match="refused the job"):
            Watcher(local, _no_queue, refused, job_template, remote=remote_out).poll()
        assert len(server.list_jobs()) == 3
    finally:
        api.kill()
