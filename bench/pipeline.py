"""Pipeline benchmark: does the streaming hot path overlap reading and inference?

One run, one image, one tile list, three measurements:

1. ``read_only``  - the reader threads read every tile window (``RasterReader.read``), no model;
2. ``model_only`` - the model runs over as many tiles of pre-decoded pixels, in batches of the
   same size, no reading;
3. ``end_to_end`` - the real :class:`~tilerunner.pipeline.TilePipeline` (reader threads, batcher,
   model, post-processing) over every region of the image.

On a CPU the readers and the model share the cores, so ``read_only + model_only`` is the best
``end_to_end`` can do; with a GPU the model runs beside the readers and ``max(read_only,
model_only)`` is the limit. Both ratios are printed. The image is a seeded 3-band JPEG COG
(512 px blocks, overviews), written strip by strip so that making it needs little memory, and
the model is a conv stack built by :func:`tilerunner.testing.onnx_models.make_detector_onnx`
whose cost per tile is set by ``--model-input``, ``--model-width`` and ``--model-depth``. The ONNX
backend picks the CUDA provider by itself when onnxruntime-gpu is installed.

    .venv/bin/python bench/pipeline.py --json bench-pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow

from tilerunner.imagery import RasterReader
from tilerunner.models import LoadedModel, load_model
from tilerunner.pipeline import STRIP_BYTES, PipelineStats, RegionResult, RegionWork, TilePipeline
from tilerunner.pipeline.reads import TileReads
from tilerunner.pipeline.work import RegionState, TileItem
from tilerunner.testing.onnx_models import make_detector_onnx
from tilerunner.tiling import RegionGrid, TileGrid, TileRef

__all__ = [
    "Round",
    "Timing",
    "make_scene",
    "plan_regions",
    "time_model",
    "time_pipeline",
    "time_reads",
]

_STRIP = 512  # rows written at a time: 3 x size x 512 bytes of pixels in memory
_CELL = 96  # pixels per cell of the smooth background field
_SAMPLE_TILES = 16  # distinct decoded tiles cycled through by the model-only run


@dataclass(frozen=True, slots=True)
class Timing:
    """One measured phase: wall-clock seconds for ``tiles`` tiles, and the CPU seconds spent.

    ``cpu_seconds`` is the process CPU time (all threads) during the phase: when ``end_to_end``
    burns more CPU than the two parts together, the pipeline adds work, not just waiting.
    """

    name: str
    seconds: float
    tiles: int
    cpu_seconds: float

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else float("nan")


def _field(rng: np.random.Generator, coarse: NDArray[np.float32], row0: int, rows: int,
           width: int) -> NDArray[np.uint8]:  # fmt: skip
    """Background rows ``row0 .. row0 + rows``, ``[rows, width, 3]``.

    A bilinear upsampling of the coarse field (JPEG compresses it like real imagery, unlike
    white noise) plus mild noise, kept below the white of the squares.
    """
    ys = (np.arange(row0, row0 + rows, dtype=np.float32) + 0.5) / _CELL
    xs = (np.arange(width, dtype=np.float32) + 0.5) / _CELL
    y0 = ys.astype(np.int64)
    x0 = xs.astype(np.int64)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    band = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy  # [rows, coarse_w, 3]
    field = band[:, x0] * (1 - fx) + band[:, x0 + 1] * fx  # [rows, width, 3]
    field += rng.normal(0.0, 6.0, size=(rows, width, 1)).astype(np.float32)
    return np.clip(field, 0, 200).astype(np.uint8)


def _strip(rng: np.random.Generator, coarse: NDArray[np.float32], row0: int, rows: int, width: int,
           squares: NDArray[np.int64]) -> NDArray[np.uint8]:  # fmt: skip
    """Rows ``row0 .. row0 + rows`` of the scene as ``[3, rows, width]``, with white squares.

    The float work goes 64 rows at a time, so a 32768 px wide strip needs ~100 MB, not ~1 GB.
    """
    pixels = np.empty((rows, width, 3), dtype=np.uint8)
    for top in range(0, rows, 64):
        n = min(64, rows - top)
        pixels[top : top + n] = _field(rng, coarse, row0 + top, n, width)
    inside = squares[(squares[:, 1] < row0 + rows) & (squares[:, 1] + squares[:, 2] > row0)]
    for x, y, side in inside.tolist():
        pixels[max(y - row0, 0) : y + side - row0, x : x + side] = 255
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def make_scene(
    path: Path,
    size: int,
    *,
    seed: int = 0,
    cog: bool = True,
    height: int | None = None,
    compress: str = "jpeg",
    squares: NDArray[np.int64] | None = None,
) -> Path:
    """Write a seeded ``size`` x ``height`` (default square) 3-band raster, 512 px blocks.

    ``compress`` is ``"jpeg"`` (lossy, like aerial imagery) or ``"deflate"`` (lossless, so the
    white squares keep their exact extent and a detector of them can be scored exactly).
    ``squares`` places the white squares as ``[N, 3]`` rows of ``x, y, side``; by default one
    square per 512 x 512 px falls at a seeded random place.

    With ``cog`` the strips go to a lossless tiled GeoTIFF first, which GDAL's COG driver then
    rewrites as a COG with overviews; without, they go straight into a tiled GeoTIFF. Either way
    only one strip of pixels is ever in memory. An existing file is reused.
    """
    if path.exists():
        return path
    width, height = size, size if height is None else height
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(20, 180, size=(height // _CELL + 2, width // _CELL + 2, 3))
    coarse = coarse.astype(np.float32)
    if squares is None:
        n_squares = max(1, (width // 512) * (height // 512))
        sides = rng.integers(16, 48, n_squares)
        corners = rng.integers(0, min(width, height) - 48, (n_squares, 2))
        squares = np.column_stack([corners, sides]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_suffix(".strips.tif") if cog else path.with_suffix(".part.tif")
    codec = {"compress": "jpeg", "photometric": "ycbcr"} if compress == "jpeg" else {}
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
        "tiled": True, "blockxsize": 512, "blockysize": 512, "crs": "EPSG:3857",
        "transform": from_origin(-412300.0, 4927000.0, 0.3, 0.3), "BIGTIFF": "IF_SAFER",
        **({"compress": "deflate"} if cog else codec),
    }  # fmt: skip
    with rasterio.open(target, "w", **profile) as dst:
        for row0 in range(0, height, _STRIP):
            rows = min(_STRIP, height - row0)
            window = RioWindow(0, row0, width, rows)
            dst.write(_strip(rng, coarse, row0, rows, width, squares), window=window)
    if cog:
        quality = {"QUALITY": 85} if compress == "jpeg" else {}
        rasterio.shutil.copy(target, path, driver="COG", COMPRESS=compress.upper(), **quality,
                             BLOCKSIZE=512, OVERVIEWS="AUTO", BIGTIFF="IF_SAFER")  # fmt: skip
        target.unlink()
    else:
        target.rename(path)
    return path


def plan_regions(
    size: int, tile_size: int, overlap: int, region_size: int, limit_tiles: int | None
) -> list[tuple[TileRef, ...]]:
    """The tiles of every region, in planning order; the last region cut at ``limit_tiles``."""
    grid = TileGrid(size, size, tile_size, overlap)
    regions = RegionGrid.from_pixels(grid, region_size)
    planned: list[tuple[TileRef, ...]] = []
    left = grid.n_tiles if limit_tiles is None else limit_tiles
    for region in regions.regions():
        if left <= 0:
            break
        tiles = tuple(regions.tiles(region))[:left]
        planned.append(tiles)
        left -= len(tiles)
    return planned


def time_reads(
    url: str, regions: Sequence[tuple[TileRef, ...]], readers: int, strip_bytes: int
) -> Timing:
    """``readers`` threads read every region's tiles as the pipeline's readers do: a region at a
    time in strips of ``strip_bytes`` (:class:`~tilerunner.pipeline.reads.TileReads`), or tile by
    tile from a shared queue when ``strip_bytes`` is 0."""
    reader = RasterReader(url)
    size = reader.info.width
    reads = TileReads(strip_bytes=strip_bytes, retries=0, backoff=0.0, on_retry=lambda: None)
    tasks: queue.SimpleQueue[TileItem | RegionState | None] = queue.SimpleQueue()
    for key, tiles in enumerate(regions):
        state = RegionState(RegionWork(key, reader, tiles, size, size))
        if strip_bytes:
            tasks.put(state)
        else:
            for tile in tiles:
                tasks.put(TileItem(state, tile))
    for _ in range(readers):
        tasks.put(None)

    def work() -> None:
        while (task := tasks.get()) is not None:
            items = reads.region(task) if isinstance(task, RegionState) else [reads.tile(task)]
            for item in items:
                if item.error is not None:
                    raise SystemExit(f"read failed: {item.error}")

    threads = [threading.Thread(target=work) for _ in range(readers)]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    reader.close()
    return Timing("read_only", seconds, sum(len(t) for t in regions), cpu)


def time_model(model: LoadedModel, sample: NDArray[np.uint8], n_tiles: int, batch: int) -> Timing:
    """``model.predict`` over ``n_tiles`` tiles cycled from ``sample``, ``batch`` at a time."""
    model.predict(sample[:batch])  # warm-up: ONNX Runtime allocates its arenas on the first run
    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < n_tiles:
        count = min(batch, n_tiles - done)
        picks = np.arange(done, done + count) % len(sample)
        model.predict(sample[picks])
        done += count
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Timing("model_only", seconds, n_tiles, cpu)


def time_pipeline(
    model: LoadedModel,
    url: str,
    regions: Sequence[tuple[TileRef, ...]],
    size: int,
    batch_size: int,
    readers: int,
    strip_bytes: int,
) -> tuple[Timing, int, PipelineStats]:
    """The real TilePipeline over ``regions``: its timing, the features kept, its own counters.

    The counters split the pipeline's time as its threads saw it: ``read_seconds`` summed over
    the reader threads and ``model_seconds`` inside ``predict``, both longer than in the
    separate phases when readers and model compete for the cores.
    """
    results: list[RegionResult] = []
    reader = RasterReader(url)
    started, cpu = time.perf_counter(), time.process_time()
    pipeline = TilePipeline(model, results.append, batch_size=batch_size, readers=readers,
                            strip_bytes=strip_bytes)  # fmt: skip
    for key, tiles in enumerate(regions):
        pipeline.submit(RegionWork(key, reader, tiles, size, size))
    pipeline.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    reader.close()
    failed = [r for r in results if r.tile_failures]
    if failed or len(results) != len(regions):
        raise SystemExit(f"pipeline lost or failed regions: {failed[:1]} of {len(results)}")
    n_tiles = sum(len(t) for t in regions)
    features = sum(len(r.rows) for r in results)
    return Timing("end_to_end", seconds, n_tiles, cpu), features, pipeline.stats


def _sample_tiles(url: str, regions: Sequence[tuple[TileRef, ...]]) -> NDArray[np.uint8]:
    tiles = [t for region in regions for t in region][:_SAMPLE_TILES]
    with RasterReader(url) as reader:
        return np.stack([reader.read(t.window) for t in tiles])


def _warm_page_cache(path: Path) -> None:
    """Read the file once, so every phase finds it in the OS page cache alike."""
    with path.open("rb") as handle:
        while handle.read(1 << 24):
            pass


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor()
    with Path("/proc/cpuinfo").open(encoding="utf-8") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return {"nproc": os.cpu_count(), "cpu": names[0] if names else cpu,
            "onnxruntime": onnxruntime.__version__, "gdal": rasterio.__gdal_version__,
            "providers": onnxruntime.get_available_providers()}  # fmt: skip


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--size", type=int, default=16384, help="image width and height in pixels")
    add("--tile-size", type=int, default=512)
    add("--overlap", type=int, default=64)
    add("--region-size", type=int, default=4096)
    add("--batch-size", type=int, default=8)
    add("--readers", type=int, default=2, help="reader threads (read-only and end-to-end)")
    add("--strip-mb", type=int, default=STRIP_BYTES // 2**20,
        help="strip budget of the readers in MiB; 0 reads tile by tile")  # fmt: skip
    add("--onnx-threads", type=int, default=None, help="ONNX intra-op threads (default: ORT's)")
    add("--limit-tiles", type=int, default=None, help="only the first N tiles (quick runs)")
    add("--model-input", type=int, default=128, help="model input size (tiles are resized)")
    add("--model-width", type=int, default=16, help="channels per conv layer")
    add("--model-depth", type=int, default=3, help="conv layers")
    add("--seed", type=int, default=0)
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    add("--repeat", type=int, default=3, help="rounds of the three phases (median reported)")
    add("--json", type=Path, default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


@dataclass(frozen=True, slots=True)
class Round:
    """The three phases measured back to back, so they see the same machine load."""

    read: Timing
    model: Timing
    end_to_end: Timing
    stats: PipelineStats
    features: int

    @property
    def ratio_to_sum(self) -> float:
        return self.end_to_end.seconds / (self.read.seconds + self.model.seconds)

    @property
    def ratio_to_max(self) -> float:
        return self.end_to_end.seconds / max(self.read.seconds, self.model.seconds)

    def as_dict(self) -> dict[str, object]:
        phases = {t.name: {**asdict(t), "tiles_per_second": t.tiles_per_second}
                  for t in (self.read, self.model, self.end_to_end)}  # fmt: skip
        return {**phases, "pipeline_stats": asdict(self.stats), "features": self.features,
                "ratio_to_sum": self.ratio_to_sum, "ratio_to_max": self.ratio_to_max}  # fmt: skip


def _print_round(index: int, r: Round) -> None:
    print(f"round {index}:")
    for t in (r.read, r.model, r.end_to_end):
        print(f"  {t.name:<11} {t.seconds:7.2f} s  {t.tiles_per_second:7.1f} tiles/s  "
              f"CPU {t.cpu_seconds:6.2f} s")  # fmt: skip
    print(
        f"  inside end_to_end: reads {r.stats.read_seconds:.2f} s (sum over readers), model "
        f"{r.stats.model_seconds:.2f} s in {r.stats.batches} batches; {r.features} features"
    )
    print(f"  end_to_end / (read_only + model_only) = {r.ratio_to_sum:.3f}; "
          f"end_to_end / max(read_only, model_only) = {r.ratio_to_max:.3f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Build (or reuse) the image and model, measure ``--repeat`` rounds, print and save."""
    args = _arguments(argv)
    started = time.perf_counter()
    image = make_scene(args.workdir / f"scene-{args.size}-s{args.seed}.cog.tif", args.size,
                       seed=args.seed)  # fmt: skip
    print(f"image {image} ({image.stat().st_size / 2**20:.0f} MiB) "
          f"ready after {time.perf_counter() - started:.0f} s")  # fmt: skip
    onnx_path = make_detector_onnx(
        args.workdir / f"detector-{args.model_input}-{args.model_width}-{args.model_depth}.onnx",
        input_size=args.model_input, width=args.model_width, depth=args.model_depth,
    )  # fmt: skip
    params = {} if args.onnx_threads is None else {"intra_op_threads": str(args.onnx_threads)}
    model = load_model(str(onnx_path), params)
    regions = plan_regions(args.size, args.tile_size, args.overlap, args.region_size,
                           args.limit_tiles)  # fmt: skip
    n_tiles, url = sum(len(t) for t in regions), str(image)
    print(f"{n_tiles} tiles of {args.tile_size} px (overlap {args.overlap}) in {len(regions)} "
          f"regions of {args.size} x {args.size}; batch {args.batch_size}, "
          f"{args.readers} readers")  # fmt: skip
    _warm_page_cache(image)
    sample = _sample_tiles(url, regions)
    load_before = os.getloadavg()[0]
    rounds = []
    for index in range(args.repeat):
        read = time_reads(url, regions, args.readers, args.strip_mb * 2**20)
        infer = time_model(model, sample, n_tiles, args.batch_size)
        e2e, features, stats = time_pipeline(model, url, regions, args.size, args.batch_size,
                                             args.readers, args.strip_mb * 2**20)  # fmt: skip
        rounds.append(Round(read, infer, e2e, stats, features))
        _print_round(index, rounds[-1])
    median = {
        name: statistics.median(getattr(r, name) for r in rounds)
        for name in ("ratio_to_sum", "ratio_to_max")
    }
    print(
        f"median over {len(rounds)} rounds: end_to_end / (read_only + model_only) = "
        f"{median['ratio_to_sum']:.3f}; end_to_end / max = {median['ratio_to_max']:.3f}"
    )
    report: dict[str, object] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "tiles": n_tiles,
        "regions": len(regions),
        "rounds": [r.as_dict() for r in rounds],
        "median": median,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
