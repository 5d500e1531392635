"""What a worker needs to know about a region beyond its message, cached per job and image."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tilerunner.imagery import BandSpec, GdalEnv, RasterReader
from tilerunner.jobs import JobSpec, parse_job
from tilerunner.store import Store
from tilerunner.tiling import RegionGrid, TileGrid, TileRef

__all__ = ["ImageContext", "RegionContexts"]


@dataclass(frozen=True, slots=True)
class ImageContext:
    spec: JobSpec
    reader: RasterReader
    regions: RegionGrid
    width: int
    height: int

    def tiles(self, region_idx: int) -> tuple[TileRef, ...]:
        return tuple(self.regions.tiles(self.regions.region(region_idx)))


class RegionContexts:
    """Job specs and open readers, kept while a worker serves a job's regions."""

    def __init__(
        self,
        store: Store,
        env: GdalEnv | None = None,
        max_images: int = 32,
        input_ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self._store = store
        self._input_ranges = input_ranges or {}
        self._env = env
        self._max_images = max_images
        self._jobs: dict[str, JobSpec] = {}
        self._images: dict[tuple[str, int], ImageContext] = {}
        self._lock = threading.Lock()

    def job(self, job_id: str) -> JobSpec:
        with self._lock:
            spec = self._jobs.get(job_id)
        if spec is None:
            record = self._store.get_job(job_id)
            if record is None:
                raise LookupError(job_id)
            spec = parse_job(record.spec)
            with self._lock:
                self._jobs[job_id] = spec
        return spec

    def image(self, job_id: str, image_idx: int) -> ImageContext:
        key = (job_id, image_idx)
        with self._lock:
            found = self._images.get(key)
        if found is not None:
            return found
        spec = self.job(job_id)
        record = self._store.image(job_id, image_idx)
        tiling = spec.tiling
        grid = TileGrid(record.width, record.height, tiling.tile_size, tiling.overlap)
        # Non-uint8 pixels are scaled from the job's range, else the range the model card declares.
        scale = tiling.scale or self._input_ranges.get(spec.pipeline[0].model)
        bands = BandSpec(bands=tuple(tiling.bands) if tiling.bands else None, scale=scale)
        context = ImageContext(
            spec=spec,
            reader=RasterReader(record.url, bands, env=self._env),
            regions=RegionGrid(grid, record.region_tiles),
            width=record.width,
            height=record.height,
        )
        with self._lock:
            if len(self._images) >= self._max_images:
                oldest = next(iter(self._images))
                self._images.pop(oldest).reader.close()
            self._images[key] = context
        return context

    def close(self) -> None:
        with self._lock:
            for context in self._images.values():
                context.reader.close()
            self._images.clear()
