"""``tilerunner watch`` as a user runs it: a folder, a bad template, and a watched object's job
run by a worker to ``succeeded`` with its outputs written."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tr_cli import cli_env, features, tilerunner
from tr_watch import Bucket, taken, taken_keys

from tilerunner.cli.main import cli
from tilerunner.jobs import JobState
from tilerunner.store import open_store


def test_a_folder_once_takes_its_whole_files_then_nothing_again(
    tmp_path: Path, template: Path, shared_data: Path
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "day2").mkdir(parents=True)
    shutil.copy(shared_data / "test_tiled.tif", inbox / "a.tif")
    shutil.copy(shared_data / "cogeo.tif", inbox / "day2" / "b.tif")
    (inbox / "notes.txt").write_text("not imagery")
    (inbox / "c.tif.part").write_bytes(b"still uploading")
    store = f"sqlite:///{tmp_path / 'state.db'}"
    args = ["watch", str(inbox), "--job", str(template), "--store", store, "--suffix", ".tif",
            "--settle-seconds", "0.2", "--once"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert taken_keys(store) == ["a.tif", "day2/b.tif"]
    jobs = open_store(store).list_jobs()
    assert {(j.status, j.images_total) for j in jobs} == {(JobState.QUEUED, 1)}
    assert sorted(first.output.split()[::2]) == sorted(job.id for job in jobs)  # a line per job
    status = CliRunner().invoke(cli, ["status", "--store", store])
    assert all(job.id in status.output for job in jobs)  # `status` lists watched jobs

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert again.output == "" and len(taken(store)) == 2


def test_a_bad_template_fails_before_anything_is_watched(tmp_path: Path) -> None:
    template = tmp_path / "bad.json"
    template.write_text(json.dumps({"pipeline": [{"task": "detect", "model": "det"}], "x": 1}))
    (tmp_path / "inbox").mkdir()
    done = tilerunner("watch", "inbox", "--job", str(template), "--store",
                      f"sqlite:///{tmp_path / 'state.db'}", "--once", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: --job template {str(template)!r}: invalid job document: x: unknown field; "
        "remove it or check its spelling"
    ]
    assert not (tmp_path / "state.db").exists()


@pytest.mark.slow
@pytest.mark.services
def test_a_watched_object_runs_through_a_worker_to_succeeded(
    tmp_path: Path, bucket: Bucket, shared_data: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    template = tmp_path / "trees.json"
    template.write_text(json.dumps({
        "name": "trees",
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 256, "overlap": 32},
        "outputs": [{"uri": f"{out}/{{stem}}.geojson"}],
    }))  # fmt: skip
    store = f"sqlite:///{tmp_path / 'state.db'}"
    env = cli_env(TILERUNNER_S3_ENDPOINT_URL=bucket.endpoint)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tilerunner", "watch", f"s3://{bucket.name}/drop/", "--job",
         str(template), "--store", store, "--poll-seconds", "0.2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        bucket.put("drop/OSBS_029.tif", (shared_data / "OSBS_029.tif").read_bytes())
        assert watcher.stdout is not None
        job_id = watcher.stdout.readline().split()[0]  # the watcher's line for the new job
        worker = subprocess.run(
            [sys.executable, "-m", "tilerunner", "worker", "--store", store,
             "--model", "det=tilerunner.testing.models:TruthDetector",
             "--model-param", f"truth={shared_data / 'OSBS_029.csv'}", "--until-job", job_id],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-2000:]
        deadline = time.monotonic() + 120  # the watcher aggregates its jobs
        while (job := open_store(store).get_job(job_id)) is None or job.status not in (
            JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED
        ):  # fmt: skip
            assert time.monotonic() < deadline, f"job still {job and job.status}"
            time.sleep(0.1)
        assert job.status is JobState.SUCCEEDED, job.error
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=60) == 0
    found = features(out / "OSBS_029.geojson")
    assert len(found) > 0
    assert {f["properties"]["image"] for f in found} == {"drop/OSBS_029.tif"}
    assert all(f["geometry"] is not None for f in found)  # georeferenced from the S3 object
