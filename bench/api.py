"""Work-protocol benchmark: what pulling work over HTTP costs next to a direct worker.

Part 1 (``round_trips``): lease + complete round trips per second, one client, through the
:class:`~tilerunner.work.WorkService` in the same process (``direct``) and through a real
``tilerunner serve`` with :class:`~tilerunner.work.http.HttpWorkSource` (``http``), on the same
kind of store (one SQLite file for state and queue) and the same job of one-tile regions with
no features, so what is measured is the protocol, not the model.

Part 2 (``tiles``): one ``tilerunner worker`` process, direct (``--store``) and then over HTTP
(``--api --token``), each draining its own job over the same seeded 16384 x 16384 JPEG COG
with the ONNX detector of ``bench/pipeline.py``; tiles per second from the first region to the
last, and the HTTP worker's throughput as a share of the direct worker's (target >= 0.95).

    .venv/bin/python bench/api.py --json bench-api.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import machine, make_scene
from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator import publish_pending
from tilerunner.jobs import parse_job
from tilerunner.jobs.features import FeatureRows
from tilerunner.store import ImagePlan, Store, open_store
from tilerunner.testing.onnx_models import make_detector_onnx
from tilerunner.work import WorkResult, WorkSource
from tilerunner.work.direct import DirectWorkSource
from tilerunner.work.http import HttpWorkSource
from tilerunner.work.service import WorkService, WorkServiceOptions

ENV = {**os.environ, "TILERUNNER_LEASE_SECONDS": "60"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tilerunner", *args], env=env or ENV, stdout=out, stderr=out,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _key(store_url: str, *scopes: str) -> str:
    args = [sys.executable, "-m", "tilerunner", "keys", "create", "--store", store_url]
    for scope in scopes:
        args += ["--scope", scope]
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, check=True)
    found = re.search(r"trk_[A-Za-z0-9_-]+", done.stdout)
    assert found, done.stdout
    return found.group(0)


def _serve(store_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = _cli("serve", "--store", store_url, "--port", str(port), log=workdir / "serve.log",
                env={**ENV, "TILERUNNER_ALLOWED_LOCAL_ROOTS": str(workdir)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"serve did not start; see {workdir / 'serve.log'}")


def _empty_job(store: Store, store_url: str, job_id: str, model: str, n: int) -> None:
    """A job of ``n`` one-tile regions over an image that is never read."""
    spec = parse_job({"sources": ["unused.tif"], "pipeline": [{"task": "detect", "model": model}],
                      "tiling": {"tile_size": 64, "overlap": 0, "region_size": 64}})  # fmt: skip
    plan = ImagePlan(0, "unused", "unused.tif", 64 * n, 64, 1, [1] * n)
    store.create_job(job_id, None, spec.model_dump(mode="json"), [plan])
    queues: dict[str, Queue] = {}
    publish_pending(store, lambda q: queues.setdefault(q, open_queue(store_url, q)), job_id)


def _drain(source: WorkSource, model: str, n: int) -> float:
    started = time.perf_counter()
    done = 0
    while done < n:
        for assignment in source.lease([model], 1, 0.0):
            source.complete(assignment, WorkResult(FeatureRows(), 1), "bench")
            done += 1
    return n / (time.perf_counter() - started)


def round_trips(workdir: Path, n: int) -> dict[str, float]:
    store_url = f"sqlite:///{workdir / 'round-trips.db'}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{workdir / 'round-trips.db'}{suffix}").unlink(missing_ok=True)
    store = open_store(store_url)
    queues: dict[str, Queue] = {}
    service = WorkService(store, lambda q: queues.setdefault(q, open_queue(store_url, q)),
                          WorkServiceOptions(lease_seconds=60))  # fmt: skip
    _empty_job(store, store_url, "direct", "rt-direct", n)
    direct = _drain(DirectWorkSource(service), "rt-direct", n)
    _empty_job(store, store_url, "http", "rt-http", n)
    proc, url = _serve(store_url, workdir)
    try:
        http = _drain(HttpWorkSource(url, _key(store_url, "worker")), "rt-http", n)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"direct_per_second": direct, "http_per_second": http, "http_share": http / direct}


def _worker_tiles(store: Store, job_id: str, args: list[str], workdir: Path) -> dict[str, float]:
    proc = _cli("worker", *args, "--until-job", job_id, "--batch-size", "8",
                log=workdir / "workers.log")  # fmt: skip
    first = None
    total = store.counts(job_id)
    while proc.poll() is None:
        counts = store.counts(job_id)
        if first is None and counts.regions_finished:
            first = (time.perf_counter(), counts.tiles_done)
        time.sleep(0.05)
    end = time.perf_counter()
    assert proc.returncode == 0, f"worker failed; see {workdir / 'workers.log'}"
    counts = store.counts(job_id)
    assert first is not None and counts.regions_finished == total.regions_total
    tiles = counts.tiles_done - first[1]
    return {"tiles": counts.tiles_done, "tiles_per_second": tiles / (end - first[0])}


def tiles(workdir: Path, size: int) -> dict[str, Any]:
    image = make_scene(workdir / f"scene-{size}-s0.cog.tif", size)
    onnx = make_detector_onnx(workdir / "detector-256-16-4.onnx", input_size=256, width=16,
                              depth=4)  # fmt: skip
    store_url = f"sqlite:///{workdir / 'tiles.db'}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{workdir / 'tiles.db'}{suffix}").unlink(missing_ok=True)
    store = open_store(store_url)
    document = {"sources": [str(image)], "pipeline": [{"task": "detect", "model": "det"}],
                "tiling": {"tile_size": 512, "overlap": 64, "region_size": 2048}}  # fmt: skip
    queues: dict[str, Queue] = {}
    queue_for = lambda q: queues.setdefault(q, open_queue(store_url, q))  # noqa: E731
    from tilerunner.coordinator import submit_job

    model = ["--model", f"det={onnx}"]
    direct_job, _ = submit_job(store, queue_for, parse_job(document), job_id="direct")
    direct = _worker_tiles(store, direct_job, ["--store", store_url, *model], workdir)
    http_job, _ = submit_job(store, queue_for, parse_job(document), job_id="http")
    proc, url = _serve(store_url, workdir)
    try:
        http = _worker_tiles(
            store, http_job, ["--api", url, "--token", _key(store_url, "worker"), *model], workdir
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"direct": direct, "http": http,
            "http_share": http["tiles_per_second"] / direct["tiles_per_second"]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--skip-tiles", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine()}
    report["round_trips"] = rt = round_trips(args.workdir, args.round_trips)
    print(f"lease+complete round trips/s: direct {rt['direct_per_second']:.0f}, "
          f"http {rt['http_per_second']:.0f} (http/direct {rt['http_share']:.2f})")  # fmt: skip
    if not args.skip_tiles:
        report["tiles"] = t = tiles(args.workdir, args.size)
        print(f"tiles/s on {args.size} px: direct {t['direct']['tiles_per_second']:.1f}, "
              f"http {t['http']['tiles_per_second']:.1f} "
              f"(http/direct {t['http_share']:.3f})")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
