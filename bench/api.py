"""Work-protocol benchmark: what pulling work over HTTP costs next to a direct worker.

Part 1 (``round_trips``): lease + complete round trips per second, one client, through the
:class:`~tilerunner.work.WorkService` in the same process (``direct``) and through a real
``tilerunner serve`` with :class:`~tilerunner.work.http.HttpWorkSource` (``http``), on the same
kind of store (one SQLite file for state and queue) and the same job of one-tile regions with
no features, so what is measured is the protocol, not the model.

Part 2 (``tiles``): one ``tilerunner worker`` process, direct (``--store``) and then over HTTP
(``--api --token``), each draining its own job over the same seeded 16384 x 16384 JPEG COG
with the ONNX detector of ``bench/pipeline.py``; tiles per second from the first region to the
last as the store recorded them, and the HTTP worker's throughput as a share of the direct
worker's (target >= 0.95).

    .venv/bin/python bench/api.py --json bench-api.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import machine, make_scene
from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator import publish_pending, submit_job
from tilerunner.jobs import parse_job
from tilerunner.jobs.features import FeatureRows
from tilerunner.store import ImagePlan, Store, open_store
from tilerunner.store.tables import regions
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


def round_trips(workdir: Path, n: int, store_url: str | None = None) -> dict[str, float]:
    """One client's lease + complete round trips per second, direct and over HTTP, on one
    store (a fresh SQLite file unless ``store_url`` names another, e.g. PostgreSQL)."""
    if store_url is None:
        store_url = f"sqlite:///{workdir / 'round-trips.db'}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{workdir / 'round-trips.db'}{suffix}").unlink(missing_ok=True)
    store = open_store(store_url)
    queues: dict[str, Queue] = {}
    service = WorkService(store, lambda q: queues.setdefault(q, open_queue(store_url, q)),
                          WorkServiceOptions(lease_seconds=60))  # fmt: skip
    run = uuid.uuid4().hex[:8]  # fresh jobs and queues on a store used before
    _empty_job(store, store_url, f"direct-{run}", f"rt-direct-{run}", n)
    direct = _drain(DirectWorkSource(service), f"rt-direct-{run}", n)
    _empty_job(store, store_url, f"http-{run}", f"rt-http-{run}", n)
    proc, url = _serve(store_url, workdir)
    try:
        http = _drain(HttpWorkSource(url, _key(store_url, "worker")), f"rt-http-{run}", n)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"direct_per_second": direct, "http_per_second": http, "http_share": http / direct}


def _worker_tiles(store: Store, job_id: str, args: list[str], workdir: Path) -> dict[str, float]:
    """Tiles per second between the first and the last region the worker recorded (the
    regions' own finish times), so neither model loading nor the worker's exit counts."""
    proc = _cli("worker", *args, "--until-job", job_id, "--batch-size", "8",
                log=workdir / "workers.log")  # fmt: skip
    started = time.perf_counter()
    assert proc.wait(timeout=1800) == 0, f"worker failed; see {workdir / 'workers.log'}"
    wall = time.perf_counter() - started
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(regions.c.finished_at, regions.c.n_tiles)
            .where(regions.c.job_id == job_id)
            .order_by(regions.c.finished_at)
        ).all()
    first_at, first_tiles = rows[0]
    tiles_after_first = sum(int(n) for _, n in rows) - int(first_tiles)
    span = float(rows[-1][0]) - float(first_at)
    return {
        "tiles": sum(int(n) for _, n in rows),
        "tiles_per_second": tiles_after_first / span,
        "worker_wall_seconds": wall,
    }


def tiles(workdir: Path, size: int, repeat: int) -> dict[str, Any]:
    """``repeat`` rounds of one direct and one HTTP worker, alternated, each on its own job over
    the same image; ``serve`` runs throughout (as it does in a cluster), so both kinds of worker
    share the machine with it alike."""
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
    model = ["--model", f"det={onnx}"]
    proc, url = _serve(store_url, workdir)
    rounds = []
    try:
        http_args = ["--api", url, "--token", _key(store_url, "worker"), *model]
        for i in range(repeat):
            runs = {}
            for kind, args in (("direct", ["--store", store_url, *model]), ("http", http_args)):
                job, _ = submit_job(store, queue_for, parse_job(document), job_id=f"{kind}-{i}")
                runs[kind] = _worker_tiles(store, job, args, workdir)
            share = runs["http"]["tiles_per_second"] / runs["direct"]["tiles_per_second"]
            rounds.append({**runs, "http_share": share})
            print(f"  round {i}: direct {runs['direct']['tiles_per_second']:.1f} tiles/s, "
                  f"http {runs['http']['tiles_per_second']:.1f} (share {share:.3f})")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"rounds": rounds, "http_share": statistics.median(r["http_share"] for r in rounds)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--skip-tiles", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds of the tiles part.")
    parser.add_argument(
        "--pg",
        default=None,
        help="Also measure round trips on this store URL "
        "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/tilerunner_test).",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine()}
    report["round_trips"] = rt = round_trips(args.workdir, args.round_trips)
    print(f"lease+complete round trips/s: direct {rt['direct_per_second']:.0f}, "
          f"http {rt['http_per_second']:.0f} (http/direct {rt['http_share']:.2f})")  # fmt: skip
    if args.pg:
        report["round_trips_pg"] = pg = round_trips(args.workdir, args.round_trips, args.pg)
        print(f"on {args.pg.split('@')[-1]}: direct {pg['direct_per_second']:.0f}, "
              f"http {pg['http_per_second']:.0f} (http/direct {pg['http_share']:.2f})")  # fmt: skip
    if not args.skip_tiles:
        report["tiles"] = t = tiles(args.workdir, args.size, args.repeat)
        print(f"tiles/s on {args.size} px: median http/direct {t['http_share']:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
