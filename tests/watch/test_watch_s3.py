"""``tilerunner watch s3://...`` against moto's server: listing and SQS notifications, each
object taken exactly once, also across a watcher killed with SIGKILL and started again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from tr_cli import cli_env, tilerunner
from tr_watch import Bucket, recorded, taken, taken_keys

from tilerunner.cli.main import cli
from tilerunner.jobs import JobState
from tilerunner.store import open_store

pytestmark = pytest.mark.services


def _env(bucket: Bucket) -> dict[str, str]:
    return {"TILERUNNER_S3_ENDPOINT_URL": bucket.endpoint}


def _queue_size(bucket: Bucket, queue_url: str) -> int:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=bucket.endpoint, region_name="us-east-1")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(found[n]) for n in names)


@pytest.mark.slow
def test_listing_takes_new_objects_and_new_versions_once(
    tmp_path: Path, bucket: Bucket, template: Path, shared_data: Path
) -> None:
    raster = (shared_data / "test_tiled.tif").read_bytes()
    for key in ("in/a.tif", "in/b.TIF", "in/deeper/c.tif", "in/notes.txt", "other/d.tif"):
        bucket.put(key, raster)
    store = f"sqlite:///{tmp_path / 'state.db'}"
    args = ["watch", f"s3://{bucket.name}/in/", "--job", str(template), "--store", store,
            "--suffix", ".tif", "--once"]  # fmt: skip
    first = tilerunner(*args, cwd=tmp_path, **_env(bucket))
    assert first.returncode == 0, first.stderr
    assert taken_keys(store) == ["in/a.tif", "in/b.TIF", "in/deeper/c.tif"]
    assert len(first.stdout.splitlines()) == 3  # a line per job
    jobs = open_store(store).list_jobs()
    assert {j.status for j in jobs} == {JobState.QUEUED}  # planned: read over S3
    assert {j.images_total for j in jobs} == {1}

    bucket.put("in/a.tif", raster + b"\0")  # new content at the same key: a new object
    bucket.put("in/e.tif", raster)
    again = tilerunner(*args, cwd=tmp_path, **_env(bucket))
    assert again.returncode == 0, again.stderr
    keys = taken_keys(store)
    assert keys == ["in/a.tif", "in/a.tif", "in/b.TIF", "in/deeper/c.tif", "in/e.tif"]
    assert len(again.stdout.splitlines()) == 2


@pytest.mark.slow
def test_notifications_take_each_event_once_and_are_deleted(
    tmp_path: Path, bucket: Bucket, notified: str, template: Path, shared_data: Path
) -> None:
    raster = (shared_data / "test_tiled.tif").read_bytes()
    # the queue holds S3's test event first; keys arrive URL-encoded
    for key in ("in/with space+plus.tif", "in/ü.tif", "in/notes.txt", "other/x.tif"):
        bucket.put(key, raster)
    store = f"sqlite:///{tmp_path / 'state.db'}"
    args = ["watch", f"s3://{bucket.name}/in/", "--job", str(template), "--store", store,
            "--sqs-queue", notified, "--suffix", ".tif", "--once"]  # fmt: skip
    done = tilerunner(*args, cwd=tmp_path, **_env(bucket))
    assert done.returncode == 0, done.stderr
    assert taken_keys(store) == ["in/with space+plus.tif", "in/ü.tif"]
    assert _queue_size(bucket, notified) == 0
    assert {j.status for j in open_store(store).list_jobs()} == {JobState.QUEUED}

    bucket.put("in/ü.tif", raster)  # the same content again: the same object, no new job
    again = tilerunner(*args, cwd=tmp_path, **_env(bucket))
    assert again.returncode == 0, again.stderr
    assert len(taken(store)) == 2
    assert _queue_size(bucket, notified) == 0


def _lines(output: str) -> list[str]:
    """The command's lines, without those the in-process moto server logs meanwhile."""
    return [line for line in output.splitlines() if " werkzeug: " not in line]


def test_a_missing_bucket_or_queue_fails_at_start_in_one_line(
    tmp_path: Path, bucket: Bucket, template: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'state.db'}"
    runner = CliRunner()
    env = _env(bucket)
    missing = runner.invoke(cli, ["watch", "s3://no-such-bucket/in/", "--job", str(template),
                                  "--store", store, "--once"], env=env)  # fmt: skip
    assert missing.exit_code == 1, missing.output
    assert _lines(missing.output) == [
        "error: cannot list s3://no-such-bucket/in/: NoSuchBucket; check the name and permissions"
    ]
    queue = f"{bucket.endpoint}/123456789012/no-such-queue"
    args = ["watch", f"s3://{bucket.name}/in/", "--job", str(template), "--sqs-queue", queue,
            "--store", store, "--once"]  # fmt: skip
    no_queue = runner.invoke(cli, args, env=env)
    assert no_queue.exit_code == 1
    [line] = _lines(no_queue.output)
    assert line.startswith(f"error: cannot read notifications from {queue}: ")
    assert not (tmp_path / "state.db").exists()  # nothing opened before the source answered


def _jobs_planned(db: Path) -> int:
    """Jobs the watcher made and planned (``queued``): what it gets done last in a look."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            query = "select count(*) from jobs where status = 'queued'"
            return int(conn.execute(query).fetchone()[0])
        except sqlite3.OperationalError:  # the watcher is still creating the schema
            return 0


def _start(args: list[str], cwd: Path, bucket: Bucket) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tilerunner", *args], cwd=cwd, env=cli_env(**_env(bucket)),
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for(condition: Callable[[], bool], watcher: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert watcher.poll() is None, "the watcher exited"
        assert time.monotonic() < deadline, f"no {what} after 120 s"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["listing", "notifications"])
def test_sigkill_mid_watch_then_restart_loses_and_doubles_nothing(
    tmp_path: Path, bucket: Bucket, template: Path, shared_data: Path, path: str,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    queue = request.getfixturevalue("notified") if path == "notifications" else None
    raster = (shared_data / "test_tiled.tif").read_bytes()
    keys = [f"in/{i:03d}.tif" for i in range(16)]
    for key in keys:
        bucket.put(key, raster)
    db = tmp_path / "state.db"
    args = ["watch", f"s3://{bucket.name}/in/", "--job", str(template),
            "--store", f"sqlite:///{db}", "--poll-seconds", "0.2"]  # fmt: skip
    if queue is not None:
        args += ["--sqs-queue", queue]
    watcher = _start(args, tmp_path, bucket)
    _wait_for(lambda: _jobs_planned(db) >= 2, watcher, "planned jobs")
    os.killpg(watcher.pid, signal.SIGKILL)
    watcher.wait()
    before = _jobs_planned(db)
    assert 2 <= before < len(keys), "the kill did not land mid-run"

    # messages the killed watcher received come back after the queue's visibility timeout
    watcher = _start(args, tmp_path, bucket)
    _wait_for(lambda: _jobs_planned(db) >= len(keys), watcher, "job for every object")
    if queue is not None:
        _wait_for(lambda: _queue_size(bucket, queue) == 0, watcher, "empty queue")
    watcher.send_signal(signal.SIGTERM)
    assert watcher.wait(timeout=60) == 0  # a clean stop

    made = taken(f"sqlite:///{db}")
    assert sorted(k for ks in made.values() for k in ks) == keys  # each object in one job
    store = open_store(f"sqlite:///{db}")
    assert {j.status for j in store.list_jobs(limit=100)} == {JobState.QUEUED}
    rows = recorded(store)
    assert len(rows) == len(keys) and all(job in made for _, _, job in rows)
