"""GPU benchmark: a real detector through ONNX Runtime's CUDA provider, end to end over a large
seeded COG: tiles per second, how busy the GPU is, and the time of each stage.

    .venv/bin/python bench/gpu.py --size 16384 --json bench-gpu.json    # a GPU machine
    .venv/bin/python bench/gpu.py --size 2048 --json bench-gpu-cpu.json  # any machine, quick

The model is the zoo's YOLOv3-tiny (80 COCO classes, 416 px input), fetched once and converted
from Darknet to ONNX by ``bench/darknet_onnx.py``; ``--model synthetic`` uses a seeded
convolution stack of ``tilerunner.testing`` instead (no download). With ``nvidia-ml-py`` and
``onnxruntime-gpu`` installed (the ``bench`` extra and ``pip install onnxruntime-gpu``) and an
NVIDIA GPU present, the model runs on ``CUDAExecutionProvider``; otherwise the script says
``no GPU: CPU provider`` and measures the same stages on the CPU.

Stages, each timed on its own, then together: **read_only** (reader threads decode every tile
window, no model), **model_only** (``LoadedModel.predict`` on decoded tiles, batches of
``--batch-size``: resize, normalise, infer, decode), **end_to_end** (the worker's
``TilePipeline``: readers, batcher, model, post-processing over every region). A thread samples
NVML's GPU utilisation every 0.05 s during the model-only and end-to-end stages. ``--size``
bounds the run (tiles grow with its square); ``--limit-tiles`` cuts it shorter still.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime

from darknet_onnx import convert
from pipeline import (
    Timing,
    machine,
    make_scene,
    plan_regions,
    time_model,
    time_pipeline,
    time_reads,
)
from tilerunner.imagery import RasterReader
from tilerunner.models import LoadedModel, load_model
from tilerunner.pipeline import STRIP_BYTES

T = TypeVar("T")
_CUDA = "CUDAExecutionProvider"


@dataclass
class GpuSampler:
    """NVML utilisation of one GPU, sampled in a thread while a stage runs."""

    index: int = 0
    period: float = 0.05
    samples: list[int] = field(default_factory=list)
    memory_mib: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            self.samples.append(int(rates.gpu))
            self.memory_mib.append(memory.used / 2**20)

    def during(self, stage: Callable[[], T]) -> tuple[T, dict[str, float]]:
        """Run ``stage`` while sampling; its result and the mean / max busy percentage."""
        self.samples, self.memory_mib = [], []
        self._stop.clear()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            result = stage()
        finally:
            self._stop.set()
            thread.join()
        busy = {
            "gpu_busy_mean_pct": round(statistics.fmean(self.samples), 1) if self.samples else 0.0,
            "gpu_busy_max_pct": float(max(self.samples, default=0)),
            "gpu_memory_max_mib": round(max(self.memory_mib, default=0.0), 1),
            "samples": float(len(self.samples)),
        }
        return result, busy


def gpu_probe() -> tuple[str, GpuSampler | None, dict[str, object]]:
    """The provider to use, a sampler when there is a GPU to sample, and what was found."""
    found: dict[str, object] = {"ort_providers": onnxruntime.get_available_providers()}
    try:
        import pynvml
    except ImportError:
        found["nvml"] = "nvidia-ml-py is not installed (pip install 'tilerunner[bench]')"
        return "CPUExecutionProvider", None, found
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = [pynvml.nvmlDeviceGetName(h) for h in handles]
        found["gpus"] = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        found["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError as error:  # no driver or no device: measured on the CPU
        found["nvml"] = str(error)
        return "CPUExecutionProvider", None, found
    if not count or _CUDA not in onnxruntime.get_available_providers():
        found["note"] = "a GPU, but this onnxruntime has no CUDA provider (onnxruntime-gpu)"
        return "CPUExecutionProvider", None, found
    return _CUDA, GpuSampler(0), found


def build_model(kind: str, workdir: Path, cache_dir: Path) -> Path:
    """The ONNX file (with its card) of ``kind``: ``yolov3-tiny`` or ``synthetic``."""
    if kind == "synthetic":
        from tilerunner.testing.onnx_models import make_detector_onnx

        path = workdir / "synthetic-416.onnx"
        return path if path.exists() else make_detector_onnx(
            path, input_size=416, width=32, depth=6, n_boxes=8, n_classes=80
        )  # fmt: skip
    from tilerunner.models.zoo import ZOO, fetch_asset

    path = workdir / "yolov3-tiny.onnx"
    if not path.exists():
        files = fetch_asset(ZOO["yolov3-tiny-coco"].asset, cache_dir)
        convert(files["cfg"], files["weights"], files["names"], path)
    return path


def _sample(url: str, regions: Sequence[Sequence[Any]], count: int) -> np.ndarray[Any, Any]:
    tiles = [t for region in regions for t in region][:count]
    with RasterReader(url) as reader:
        return np.stack([reader.read(t.window) for t in tiles])


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--size", type=int, default=16384, help="COG width and height in pixels")
    add("--model", choices=["yolov3-tiny", "synthetic"], default="yolov3-tiny")
    add("--tile-size", type=int, default=512)
    add("--overlap", type=int, default=64)
    add("--region-size", type=int, default=4096)
    add("--batch-size", type=int, default=16)
    add("--readers", type=int, default=4, help="reader threads")
    add("--strip-mb", type=int, default=STRIP_BYTES // 2**20,
        help="strip budget of the readers in MiB; 0 reads tile by tile")  # fmt: skip
    add("--limit-tiles", type=int, default=None, help="only the first N tiles (quick runs)")
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench-gpu"))
    add("--cache-dir", type=Path, default=Path.home() / ".cache" / "tilerunner")
    add("--json", type=Path, default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def _row(t: Timing, busy: dict[str, float] | None) -> dict[str, Any]:
    return {"seconds": round(t.seconds, 3), "tiles": t.tiles,
            "tiles_per_second": round(t.tiles_per_second, 1),
            "cpu_seconds": round(t.cpu_seconds, 2), **(busy or {})}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _arguments(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    provider, sampler, found = gpu_probe()
    print(f"GPU: {found['gpus']} on {provider}" if sampler else "no GPU: CPU provider")
    stages: dict[str, Any] = {}

    started = time.perf_counter()
    image = make_scene(args.workdir / f"scene-{args.size}.cog.tif", args.size)
    stages["scene"] = {"seconds": round(time.perf_counter() - started, 3)}
    started = time.perf_counter()
    onnx_path = build_model(args.model, args.workdir, args.cache_dir)
    stages["model_build"] = {"seconds": round(time.perf_counter() - started, 3)}
    started = time.perf_counter()
    model: LoadedModel = load_model(str(onnx_path), {"providers": provider}, name="det")
    stages["model_load"] = {"seconds": round(time.perf_counter() - started, 3)}

    regions = plan_regions(args.size, args.tile_size, args.overlap, args.region_size,
                           args.limit_tiles)  # fmt: skip
    n_tiles = sum(len(r) for r in regions)
    url = str(image)
    sample = _sample(url, regions, 32)
    strip_bytes = args.strip_mb * 2**20
    read = time_reads(url, regions, args.readers, strip_bytes)
    stages["read_only"] = _row(read, None)

    def run_model() -> Timing:
        return time_model(model, sample, n_tiles, args.batch_size)

    def run_pipeline() -> tuple[Timing, int, Any]:
        return time_pipeline(model, url, regions, args.size, args.batch_size, args.readers,
                             strip_bytes)  # fmt: skip

    if sampler is not None:
        timing, busy = sampler.during(run_model)
        stages["model_only"] = _row(timing, busy)
        (timing, features, stats), busy = sampler.during(run_pipeline)
    else:
        stages["model_only"] = _row(run_model(), None)
        (timing, features, stats), busy = run_pipeline(), None
    stages["end_to_end"] = {**_row(timing, busy), "features": features,
                            "inside_read_seconds": round(stats.read_seconds, 2),
                            "inside_model_seconds": round(stats.model_seconds, 2),
                            "batches": stats.batches}  # fmt: skip
    report = {
        "machine": {**machine(), **found}, "provider": provider, "model": args.model,
        "model_classes": len(model.classes), "size": args.size, "tiles": n_tiles,
        "regions": len(regions), "batch_size": args.batch_size, "readers": args.readers,
        "stages": stages,
    }  # fmt: skip
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"{report['model']} on {report['provider']}: {report['size']} px COG, "
          f"{report['tiles']} tiles in {report['regions']} regions, batch {report['batch_size']}, "
          f"{report['readers']} readers")  # fmt: skip
    print(f"{'stage':<13}{'seconds':>9}{'tiles/s':>10}{'CPU s':>8}{'GPU busy %':>12}")
    for name, row in report["stages"].items():
        rate = f"{row['tiles_per_second']:.1f}" if "tiles_per_second" in row else "-"
        cpu = f"{row['cpu_seconds']:.2f}" if "cpu_seconds" in row else "-"
        busy = f"{row['gpu_busy_mean_pct']:.0f}" if "gpu_busy_mean_pct" in row else "-"
        print(f"{name:<13}{row['seconds']:>9.2f}{rate:>10}{cpu:>8}{busy:>12}")
    e2e = report["stages"]["end_to_end"]
    print(f"end_to_end: {e2e['features']} features; inside it reads "
          f"{e2e['inside_read_seconds']} s (sum over readers), model "
          f"{e2e['inside_model_seconds']} s in {e2e['batches']} batches")  # fmt: skip


if __name__ == "__main__":
    main()
