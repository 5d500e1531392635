"""COG assembly benchmark: ways of joining a segment run's region parts into its COG.

The parts are the cores of a finished class raster (``CLASSES``, e.g. the one ``bench/segment.py``
leaves in its workdir), cut as a segment run cuts them (512 px tiles, 32 px overlap, 4096 px
regions) and published with :func:`tilerunner.outputs.cog.write_part`. Each way is timed in wall
and CPU seconds of this process, GDAL's threads included, and checked pixel for pixel against
``CLASSES``:

* ``vrt``    - a VRT of the parts translated once by GDAL's COG driver (what a run does);
* ``staged`` - the VRT first copied to a tiled GeoTIFF (ZSTD level 1), then that to the COG;
* ``vrt-level-N`` - as ``vrt``, DEFLATE at level N instead of GDAL's default (6);
* ``vrt-no-overviews`` - as ``vrt`` without overviews (what building them costs);
* ``vrt-gdal-threads`` - as ``vrt`` with ``GDAL_NUM_THREADS=ALL_CPUS`` set as well.

Each way runs on parts compressed with DEFLATE and with ZSTD level 1 (``--part-codecs``).

    .venv/bin/python bench/cog_assembly.py /tmp/tilerunner-bench/classes-16384-w1.tif
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window as RioWindow

from tilerunner.merging.segment import region_core
from tilerunner.outputs import cog
from tilerunner.outputs.cog import PartRef, RasterGrid, write_part
from tilerunner.tiling import RegionGrid, TileGrid

_COG = {"driver": "COG", "compress": "deflate", "blocksize": 512, "overview_resampling": "mode",
        "num_threads": "ALL_CPUS", "bigtiff": "IF_SAFER"}  # fmt: skip
_CODECS = {"deflate": {"compress": "deflate"}, "zstd1": {"compress": "zstd", "zstd_level": 1}}
_WAYS = ("vrt", "staged", "vrt-level-1", "vrt-level-3", "vrt-no-overviews", "vrt-gdal-threads")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def publish_parts(classes: Path, workdir: Path, codec: str) -> tuple[list[PartRef], float, float]:
    """The run's parts, written with ``codec``; (parts, wall s, CPU s) of the writes alone."""
    target = workdir / f"parts-{codec}"
    shutil.rmtree(target, ignore_errors=True)
    plain_profile = cog._profile
    parts, seconds, cpu = [], 0.0, 0.0

    def profile(*args: Any) -> dict[str, Any]:
        return {**plain_profile(*args), **_CODECS[codec]}

    cog._profile = profile  # the codec is the one thing that differs from a run's parts
    try:
        with rasterio.open(classes) as src:
            grid = TileGrid(src.width, src.height, 512, 32)
            regions = RegionGrid.from_pixels(grid, 4096)
            transform, crs = tuple(src.transform)[:6], src.crs.to_wkt()
            for index, region in enumerate(regions.regions()):
                core = region_core(regions, region)
                window = RioWindow(core.col_off, core.row_off, core.width, core.height)
                pixels = src.read(1, window=window)
                started, cpu_started = time.perf_counter(), _cpu()
                uri = str(target / f"0-{index}.tif")
                parts.append(write_part(uri, core, pixels[None], src.nodata, transform, crs))
                seconds += time.perf_counter() - started
                cpu += _cpu() - cpu_started
    finally:
        cog._profile = plain_profile
    return parts, seconds, cpu


def assemble(way: str, vrt: Path, out: Path) -> None:
    """Join the parts of ``vrt`` into the COG ``out`` one ``way``."""
    options: dict[str, Any] = dict(_COG)
    if way.startswith("vrt-level-"):
        options["level"] = int(way.rsplit("-", 1)[1])
    elif way == "vrt-no-overviews":
        options["overviews"] = "NONE"
    env = {"GDAL_NUM_THREADS": "ALL_CPUS"} if way == "vrt-gdal-threads" else {}
    with rasterio.Env(**env):
        if way == "staged":
            staged = out.with_suffix(".staged.tif")
            rasterio.shutil.copy(vrt, staged, driver="GTiff", tiled=True, blockxsize=512,
                                 blockysize=512, compress="zstd", zstd_level=1,
                                 num_threads="ALL_CPUS", bigtiff="IF_SAFER")  # fmt: skip
            rasterio.shutil.copy(staged, out, **options)
            staged.unlink()
        else:
            rasterio.shutil.copy(vrt, out, **options)


def _same(a: Path, b: Path) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        rows = range(0, x.height, 1024)
        return all(
            np.array_equal(x.read(1, window=RioWindow(0, r, x.width, min(1024, x.height - r))),
                           y.read(1, window=RioWindow(0, r, y.width, min(1024, y.height - r))))
            for r in rows
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("classes", type=Path, help="a finished class raster (one band, uint8)")
    parser.add_argument("--ways", nargs="+", default=list(_WAYS), choices=_WAYS)
    parser.add_argument("--part-codecs", nargs="+", default=list(_CODECS), choices=list(_CODECS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tilerunner-bench/cog"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with rasterio.open(args.classes) as src:
        grid = RasterGrid(src.width, src.height, tuple(src.transform)[:6], src.crs.to_wkt())
        nodata = src.nodata
    rows: list[dict[str, object]] = []
    for codec in args.part_codecs:
        parts, seconds, cpu = publish_parts(args.classes, args.workdir, codec)
        size = sum(os.path.getsize(p.uri) for p in parts)
        print(f"parts {codec}: {len(parts)} written in {seconds:.2f} s (CPU {cpu:.2f} s), "
              f"{size / 2**20:.1f} MiB")  # fmt: skip
        vrt = args.workdir / "parts.vrt"
        vrt.write_text(cog._vrt(parts, grid, 1, "uint8", nodata), encoding="utf-8")
        for way in args.ways:
            out = args.workdir / f"{codec}-{way}.tif"
            out.unlink(missing_ok=True)
            started, cpu_started = time.perf_counter(), _cpu()
            assemble(way, vrt, out)
            wall, used = time.perf_counter() - started, _cpu() - cpu_started
            same = _same(out, args.classes)
            print(f"  {way:<17} {wall:7.2f} s  CPU {used:7.2f} s  "
                  f"{out.stat().st_size / 2**20:6.1f} MiB  pixels equal: {same}")  # fmt: skip
            rows.append({"parts": codec, "way": way, "seconds": wall, "cpu_seconds": used,
                         "bytes": out.stat().st_size, "part_seconds": seconds,
                         "part_cpu_seconds": cpu, "equal": same})  # fmt: skip
            out.unlink()
        shutil.rmtree(args.workdir / f"parts-{codec}", ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
