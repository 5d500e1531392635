"""Segment jobs run in this process: planned into SQLite, worked by N in-process workers (each
with its own model instance), aggregated; plus the whole-image reference they are compared to."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.transform import from_origin

from tilerunner.broker import Queue, open_queue
from tilerunner.coordinator import AggregateResult, aggregate_job, submit_job
from tilerunner.imagery import GdalEnv, RasterReader
from tilerunner.jobs import parse_job
from tilerunner.models import load_model
from tilerunner.store import Store, open_store
from tilerunner.tiling import Window
from tilerunner.work.direct import DirectWorkSource
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.worker import Worker, WorkerOptions

PIXEL = "tilerunner.testing.segmenters:PixelSegmenter"
MEAN = "tilerunner.testing.segmenters:MeanFilterSegmenter"


def make_scene(path: Path, width: int, height: int, seed: int = 0, nodata: bool = True) -> Path:
    """A seeded 3-band uint8 GeoTIFF (UTM, 0.5 m) with smooth structure, noise and, with
    ``nodata``, a nodata (0) block and a few nodata pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (128 + 100 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(np.int64)
    bands = np.stack([base + rng.integers(-40, 40, base.shape) for _ in range(3)])
    data = np.clip(bands, 1, 255).astype(np.uint8)
    if nodata:
        data[:, height // 3 : height // 3 + 9, width // 2 : width // 2 + 13] = 0
        data[:, rng.integers(0, height, 20), rng.integers(0, width, 20)] = 0
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32617", "transform": from_origin(400000, 3300000, 0.5, 0.5),
               "nodata": 0 if nodata else None}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def whole_image(source: Path, model_spec: str, params: dict[str, str]) -> NDArray[np.uint8]:
    """The model run once on the whole image (as one tile), nodata where the source is."""
    model = load_model(model_spec, params, name="m")
    with RasterReader(str(source)) as reader:
        pixels = reader.read(Window(0, 0, reader.info.width, reader.info.height))
        invalid = reader.invalid_mask(Window(0, 0, reader.info.width, reader.info.height))
    (output,) = model.predict(pixels[None])
    ids = output.classes if output.classes is not None else output.probabilities.argmax(axis=0)  # type: ignore[union-attr]
    out = np.asarray(ids).astype(np.uint8)
    if invalid is not None:
        out[invalid] = 255
    return out


def read_raster(path: Path | str, band: int = 1) -> NDArray[Any]:
    with rasterio.open(path) as src:
        return src.read(band)


def segment_job(source: Path, output: Path | str, model_spec: str, params: dict[str, str],
                *, tile: int, overlap: int, region: int, blend: str = "none",
                probabilities: str = "none") -> Any:  # fmt: skip
    return parse_job(
        {
            "sources": [str(source)],
            "pipeline": [
                {"task": "segment", "model": "m", "params": params,
                 "segment": {"output": str(output), "blend": blend,
                             "probabilities": probabilities}},
            ],
            "tiling": {"tile_size": tile, "overlap": overlap, "region_size": region},
        }
    )  # fmt: skip


def run_in_process(
    state: Path,
    spec: Any,
    model_spec: str,
    params: dict[str, str],
    workers: int = 1,
    s3_endpoint_url: str | None = None,
) -> tuple[Store, AggregateResult]:
    """Plan ``spec``, work it with ``workers`` in-process workers, aggregate it."""
    url = f"sqlite:///{state}"
    store = open_store(url)
    queues: dict[str, Queue] = {}

    def queue_for(name: str) -> Queue:
        if name not in queues:
            queues[name] = open_queue(url, name)
        return queues[name]

    env = GdalEnv.for_s3(endpoint_url=s3_endpoint_url)
    job_id, _ = submit_job(store, queue_for, spec, env=env)

    def finished() -> bool:
        c = store.counts(job_id)
        return c.regions_finished >= c.regions_total

    threads = []
    for _ in range(workers):
        service = WorkService(store, queue_for, WorkServiceOptions(lease_seconds=30))
        model = load_model(model_spec, params, name="m")
        options = WorkerOptions(lease_seconds=30, batch_size=3, s3_endpoint_url=s3_endpoint_url)
        worker = Worker(DirectWorkSource(service), {"m": model}, options, env=env)
        threads.append(threading.Thread(target=worker.run, kwargs={"until": finished}))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "segment job not worked to the end in 120 s"
    return store, aggregate_job(store, job_id, env, s3_endpoint_url)
