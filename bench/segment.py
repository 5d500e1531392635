"""Segmentation benchmark: a segment run against its parts, its workers and a plain loop.

On one seeded image and one per-pixel ONNX segmenter
(:func:`tilerunner.testing.onnx_models.make_segmenter_onnx`, 1x1 convolutions whose cost is set
by ``--model-width`` / ``--model-depth``), over the same tiles:

1. ``read_only``  - reader threads read every tile window (as ``bench/pipeline.py``);
2. ``model_only`` - the model over as many tiles of decoded pixels, same batch size (by
   default the run's for segmentation models);
3. ``write_only`` - every region's core of the first run's class raster (the pixels the run
   wrote) published as a part, then the parts joined into the COG (the same ``write_part`` /
   ``write_cog`` the segment path calls), timed apart;
4. ``end_to_end`` - ``tilerunner run IMAGE --model seg.onnx -o classes.tif`` in a subprocess, as
   a user runs it, once per ``--workers`` entry; its process tree's peak RSS is sampled and the
   aggregation (COG assembly) is timed from the run's DEBUG log;
5. ``plain_loop`` - a windowed rasterio loop: read a 512 px block, run the model, write it into
   a tiled GeoTIFF, then translate that to the same COG (no tilerunner around the model).

6. ``vectorize`` - :func:`tilerunner.segmentation.vectorize` of the top-left ``--vector-size``
   px of the run's class raster in ``--vector-window`` px windows, against one
   ``rasterio.features.shapes`` call over the same pixels in memory (same polygon count).

The target is ``end_to_end / (read_only + model_only + write_only) <= 1.10``. ``--memory-sizes``
runs ``end_to_end`` (one worker) on more image sizes for the peak RSS of the process tree,
which must stay under 1.5 GB and about flat.

    .venv/bin/python bench/segment.py --json bench-segment.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.features import shapes
from rasterio.windows import Window as RioWindow

from memory import TreeSampler
from pipeline import Timing, machine, make_scene, plan_regions, time_model, time_reads
from tilerunner.imagery import RasterReader
from tilerunner.merging.segment import region_core
from tilerunner.models import LoadedModel, SegMask, load_model
from tilerunner.outputs.cog import RasterGrid, write_cog, write_part
from tilerunner.pipeline import STRIP_BYTES, default_batch_size
from tilerunner.segmentation import vectorize
from tilerunner.testing.onnx_models import make_segmenter_onnx
from tilerunner.tiling import RegionGrid, TileGrid, TileRef

_NODATA = 255
_SAMPLE_TILES = 16
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
_AGGREGATING, _AGGREGATED = "run: every region finished; aggregating", "run: aggregated"


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One ``tilerunner run`` of the segment path."""

    size: int
    workers: int
    seconds: float
    cpu_seconds: float
    aggregation_seconds: float
    peak_tree_bytes: int
    peak_process_bytes: int
    processes: int


def _sample(url: str, regions: Sequence[tuple[TileRef, ...]]) -> NDArray[np.uint8]:
    tiles = [t for region in regions for t in region][:_SAMPLE_TILES]
    with RasterReader(url) as reader:
        return np.stack([reader.read(t.window) for t in tiles])


def time_writes(
    classes: Path, size: int, tile: int, overlap: int, region_size: int, out: Path
) -> tuple[Timing, Timing]:
    """Every region's core as a part, then the COG of them: the pixels the run wrote (read from
    its class raster ``classes`` one core at a time, the reads not timed)."""
    with rasterio.open(classes) as src:
        transform, crs = tuple(src.transform)[:6], src.crs.to_wkt()
        grid = TileGrid(size, size, tile, overlap)
        regions = RegionGrid.from_pixels(grid, region_size)
        prefix = out.with_name(out.name + ".parts")
        out.unlink(missing_ok=True)
        parts = []
        seconds = cpu = 0.0
        for index, region in enumerate(regions.regions()):
            core = region_core(regions, region)
            pixels = src.read(1, window=RioWindow(core.col_off, core.row_off, core.width,
                                                  core.height))  # fmt: skip
            started, cpu_started = time.perf_counter(), time.process_time()
            uri = f"{prefix}/0-{index}.tif"
            parts.append(write_part(uri, core, pixels[None], _NODATA, transform, crs))
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
    n_tiles = grid.n_tiles
    part_timing = Timing("write_parts", seconds, n_tiles, cpu)
    started, cpu = time.perf_counter(), time.process_time()
    write_cog(str(out), parts, RasterGrid(size, size, transform, crs), bands=1, dtype="uint8",
              nodata=_NODATA, resampling="mode")  # fmt: skip
    cog_timing = Timing("write_cog", time.perf_counter() - started, n_tiles,
                        time.process_time() - cpu)  # fmt: skip
    for part in parts:
        Path(part.uri).unlink()
    prefix.rmdir()
    return part_timing, cog_timing


def time_plain_loop(
    url: str, model: LoadedModel, out: Path, block: int
) -> tuple[Timing, float, float]:
    """Read a block, run the model, write the block; then the COG. Returns (timing, cog s,
    cog CPU s)."""
    staged = out.with_suffix(".staged.tif")
    started, cpu = time.perf_counter(), time.process_time()
    with rasterio.open(url) as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
                   "dtype": "uint8", "nodata": _NODATA, "tiled": True, "blockxsize": block,
                   "blockysize": block, "compress": "deflate", "transform": src.transform,
                   "crs": src.crs, "BIGTIFF": "IF_SAFER"}  # fmt: skip
        n_blocks = 0
        with rasterio.open(staged, "w", **profile) as dst:
            for row in range(0, src.height, block):
                for col in range(0, src.width, block):
                    window = RioWindow(col, row, min(block, src.width - col),
                                       min(block, src.height - row))  # fmt: skip
                    pixels = np.moveaxis(src.read([1, 2, 3], window=window), 0, -1)
                    (mask,) = model.predict(np.ascontiguousarray(pixels)[None])
                    assert isinstance(mask, SegMask) and mask.classes is not None
                    dst.write(mask.classes.astype(np.uint8)[None], window=window)
                    n_blocks += 1
    cog_started, cog_cpu = time.perf_counter(), time.process_time()
    rasterio.shutil.copy(staged, out, driver="COG", compress="deflate", blocksize=block,
                         overview_resampling="mode", num_threads="ALL_CPUS",
                         bigtiff="IF_SAFER")  # fmt: skip
    cog_seconds, cog_cpu = time.perf_counter() - cog_started, time.process_time() - cog_cpu
    staged.unlink()
    seconds = time.perf_counter() - started
    timing = Timing("plain_loop", seconds, n_blocks, time.process_time() - cpu)
    return timing, cog_seconds, cog_cpu


def _children_cpu() -> float:
    """CPU seconds of every waited-for descendant so far (the run and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_vectorize(classes: Path, size: int, window: int, workdir: Path) -> dict[str, float]:
    """``vectorize`` of the top-left ``size`` px of a class raster, in ``window`` px windows,
    against one ``rasterio.features.shapes`` call over the same pixels in memory."""
    crop = workdir / f"vector-crop-{size}.tif"
    with rasterio.open(classes) as src:
        pixels = src.read(1, window=RioWindow(0, 0, size, size))
        profile = {**src.profile, "driver": "GTiff", "width": size, "height": size,
                   "transform": src.transform}  # fmt: skip
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(pixels, 1)
    started = time.perf_counter()
    summary = vectorize(str(crop), str(workdir / "vectors.parquet"), skip_classes=(),
                        window=window)  # fmt: skip
    windowed = time.perf_counter() - started
    started = time.perf_counter()
    whole = sum(1 for _ in shapes(pixels, mask=pixels != _NODATA, connectivity=4))
    baseline = time.perf_counter() - started
    if whole != summary.polygons:
        raise SystemExit(f"vectorize found {summary.polygons} polygons, shapes {whole}")
    return {"size": size, "window": window, "polygons": summary.polygons,
            "vectorize_seconds": windowed, "whole_shapes_seconds": baseline}  # fmt: skip


def _log_stamp(line: str) -> tuple[float, str] | None:
    match = _LOG_LINE.match(line)
    if match is None:
        return None
    stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return stamp, match.group(4)


def run_segment(
    image: Path, model: Path, size: int, workers: int, workdir: Path, extra: Sequence[str],
    poll: float,
) -> RunFigures:  # fmt: skip
    """``tilerunner run`` of the segment path, its tree sampled; aggregation from its log."""
    tag = f"{size}-w{workers}"
    output, state = workdir / f"classes-{tag}.tif", workdir / f"state-seg-{tag}.db"
    for path in workdir.glob(f"state-seg-{tag}*"):
        path.unlink()
    output.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tilerunner", "run", str(image), "--model", str(model),
            "-o", str(output), "--state", str(state), "--quiet", "--workers", str(workers),
            *extra]  # fmt: skip
    env = {**os.environ, "TILERUNNER_LOG_LEVEL": "DEBUG"}
    log = workdir / f"run-seg-{tag}.log"
    started, cpu = time.perf_counter(), _children_cpu()
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid)
        while proc.poll() is None:
            sampler.sample()
            time.sleep(poll)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"tilerunner run failed ({proc.returncode}); see {log}")
    stamps = {m: t for t, m in filter(None, map(_log_stamp, log.read_text().splitlines()))}
    aggregation = stamps.get(_AGGREGATED, float("nan")) - stamps.get(_AGGREGATING, float("nan"))
    hwm = sampler.hwm_kib.values()
    return RunFigures(size, workers, seconds, cpu, aggregation, sampler.peak_tree_kib * 1024,
                      max(hwm) * 1024, len(hwm))  # fmt: skip


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--size", type=int, default=16384, help="image width and height of the phases")
    add("--tile-size", type=int, default=512)
    add("--overlap", type=int, default=32)
    add("--region-size", type=int, default=4096)
    add("--batch-size", type=int, default=None,
        help="tiles per model call (default: the run's for segmenters)")  # fmt: skip
    add("--readers", type=int, default=2)
    add("--strip-mb", type=int, default=STRIP_BYTES // 2**20,
        help="read_only: strip budget per region, as workers read (0: per tile)")  # fmt: skip
    add("--workers", type=int, nargs="+", default=[1, 2], help="worker counts of end_to_end")
    add("--memory-sizes", type=int, nargs="*", default=[8192, 16384],
        help="image sizes of the memory runs (one worker)")  # fmt: skip
    add("--vector-size", type=int, default=2048,
        help="pixels per side of the class raster that vectorize is timed on")  # fmt: skip
    add("--vector-window", type=int, default=512, help="vectorize's window")
    add("--model-width", type=int, default=16, help="channels of each 1x1 convolution")
    add("--model-depth", type=int, default=2, help="1x1 convolutions")
    add("--classes", type=int, default=4)
    add("--poll", type=float, default=0.1, help="seconds between samples of the process tree")
    add("--seed", type=int, default=0)
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    add("--json", type=Path, default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def _scene(args: argparse.Namespace, size: int) -> Path:
    started = time.perf_counter()
    image = make_scene(args.workdir / f"scene-{size}-s{args.seed}.cog.tif", size, seed=args.seed)
    print(f"image {image} ({image.stat().st_size / 2**20:.0f} MiB) "
          f"ready after {time.perf_counter() - started:.0f} s")  # fmt: skip
    return image


def _show(t: Timing) -> None:
    print(f"  {t.name:<11} {t.seconds:8.2f} s  {t.tiles_per_second:7.1f} tiles/s  "
          f"CPU {t.cpu_seconds:7.2f} s")  # fmt: skip


def _show_run(r: RunFigures) -> None:
    print(f"  end_to_end {r.size} px, {r.workers} worker(s): {r.seconds:8.2f} s (CPU "
          f"{r.cpu_seconds:.2f} s), aggregation "
          f"{r.aggregation_seconds:.2f} s ({r.aggregation_seconds / r.seconds:.1%}), peak tree "
          f"RSS {r.peak_tree_bytes / 2**20:.0f} MiB over {r.processes} processes (largest "
          f"{r.peak_process_bytes / 2**20:.0f} MiB)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Build (or reuse) the images and the model, measure every phase, print and save."""
    args = _arguments(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    onnx_path = make_segmenter_onnx(
        args.workdir / f"segmenter-{args.model_width}-{args.model_depth}-{args.classes}.onnx",
        width=args.model_width, depth=args.model_depth, n_classes=args.classes,
    )  # fmt: skip
    model = load_model(str(onnx_path))
    image = _scene(args, args.size)
    url = str(image)
    regions = plan_regions(args.size, args.tile_size, args.overlap, args.region_size, None)
    n_tiles = sum(len(t) for t in regions)
    print(f"{n_tiles} tiles of {args.tile_size} px (overlap {args.overlap}) in {len(regions)} "
          f"regions; batch {args.batch_size or default_batch_size('segment')}, "
          f"{args.readers} readers")  # fmt: skip
    sample = _sample(url, regions)
    read = time_reads(url, regions, args.readers, args.strip_mb * 2**20)
    _show(read)
    batch = args.batch_size or default_batch_size("segment")
    infer = time_model(model, sample, n_tiles, batch)
    _show(infer)
    extra = ["--tile-size", str(args.tile_size), "--overlap", str(args.overlap),
             "--region-size", str(args.region_size), "--readers", str(args.readers),
             *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]  # fmt: skip
    runs = [run_segment(image, onnx_path, args.size, w, args.workdir, extra, args.poll)
            for w in args.workers]  # fmt: skip
    for run in runs:
        _show_run(run)
    parts, cog = time_writes(args.workdir / f"classes-{args.size}-w{runs[0].workers}.tif",
                             args.size, args.tile_size, args.overlap, args.region_size,
                             args.workdir / "write-only.tif")  # fmt: skip
    _show(parts)
    _show(cog)
    vectors = time_vectorize(args.workdir / f"classes-{args.size}-w{runs[0].workers}.tif",
                             min(args.vector_size, args.size), args.vector_window,
                             args.workdir)  # fmt: skip
    print(f"  vectorize {vectors['size']} px in {vectors['window']} px windows: "
          f"{vectors['vectorize_seconds']:.2f} s for {vectors['polygons']} polygons; one "
          f"shapes call over the array {vectors['whole_shapes_seconds']:.2f} s")  # fmt: skip
    plain_out = args.workdir / "plain-loop.tif"
    plain, plain_cog, plain_cog_cpu = time_plain_loop(url, model, plain_out, 512)
    _show(plain)
    print(f"    of which the COG translate {plain_cog:.2f} s (CPU {plain_cog_cpu:.2f} s)")
    phases = (read, infer, parts, cog)
    ratio = runs[0].seconds / sum(t.seconds for t in phases)
    cpu_ratio = runs[0].cpu_seconds / sum(t.cpu_seconds for t in phases)
    print(f"end_to_end ({runs[0].workers} worker) / (read + model + write): wall {ratio:.3f}, "
          f"CPU {cpu_ratio:.3f}; end_to_end / plain loop: wall "
          f"{runs[0].seconds / plain.seconds:.3f}, CPU "
          f"{runs[0].cpu_seconds / plain.cpu_seconds:.3f}")  # fmt: skip
    if len(runs) > 1:
        print(f"{runs[0].workers} -> {runs[-1].workers} workers: speed-up "
              f"{runs[0].seconds / runs[-1].seconds:.2f}x")  # fmt: skip
    memory = []
    for size in args.memory_sizes:
        if size == args.size and runs and runs[0].workers == 1:
            memory.append(runs[0])
            continue
        memory.append(run_segment(_scene(args, size), onnx_path, size, 1, args.workdir, extra,
                                  args.poll))  # fmt: skip
        _show_run(memory[-1])
    report: dict[str, object] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "tiles": n_tiles,
        "phases": {
            t.name: {**asdict(t), "tiles_per_second": t.tiles_per_second}
            for t in (read, infer, parts, cog, plain)
        },
        "plain_loop_cog_seconds": plain_cog,
        "plain_loop_cog_cpu_seconds": plain_cog_cpu,
        "runs": [asdict(r) for r in runs],
        "memory": [asdict(r) for r in memory],
        "vectorize": vectors,
        "ratio_end_to_end_to_sum": ratio,
        "cpu_ratio_end_to_end_to_sum": cpu_ratio,
        "load_average_1min": os.getloadavg()[0],
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
