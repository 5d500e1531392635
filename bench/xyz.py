"""Map-tile benchmark: submitting a million tile ids, and tile jobs against a slow tile server.

1. **Submission.** A tile list of ``N`` ids (zoom 17, row-major) is submitted with
   ``tilerunner submit job.json --store sqlite:///...`` (validated, planned into items of 256
   tiles, enqueued), for each ``N`` of ``--sizes``. Each submission runs in its own process:
   wall time, CPU time and peak RSS from ``wait4``. Memory must not grow with ``N``.
2. **Throughput.** ``--tiles`` tiles served by :class:`tilerunner.testing.tile_server.TileServer`
   with ``--latency-ms`` added to every request, run with ``tilerunner run`` (items of 32
   tiles) and the test model ``tilerunner.testing.models:SleepModel`` (``--seconds-per-tile``
   of wall time a tile, no CPU). The job's tiles/s (the tiles of every item but the first over
   the time from the first item's finish to the last one's, from the state database) is set
   beside the model's own tiles/s (``predict`` called in this process on batches of the same
   size) and the fetcher's own (every tile fetched with the worker's settings, no model):
   fetch must not be the limit while the model is slower.

    .venv/bin/python bench/xyz.py --sizes 100000,1000000 --tiles 1000 --json bench-xyz.json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tilerunner.testing.models import SleepModel
from tilerunner.testing.tile_server import TileServer, png_bytes
from tilerunner.xyz.fetch import FetchOptions, TileFetcher
from tilerunner.xyz.tiles import Tile

ZOOM = 17
PER_ITEM = 32
SLEEP_MODEL = "tilerunner.testing.models:SleepModel"


def _tiles(n: int) -> list[Tile]:
    side = int(np.ceil(np.sqrt(n)))
    return [Tile(60_000 + i % side, 40_000 + i // side, ZOOM) for i in range(n)]


def _write_list(path: Path, n: int) -> None:
    side = int(np.ceil(np.sqrt(n)))
    with path.open("w") as handle:
        for i in range(n):  # streamed: the list is never held
            handle.write(f"{60_000 + i % side}-{40_000 + i // side}-{ZOOM}\n")


def _timed(argv: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of a child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def submission(n: int, work: Path) -> dict[str, Any]:
    listed = work / f"tiles-{n}.txt"
    _write_list(listed, n)
    job = work / f"job-{n}.json"
    job.write_text(json.dumps({
        "tiles": {"url_template": "https://tiles.example/{z}/{x}/{y}.png", "file": str(listed)},
        "pipeline": [{"task": "classify", "model": "cls"}],
    }))  # fmt: skip
    store = f"sqlite:///{work / f'submit-{n}.db'}"
    wall, cpu, rss = _timed([sys.executable, "-m", "tilerunner", "submit", str(job),
                             "--store", store], work)  # fmt: skip
    with sqlite3.connect(work / f"submit-{n}.db") as db:
        items, tiles = db.execute("SELECT regions_total, tiles_total FROM jobs").fetchone()
    return {"tiles": n, "items": items, "tiles_planned": tiles, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1)}  # fmt: skip


def model_rate(seconds_per_tile: float, batch: int, rounds: int = 20) -> float:
    model = SleepModel(seconds_per_tile=seconds_per_tile)
    tiles = np.zeros((batch, 256, 256, 3), dtype=np.uint8)
    started = time.perf_counter()
    for _ in range(rounds):
        model.predict(tiles)
    return batch * rounds / (time.perf_counter() - started)


def fetch_rate(server: TileServer, tiles: list[Tile]) -> float:
    fetcher = TileFetcher(server.url_template, "abc", FetchOptions())
    try:
        started = time.perf_counter()
        for future in [fetcher.prefetch(t) for t in tiles]:
            future.result()
        return len(tiles) / (time.perf_counter() - started)
    finally:
        fetcher.close()


def throughput(n: int, latency_ms: float, seconds_per_tile: float, work: Path) -> dict[str, Any]:
    tiles = _tiles(n)
    body = png_bytes(np.full((256, 256, 3), 128, dtype=np.uint8))
    listed = work / "run-tiles.txt"
    listed.write_text("".join(f"{t}\n" for t in tiles))
    state = work / "run-state.db"
    with TileServer(dict.fromkeys(tiles, body), latency_ms=latency_ms) as server:
        fetch_only = fetch_rate(server, tiles)
        wall, _, _ = _timed([
            sys.executable, "-m", "tilerunner", "run", "--tiles", str(listed),
            "--url-template", server.url_template, "--model", SLEEP_MODEL,
            "--model-param", f"seconds_per_tile={seconds_per_tile}", "--batch-size", "8",
            "--tiles-per-item", str(PER_ITEM),
            "-o", str(work / "run.csv"), "--state", str(state), "--quiet",
        ], work)  # fmt: skip
        in_flight = server.max_in_flight
    with sqlite3.connect(state) as db:
        first, last = db.execute(
            "SELECT MIN(finished_at), MAX(finished_at) FROM regions"
        ).fetchone()
    job_rate = (n - PER_ITEM) / (last - first)  # the items after the first one, over their span
    own = model_rate(seconds_per_tile, 8)
    return {
        "tiles": n, "latency_ms": latency_ms, "model_tiles_per_s": round(own, 1),
        "fetch_only_tiles_per_s": round(fetch_only, 1), "job_tiles_per_s": round(job_rate, 1),
        "job_over_model": round(job_rate / own, 3), "run_wall_s": round(wall, 1),
        "max_requests_in_flight": in_flight,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--seconds-per-tile", type=float, default=0.01)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-xyz-") as folder:
        work = Path(folder)
        result: dict[str, Any] = {"submission": [], "throughput": None}
        for n in (int(v) for v in args.sizes.split(",") if v):
            row = submission(n, work)
            print(json.dumps(row), flush=True)
            result["submission"].append(row)
        if args.tiles:
            result["throughput"] = throughput(
                args.tiles, args.latency_ms, args.seconds_per_tile, work
            )
            print(json.dumps(result["throughput"]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
