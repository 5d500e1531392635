"""Remote reads benchmark: per-tile reads against block-aligned strips, over HTTP with latency.

One seeded 3-band DEFLATE COG (512 px blocks, overviews) is served by
:class:`tilerunner.testing.range_server.RangeServer` on loopback with 0, 50 and 100 ms added to
every request. For each latency and each read design it measures, in a fresh subprocess (so
peak RSS is the design's own):

1. ``read``     - the worker pipeline's read stage alone: reader threads turn every region of
   the image into tiles exactly as :class:`~tilerunner.pipeline.TilePipeline`'s readers do
   (:class:`~tilerunner.pipeline.reads.TileReads`), no model;
2. ``pipeline`` - the whole :class:`~tilerunner.pipeline.TilePipeline` with the cheap
   ``FakeDetector`` plugin over every region.

and reports tiles/s, the requests the server answered, the bytes it sent against the file size,
and the subprocess's peak RSS. Designs (``--designs``):

- ``tiles``         a read per tile window, 2 reader threads, GDAL options as before strips;
- ``tiles-8``       the same with 8 reader threads;
- ``strips-serial`` block-aligned strips of each region, 2 readers, without GDAL's thread pool;
- ``strips``        strips with the default options (GDAL's thread pool on for remote reads).

    .venv/bin/python bench/reads.py --json bench-reads.json
"""

from __future__ import annotations

import argparse
import json
import queue
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow

from tilerunner.imagery import GdalEnv, RasterReader
from tilerunner.imagery.gdal_env import REMOTE_DEFAULTS
from tilerunner.models import wrap_model
from tilerunner.pipeline import STRIP_BYTES, RegionResult, RegionWork, TilePipeline
from tilerunner.pipeline.reads import TileReads
from tilerunner.pipeline.work import RegionState, TileItem
from tilerunner.testing import FakeDetector
from tilerunner.testing.range_server import RangeServer
from tilerunner.tiling import RegionGrid, TileGrid

DESIGNS: dict[str, dict[str, Any]] = {
    "tiles": {"strip_bytes": 0, "readers": 2, "threads": False},
    "tiles-8": {"strip_bytes": 0, "readers": 8, "threads": False},
    "strips-serial": {"strip_bytes": STRIP_BYTES, "readers": 2, "threads": False},
    "strips": {"strip_bytes": STRIP_BYTES, "readers": 2, "threads": True},
}


def make_cog(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A seeded smooth-field-plus-noise RGB DEFLATE COG with white squares, strip by strip."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    cell = 96
    coarse = rng.uniform(20, 180, size=(height // cell + 2, width // cell + 2, 3))
    squares = rng.integers(0, min(width, height) - 48, size=(width * height // 512**2, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".strips.tif")
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "crs": "EPSG:3857", "transform": from_origin(-412300.0, 4927000.0, 0.3, 0.3),
    }  # fmt: skip
    xs = (np.arange(width) + 0.5) / cell
    x0 = xs.astype(np.int64)
    fx = (xs - x0)[None, :, None]
    with rasterio.open(tmp, "w", **profile) as dst:
        for row0 in range(0, height, 512):
            rows = min(512, height - row0)
            ys = (np.arange(row0, row0 + rows) + 0.5) / cell
            y0 = ys.astype(np.int64)
            fy = (ys - y0)[:, None, None]
            band = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy
            field = band[:, x0] * (1 - fx) + band[:, x0 + 1] * fx
            field += rng.normal(0.0, 6.0, size=(rows, width, 1))
            pixels = np.clip(field, 0, 200).astype(np.uint8)
            for x, y, side in squares.tolist():
                side = 16 + side % 32
                if y < row0 + rows and y + side > row0:
                    pixels[max(y - row0, 0) : y + side - row0, x % (width - 48) :][:, :side] = 255
            dst.write(pixels.transpose(2, 0, 1), window=RioWindow(0, row0, width, rows))
    rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512,
                         OVERVIEWS="AUTO")  # fmt: skip
    tmp.unlink()
    return path


def _env(threads: bool) -> GdalEnv:
    if threads:
        return GdalEnv.default()
    return GdalEnv({k: v for k, v in REMOTE_DEFAULTS.items() if k != "GDAL_NUM_THREADS"})


def _regions(reader: RasterReader, args: argparse.Namespace) -> list[RegionWork]:
    grid = TileGrid(reader.info.width, reader.info.height, args.tile_size, args.overlap)
    regions = RegionGrid.from_pixels(grid, args.region_size)
    return [
        RegionWork(r.index, reader, tuple(regions.tiles(r)), grid.width, grid.height)
        for r in regions.regions()
    ]


def _read_stage(works: list[RegionWork], design: dict[str, Any]) -> int:
    """The pipeline's reader threads alone: per tile or per region, as TilePipeline queues them."""
    reads = TileReads(strip_bytes=design["strip_bytes"], retries=3, backoff=0.25,
                      on_retry=lambda: None)  # fmt: skip
    tasks: queue.SimpleQueue[TileItem | RegionState | None] = queue.SimpleQueue()
    for work in works:
        state = RegionState(work)
        if design["strip_bytes"]:
            tasks.put(state)
        else:
            for tile in work.tiles:
                tasks.put(TileItem(state, tile))
    for _ in range(design["readers"]):
        tasks.put(None)
    counts = [0] * design["readers"]

    def run(slot: int) -> None:
        while (task := tasks.get()) is not None:
            items = reads.region(task) if isinstance(task, RegionState) else [reads.tile(task)]
            for item in items:
                if item.error is not None:
                    raise SystemExit(f"read failed: {item.error}")
                counts[slot] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(design["readers"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def _pipeline(works: list[RegionWork], design: dict[str, Any], batch_size: int) -> tuple[int, int]:
    results: list[RegionResult] = []
    model = wrap_model(FakeDetector(), name="fake", spec="tilerunner.testing.models:FakeDetector")
    pipeline = TilePipeline(
        model,
        results.append,
        batch_size=batch_size,
        readers=design["readers"],
        strip_bytes=design["strip_bytes"],
    )
    for work in works:
        pipeline.submit(work)
    pipeline.close()
    if any(r.tile_failures for r in results) or len(results) != len(works):
        raise SystemExit("the pipeline lost or failed tiles")
    return sum(r.n_tiles for r in results), sum(len(r.rows) for r in results)


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    design = DESIGNS[args.design]
    reader = RasterReader(args.url, env=_env(design["threads"]))
    works = _regions(reader, args)
    started, cpu = time.perf_counter(), time.process_time()
    if args.phase == "read":
        tiles, features = _read_stage(works, design), -1
    else:
        tiles, features = _pipeline(works, design, args.batch_size)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    reader.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "tiles": tiles,
                      "features": features, "peak_rss_mib": peak}))  # fmt: skip


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--width", type=int, default=8192)
    add("--height", type=int, default=6144)
    add("--tile-size", type=int, default=512)
    add("--overlap", type=int, default=64)
    add("--region-size", type=int, default=4096)
    add("--batch-size", type=int, default=8)
    add("--latencies", default="0,50,100", help="added ms per request, comma-separated")
    add("--designs", default=",".join(DESIGNS), help=f"comma-separated, of {list(DESIGNS)}")
    add("--phases", default="read,pipeline")
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    add("--json", type=Path, default=None, help="also write the figures to this file")
    add("--child", action="store_true", help=argparse.SUPPRESS)
    add("--url", help=argparse.SUPPRESS)
    add("--design", help=argparse.SUPPRESS)
    add("--phase", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = _arguments(argv)
    if args.child:
        child(args)
        return []
    name = f"reads-{args.width}x{args.height}.cog.tif"
    image = make_cog(args.workdir / name, args.width, args.height)
    size = image.stat().st_size
    print(f"image {image} ({size / 2**20:.0f} MiB); tile {args.tile_size} overlap "
          f"{args.overlap} region {args.region_size}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    with RangeServer(image.parent) as server:
        for latency in [float(v) for v in args.latencies.split(",")]:
            server.latency_ms = latency
            for phase in args.phases.split(","):
                for design in args.designs.split(","):
                    server.reset()
                    command = [sys.executable, __file__, "--child", "--url", server.url(name),
                               "--design", design, "--phase", phase,
                               *(f"--{k}={getattr(args, k.replace('-', '_'))}"
                                 for k in ("tile-size", "overlap", "region-size",
                                           "batch-size"))]  # fmt: skip
                    done = subprocess.run(command, check=True, capture_output=True, text=True)
                    figures = json.loads(done.stdout.strip().splitlines()[-1])
                    stats = server.stats()
                    row = {"latency_ms": latency, "phase": phase, "design": design, **figures,
                           "tiles_per_second": figures["tiles"] / figures["seconds"],
                           "requests": stats.requests, "max_in_flight": stats.max_in_flight,
                           "bytes_fetched": stats.bytes_sent, "file_bytes": size}  # fmt: skip
                    rows.append(row)
                    print(f"{latency:5.0f} ms {phase:8} {design:13} {row['seconds']:7.2f} s "
                          f"{row['tiles_per_second']:6.1f} tiles/s  {stats.requests:5d} req "
                          f"(max {stats.max_in_flight:2d} at once)  "
                          f"{stats.bytes_sent / size:5.2f} x file  "
                          f"RSS {row['peak_rss_mib']:5.0f} MiB  CPU {row['cpu_seconds']:5.1f} s"
                          + (f"  {row['features']} features" if row["features"] >= 0 else ""),
                          flush=True)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
