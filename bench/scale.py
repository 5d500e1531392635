"""Scale benchmark: one 200,000 x 200,000 px scene and about two million detections.

The scene is a 3-band GeoTIFF whose blocks were never written (GDAL ``SPARSE_OK=TRUE``): the
file is a few MB, and reading any window returns zeros without decoding, so what is measured
is tilerunner itself (planning, queue, pipeline, store, merge, outputs), not a codec. The model
(``bench/plugins.py:ScatterDetector``) reports 10 boxes per tile, placed deterministically.

``tilerunner run`` processes the scene as a user runs it (a subprocess, embedded SQLite state,
one worker process, GeoParquet output), while its process tree's memory is sampled. Its stages
come from the job's timeline in the state (planning -> queued -> aggregating -> succeeded) and
from the aggregator's log line, which splits aggregation into merge (load, NMS, georeference),
store and write. Then tilerunner's merge (:func:`tilerunner.merging.merge`, NMS) runs directly
on 0.5, 1 and 2 million boxes of the same kind, to show how its time grows with n.

    .venv/bin/python bench/suite.py scale                  # 200,000 px, ~2 M detections
    .venv/bin/python bench/suite.py scale --size 50000     # a smaller scene
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from proctree import run_sampled
from tilerunner.merging import MergeParams, merge
from tilerunner.store import open_store
from tilerunner.tiling import TileGrid

__all__ = ["make_sparse_scene", "run_scale", "time_merge"]

BENCH = Path(__file__).resolve().parent
_LIMIT_BYTES = 2e9
_AGGREGATED = re.compile(
    r"merged (\d+) feature\(s\) in ([\d.]+) s, stored them in ([\d.]+) s, "
    r"wrote \d+ output\(s\) in ([\d.]+) s"
)


def make_sparse_scene(path: Path, size: int) -> Path:
    """A ``size`` x ``size`` 3-band tiled GeoTIFF with no block written (reused if present)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=size,
            height=size,
            count=3,
            dtype="uint8",
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
            SPARSE_OK=True,
            BIGTIFF="YES",
            crs="EPSG:3857",
            transform=from_origin(-412300.0, 4927000.0, 0.3, 0.3),
        ):
            pass  # nothing written: every block stays sparse
    return path


def _stages(state: Path, log: str) -> dict[str, float]:
    """Seconds per stage from the job's timeline and the aggregator's log line."""
    store = open_store(f"sqlite:///{state}")
    job = store.list_jobs()[0]
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for event in store.events(job.id):
        first.setdefault(event["kind"], float(event["at"]))
        last[event["kind"]] = float(event["at"])
    stages = {
        "plan": first["queued"] - first["planning"],
        "run": first["aggregating"] - first["queued"],
        # a resumed run aggregates again: its own aggregation is the last one
        "aggregate": last["succeeded"] - last["aggregating"],
    }
    found = _AGGREGATED.search(log)
    if found:
        stages |= {"merge": float(found[2]), "store": float(found[3]), "write": float(found[4])}
    return stages


def run_tilerunner(
    image: Path, workdir: Path, boxes_per_tile: int, *, resume: bool = False
) -> dict[str, Any]:
    """``tilerunner run`` over ``image``; with ``resume`` the state of an earlier run is kept,
    so the command finishes that run (after the regions, only aggregation is left to do)."""
    run_dir = workdir / "runs" / f"scale-{image.stem}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.iterdir():
        if not (resume and old.name.startswith("state.")):
            old.unlink()
    state, out = run_dir / "state.db", run_dir / "out.parquet"
    argv = [
        sys.executable,
        "-m",
        "tilerunner",
        "run",
        str(image),
        "--model",
        "plugins:ScatterDetector",
        "--model-param",
        f"boxes_per_tile={boxes_per_tile}",
        "-o",
        str(out),
        "--state",
        str(state),
        "--quiet",
    ]
    path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TILERUNNER_LOG_LEVEL": "INFO"}
    sampled = run_sampled(argv, run_dir / "run.log", env=env, poll=0.2, timeout=6 * 3600)
    log = (run_dir / "run.log").read_text(encoding="utf-8", errors="replace")
    if sampled.returncode != 0:
        raise SystemExit(f"tilerunner run failed ({sampled.returncode}); see {run_dir}/run.log")
    store = open_store(f"sqlite:///{state}")
    counts = store.counts(store.list_jobs()[0].id)
    stages = _stages(state, log)
    if resume and "merge" in stages:  # a resumed job may not enter "aggregating" again
        stages["aggregate"] = stages["merge"] + stages["store"] + stages["write"]
    return {
        "seconds": sampled.seconds,
        "cpu_seconds": sampled.cpu_seconds,
        "peak_tree_bytes": sampled.peak_tree_bytes,
        "processes": sampled.processes,
        "tiles": counts.tiles_done,
        "features": counts.features,
        "stages": stages,
        "tiles_per_second_run_stage": counts.tiles_done / stages["run"],
        "output_bytes": out.stat().st_size,
        "resumed": resume,
    }


def time_merge(n: int, seed: int = 0) -> dict[str, float]:
    """NMS over ``n`` boxes laid out like the scene's (16 px, ~10 per 448 px cell)."""
    rng = np.random.default_rng(seed)
    span = math.sqrt(n / 10) * 448
    xy = rng.uniform(0, span, size=(n, 2))
    boxes = np.hstack([xy, xy + 16])
    scores, labels = rng.uniform(0.5, 1.0, n), np.zeros(n, np.int64)
    started, cpu = time.perf_counter(), time.process_time()
    kept = merge(boxes, scores, labels, MergeParams())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"n": n, "seconds": seconds, "cpu_seconds": cpu, "kept": len(kept.boxes)}


def run_scale(
    workdir: Path,
    *,
    size: int,
    boxes_per_tile: int,
    merge_sizes: Sequence[int],
    resume: bool = False,
) -> dict[str, Any]:
    """Run the scene, then the merge sizes; print and return the figures."""
    image = make_sparse_scene(workdir / f"sparse-{size}.tif", size)
    grid = TileGrid(size, size, 512, 64)
    print(
        f"sparse scene {image} ({image.stat().st_size / 2**20:.1f} MiB): {grid.n_tiles:,} "
        f"tiles, ~{grid.n_tiles * boxes_per_tile:,} detections expected"
    )
    load_before = os.getloadavg()[0]
    run = run_tilerunner(image, workdir, boxes_per_tile, resume=resume)
    stages = run["stages"]
    print(
        f"tilerunner run: {run['seconds']:.1f} s wall, {run['cpu_seconds']:.1f} s CPU, "
        f"{run['tiles']:,} tiles, {run['features']:,} features kept, peak tree "
        f"{run['peak_tree_bytes'] / 2**20:.0f} MiB (under 2 GB: "
        f"{run['peak_tree_bytes'] < _LIMIT_BYTES})"
    )
    print("  stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"  {run['tiles_per_second_run_stage']:.0f} tiles/s in the run stage")
    merges = []
    for n in merge_sizes:
        merges.append(time_merge(n))
        m = merges[-1]
        print(
            f"merge (NMS) of {n:>9,} boxes: {m['seconds']:6.2f} s, "
            f"{m['seconds'] / (n * math.log2(n)) * 1e9:.1f} ns per n log2 n"
        )
    return {
        "size": size,
        "tiles": grid.n_tiles,
        "boxes_per_tile": boxes_per_tile,
        "run": run,
        "merge": merges,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
