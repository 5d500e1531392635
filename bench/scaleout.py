"""Scale-out benchmark: worker processes over a real broker and store, and the store's
completion rate.

Part 1 (``workers``): a sleep-based model (``SleepModel``: wall time, no CPU) over a small
synthetic raster cut into one-tile regions; 1, 2, 4 and 8 ``tilerunner worker`` processes,
started and registered before the job is submitted, drain the job. Throughput is regions per
second from submission (planning included) to the last region recorded; the figure that
matters is the ratio of 8 workers to 1 (target >= 7x). Run per deployment: ``sqlite`` (one
SQLite file for store and queue) and ``nats+postgresql`` (PostgreSQL store, NATS JetStream
queue).

Part 2 (``completions``): processes call ``Store.complete_region`` (the coordinator's write
path: guarded region update, features insert, image counter, outbox at the end) for distinct
regions of one job, two features each; completions per second over the window in which all
processes run (target >= 1,000/s on PostgreSQL).

    .venv/bin/python bench/scaleout.py --json bench-scaleout.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator import submit_job
from tilerunner.jobs import parse_job
from tilerunner.store import FeatureRows, ImagePlan, Store, open_store

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/tilerunner_test"
NATS = "nats://127.0.0.1:4222"


def make_source(path: Path, size: int) -> Path:
    """A seeded 3-band raster of ``size`` px; tiles of 64 px are cheap to read."""
    rng = np.random.default_rng(0)
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
        crs="EPSG:3857", transform=from_origin(0, 1000, 1, 1), tiled=True, blockxsize=256,
        blockysize=256,
    ) as dst:  # fmt: skip
        dst.write(rng.integers(0, 255, (3, size, size), dtype=np.uint8))
    return path


def _cli(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tilerunner", *args], env=env, stdout=out, stderr=out,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def run_workers(
    store_url: str, broker_url: str, n_workers: int, source: Path, seconds_per_tile: float,
    workdir: Path,
) -> dict[str, float]:  # fmt: skip
    """Drain one job of one-tile regions with ``n_workers`` worker processes."""
    env = {**os.environ, "TILERUNNER_LEASE_SECONDS": "30"}
    model = f"m{uuid.uuid4().hex[:8]}"  # a queue of its own
    common = ["--store", store_url, "--broker", broker_url]
    store = open_store(store_url)
    before = {w["id"] for w in store.workers()}
    workers = [
        _cli("worker", *common, "--model", f"{model}=tilerunner.testing.models:SleepModel",
             "--model-param", f"seconds_per_tile={seconds_per_tile}", "--batch-size", "1",
             env=env, log=workdir / "workers.log")
        for _ in range(n_workers)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len({w["id"] for w in store.workers()} - before) < n_workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {workdir / 'workers.log'}")
            time.sleep(0.2)
        document = {
            "sources": [str(source)],
            "pipeline": [{"task": "detect", "model": model}],
            "tiling": {"tile_size": 64, "overlap": 0, "region_size": 64},
        }
        queues: dict[str, Queue] = {}

        def queue_for(name: str) -> Queue:
            return queues.setdefault(name, open_queue(broker_url, name))

        started = time.monotonic()
        job_id, _ = submit_job(store, queue_for, parse_job(document))
        total = store.counts(job_id).regions_total
        while store.counts(job_id).regions_finished < total:
            time.sleep(0.05)
        seconds = time.monotonic() - started
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=60)
        store.engine.dispose()
    return {
        "workers": n_workers,
        "regions": total,
        "seconds": seconds,
        "per_second": total / seconds,
    }


def _complete(url: str, job_id: str, image: int, regions: range, barrier: Any, out: Any) -> None:
    store = open_store(url, migrate=False)
    rows = FeatureRows(
        boxes=np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]),
        scores=np.array([0.9, 0.8]),
        class_ids=np.array([0, 1]),
        labels=["a", "b"],
    )
    barrier.wait()
    start = time.time()
    for region in regions:
        store.complete_region(job_id, image, region, rows, "bench")
    out.put((start, time.time()))


def completion_rate(url: str, processes: int, per_process: int) -> dict[str, float]:
    store: Store = open_store(url)
    job_id = f"bench-{uuid.uuid4().hex[:8]}"
    plans = [
        ImagePlan(i, f"img{i}", f"/bench/{i}.tif", 1000, 1000, 1, [1] * per_process)
        for i in range(processes)
    ]
    store.create_job(job_id, "completions", {}, plans)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_complete, args=(url, job_id, i, range(per_process), barrier, out))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    counts = store.counts(job_id)
    assert counts.regions_done == processes * per_process
    assert store.claim_outbox("bench", job_id=job_id) is not None  # exactly the one aggregation
    return {"processes": processes, "completions": counts.regions_done, "seconds": seconds,
            "per_second": counts.regions_done / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", nargs="+", default=["sqlite", "nats+postgresql"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--source-size", type=int, default=1152, help="px; 64 px tiles")
    parser.add_argument("--seconds-per-tile", type=float, default=0.2)
    parser.add_argument("--completion-processes", type=int, default=4)
    parser.add_argument("--completions-per-process", type=int, default=2500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tilerunner-scaleout-"))
    source = make_source(workdir / "source.tif", args.source_size)
    report: dict[str, Any] = {"nproc": os.cpu_count(), "workers": {}, "completions": {}}
    for deployment in args.deployments:
        if deployment == "sqlite":
            store_url = broker_url = f"sqlite:///{workdir / 'state.db'}"
        elif deployment == "nats+postgresql":
            store_url, broker_url = PG, NATS
        else:
            raise SystemExit(f"unknown deployment {deployment!r}; use sqlite or nats+postgresql")
        rows = []
        for n in args.workers:
            row = run_workers(store_url, broker_url, n, source, args.seconds_per_tile, workdir)
            rows.append(row)
            print(f"{deployment:16} {n} worker(s): {row['regions']} regions in "
                  f"{row['seconds']:.1f} s = {row['per_second']:.1f}/s", flush=True)  # fmt: skip
        base = rows[0]["per_second"]
        for row in rows:
            row["speedup"] = row["per_second"] / base
        print(f"{deployment:16} speed-up at {rows[-1]['workers']} workers: "
              f"{rows[-1]['speedup']:.2f}x", flush=True)  # fmt: skip
        report["workers"][deployment] = rows
    for name, url in (("postgresql", PG), ("sqlite", f"sqlite:///{workdir / 'complete.db'}")):
        rate = completion_rate(url, args.completion_processes, args.completions_per_process)
        report["completions"][name] = rate
        print(f"completions on {name}: {rate['completions']} in {rate['seconds']:.2f} s = "
              f"{rate['per_second']:.0f}/s", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
