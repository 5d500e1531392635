"""Reading pixels: the only module that opens rasters.

Workers read many tile windows of one image from several threads at once; GDAL releases the GIL
while it decodes, so threads give real parallelism, but a GDAL dataset handle must never be used
by two threads at the same time. :class:`RasterReader` therefore lends each read a handle of
its own from a small pool: one that an earlier read gave back, or a new one when every handle is
in use. So a reader opens as many handles as reads ever ran at once (the one that read its header
serves the first read; each ``open`` of a remote image costs a request), and closes them
together.

Every read returns the model contract's layout, ``uint8 [height, width, channels]``: GDAL writes
pixel-interleaved straight into the output array (no transpose copy), windows that reach past the
image are zero-padded, masked or nodata pixels are zeroed, and non-``uint8`` data is stretched
linearly to 0..255 in one vectorised pass. Models that take the source's own values (reflectance,
elevation: ``native_input`` in the model contract) get :meth:`RasterReader.read_native` instead:
``float32`` values unscaled, with ``NaN`` where a ``uint8`` read would put 0.

How workers read: by strips, through GDAL. Object storage answers each request after 20-100 ms,
so what matters remotely is how many requests are made one after the other, and whether
overlapping tiles fetch the same internal blocks again. Four designs were measured side by side
on one 8192 x 6144 DEFLATE COG (512 px blocks) served over HTTP with 0, 50 and 100 ms added per
request (``bench/reads.py``, figures in ``docs/benchmarks.md``):

(a) a read per tile window (the earlier design): one request at a time per reader thread, and
    the blocks under every overlap fetched again once GDAL's caches have moved on;
(b) reads of whole block-aligned strips of a region (:mod:`tilerunner.tiling.strips`), cut into
    tiles in memory (:mod:`tilerunner.pipeline.reads`): GDAL turns one window spanning many
    blocks into parallel range requests, one per run of consecutive blocks, and with
    ``GDAL_NUM_THREADS`` merges them and decodes on several threads; no block is fetched twice;
(c) (a) with more reader threads: more requests in flight, but each still small and the
    overlaps still fetched again, and every thread holds its own dataset handle and caches;
(d) a reader that fetches and decodes COG tiles itself (async-tiff, obstore): not built; (b)
    already keeps the requests of a strip in flight together, and GDAL keeps every format,
    nodata, mask and scaling rule in one place.

(b) read 1.9, 2.0 and 2.7 times faster than (a) at 0, 50 and 100 ms, with 5 times fewer
requests, a third less CPU and each block fetched about once, while (a) fetched 1.2 to 1.5 times
the file and (c) 2.5 times, slower than (a); so (b) is what workers use, with GDAL's thread pool
on for remote reads (fewer, merged requests; the faster variant), and memory bounded by the
strip budget (``read_strip_mb``). Local files are read the same way, with GDAL's
single-threaded decoding (there the model is what a worker waits for).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window as RioWindow

from tilerunner.errors import InvalidRequestError, RetryableError, SourceError
from tilerunner.imagery.gdal_env import GdalEnv, is_remote
from tilerunner.imagery.read_ahead import ReadAhead
from tilerunner.tiling.strips import Strip, plan_strips
from tilerunner.tiling.window import Window

__all__ = [
    "BandSpec",
    "GeoMetadata",
    "ImageInfo",
    "RasterReader",
    "open_dataset",
    "probe",
    "read_geo_metadata",
]

logger = logging.getLogger(__name__)

_FORMATS_HINT = "check that it exists and is a raster (GeoTIFF, COG, JPEG, PNG, NITF)"


@contextmanager
def open_dataset(url: str, env: GdalEnv | None = None) -> Iterator[Any]:
    """Open ``url`` inside its GDAL environment; GDAL failures become :class:`SourceError`."""
    env = env or GdalEnv.default()
    with env.context(url):
        dataset = _open(url)
        try:
            yield dataset
        finally:
            dataset.close()


def _open(url: str) -> Any:
    try:
        with warnings.catch_warnings():
            # Photos have no georeferencing; that is expected, not worth a warning per open.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(url)
    except RasterioError as exc:
        raise SourceError(f"cannot open {url!r}: {exc}; {_FORMATS_HINT}") from exc


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What planning needs to know about an image, read from its header only.

    ``transform`` is the affine geotransform as six numbers ``(a, b, c, d, e, f)`` (rasterio /
    ``affine`` order), ``None`` when the file has none (photos, RPC- or GCP-only scenes).
    """

    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str | None
    transform: tuple[float, ...] | None
    has_rpcs: bool
    has_gcps: bool
    nodata: float | None

    @property
    def georeferenced(self) -> bool:
        """Whether pixels can be placed on the map (affine + CRS, RPCs, or GCPs)."""
        affine = self.transform is not None and self.crs_wkt is not None
        return affine or self.has_rpcs or self.has_gcps


@dataclass(frozen=True, slots=True)
class GeoMetadata:
    """The raw georeferencing of an image, for :class:`tilerunner.georef.Georeferencer`.

    ``rpcs`` is a ``rasterio.rpc.RPC``; ``gcps`` are ``rasterio.control.GroundControlPoint``.
    """

    crs_wkt: str | None
    transform: tuple[float, ...] | None
    rpcs: Any | None
    gcps: tuple[Any, ...]
    gcp_crs_wkt: str | None


def _transform_of(dataset: Any) -> tuple[float, ...] | None:
    # GDAL reports the identity transform for files without one; treat it as "none".
    if dataset.transform.is_identity and dataset.crs is None:
        return None
    return tuple(float(v) for v in dataset.transform)[:6]


def image_info(dataset: Any) -> ImageInfo:
    """:class:`ImageInfo` of an open rasterio dataset."""
    gcps, _ = dataset.gcps
    nodata = dataset.nodata
    return ImageInfo(
        width=int(dataset.width),
        height=int(dataset.height),
        count=int(dataset.count),
        dtype=str(dataset.dtypes[0]),
        crs_wkt=dataset.crs.to_wkt() if dataset.crs else None,
        transform=_transform_of(dataset),
        has_rpcs=dataset.rpcs is not None,
        has_gcps=bool(gcps),
        nodata=None if nodata is None else float(nodata),
    )


def probe(url: str, env: GdalEnv | None = None) -> ImageInfo:
    """Open ``url`` for its metadata only (no pixels are read)."""
    with open_dataset(url, env) as dataset:
        return image_info(dataset)


def read_geo_metadata(url: str, env: GdalEnv | None = None) -> GeoMetadata:
    """Transform, CRS, RPCs and GCPs of ``url``, read from its header."""
    with open_dataset(url, env) as dataset:
        gcps, gcp_crs = dataset.gcps
        return GeoMetadata(
            crs_wkt=dataset.crs.to_wkt() if dataset.crs else None,
            transform=_transform_of(dataset),
            rpcs=dataset.rpcs,
            gcps=tuple(gcps),
            gcp_crs_wkt=gcp_crs.to_wkt() if gcp_crs else None,
        )


@dataclass(frozen=True)
class BandSpec:
    """Which bands to read (1-based) and the value range mapped to 0..255.

    ``bands=None`` means RGB: the first three bands, or band 1 repeated three times for one- or
    two-band images. ``scale=(lo, hi)`` maps ``lo`` to 0 and ``hi`` to 255, clipping outside;
    without it ``uint8`` is read as is, other integers use ``(0, dtype max)`` and floats ``(0, 1)``.
    """

    bands: tuple[int, ...] | None = None
    scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise InvalidRequestError(
                f"bands {self.bands!r} are invalid; give one or more 1-based band numbers"
            )
        if self.scale is not None and not self.scale[1] > self.scale[0]:
            raise InvalidRequestError(
                f"scale {self.scale!r} is invalid; give (low, high) with high > low"
            )


def _default_scale(dtype: np.dtype[Any]) -> tuple[float, float] | None:
    if dtype == np.uint8:
        return None
    if np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    return 0.0, 1.0


def _nodata_scalar(nodata: float | None, dtype: np.dtype[Any]) -> np.generic | None:
    """``nodata`` in the band's dtype, or ``None`` when no pixel can hold that value."""
    if nodata is None:
        return None
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        if not (float(nodata).is_integer() and limits.min <= nodata <= limits.max):
            return None
    return dtype.type(nodata)  # type: ignore[no-any-return]


class RasterReader:
    """Thread-safe window reader for one image.

    ``read`` may be called from any number of threads; each read borrows a dataset handle that
    no other read is using (opened inside the reader's GDAL environment when none is free) and
    gives it back. ``close`` closes every handle.
    """

    def __init__(self, url: str, bands: BandSpec = BandSpec(), env: GdalEnv | None = None) -> None:
        self.url = url
        self.env = env or GdalEnv.default()
        self._handles: list[Any] = []
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._ahead: ReadAhead | None = None
        try:
            with self._dataset() as dataset:
                self._describe(dataset, bands)
        except BaseException:
            self.close()
            raise

    def _describe(self, dataset: Any, bands: BandSpec) -> None:
        url = self.url
        self.info: ImageInfo = image_info(dataset)
        self._dtype = np.dtype(self.info.dtype)
        self._scale = bands.scale or _default_scale(self._dtype)
        if bands.bands is None:
            self._indexes = [1, 2, 3] if self.info.count >= 3 else [1]
            self.channels = 3
        else:
            too_high = [b for b in bands.bands if b > self.info.count]
            if too_high:
                raise InvalidRequestError(
                    f"band {too_high[0]} requested but {url!r} has {self.info.count} band(s); "
                    f"choose bands between 1 and {self.info.count}"
                )
            self._indexes = list(bands.bands)
            self.channels = len(bands.bands)
        flags = [dataset.mask_flag_enums[i - 1] for i in self._indexes]
        uses_nodata = any(MaskFlags.nodata in f for f in flags)
        self._nodata = _nodata_scalar(self.info.nodata, self._dtype) if uses_nodata else None
        self._mask_band = any(
            MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags
        ) and not any(MaskFlags.nodata in f for f in flags)
        self.block_height = int(dataset.block_shapes[self._indexes[0] - 1][0])
        """Rows of the raster's internal blocks (strips are cut on block edges)."""
        converted = 0 if self._scale is None else len(self._indexes) * (self._dtype.itemsize + 4)
        self.bytes_per_pixel = self.channels + converted + 1
        """Peak bytes a read holds per pixel: the output, the raw and scaled copies, a mask."""

    @contextmanager
    def _dataset(self) -> Iterator[Any]:
        """A handle that no other thread uses until it is given back (at the block's end)."""
        with self._lock:
            if self._closed:
                raise InvalidRequestError(f"reader for {self.url!r} is closed; open a new one")
            dataset = self._idle.pop() if self._idle else None
        if dataset is None:
            with self.env.context(self.url):
                dataset = _open(self.url)
            with self._lock:
                self._handles.append(dataset)
                opened = len(self._handles)
            logger.debug("opened %s (handle %d)", self.url, opened)
        try:
            yield dataset
        finally:
            with self._lock:
                if not self._closed:
                    self._idle.append(dataset)

    def read(self, window: Window) -> NDArray[np.uint8]:
        """Pixels of ``window`` as ``uint8 [window.height, window.width, channels]``.

        Parts of the window outside the image, and masked or nodata pixels, are 0.
        """
        ahead = self._ahead
        if ahead is not None and (pixels := ahead.take(window)) is not None:
            return pixels
        return self._read(window)

    def strips(
        self, windows: Sequence[Window], budget_bytes: int, *, native: bool = False
    ) -> list[Strip]:
        """The block-aligned strips that read one region's tile ``windows`` with strips of at
        most ``budget_bytes`` (``native``: for :meth:`read_native`); see
        :mod:`tilerunner.tiling.strips`."""
        return plan_strips(
            windows,
            self.info.width,
            self.info.height,
            block_height=self.block_height,
            budget_bytes=budget_bytes,
            bytes_per_pixel=self.bytes_per_pixel + (8 * self.channels if native else 0),
        )

    def read_ahead(self, windows: Sequence[Window], budget_bytes: int) -> ReadAhead:
        """Start reading ``windows`` in a thread, in order, as many as fit ``budget_bytes`` of
        pixels: a :meth:`read` of one of them later returns those pixels (once) instead of
        reading again. Replaces (and stops) an earlier read-ahead."""
        ahead = ReadAhead(self._read, windows, budget_bytes, self.channels)
        with self._lock:
            earlier, self._ahead = self._ahead, ahead
        if earlier is not None:
            earlier.close()
        return ahead

    def _read(self, window: Window) -> NDArray[np.uint8]:
        inside = window.clip(self.info.width, self.info.height)
        shape = (window.height, window.width, self.channels)
        # GDAL writes every pixel of the part inside the image: only padding needs zeroing first
        out = np.empty(shape, np.uint8) if inside == window else np.zeros(shape, np.uint8)
        if inside is None:
            return out
        target = out[
            inside.row_off - window.row_off : inside.row_end - window.row_off,
            inside.col_off - window.col_off : inside.col_end - window.col_off,
        ]
        rio_window = RioWindow(inside.col_off, inside.row_off, inside.width, inside.height)
        self._read_into(target, rio_window, None)
        return out

    def read_native(self, window: Window) -> NDArray[np.float32]:
        """Pixels of ``window`` as the source's own values, ``float32 [height, width, channels]``.

        Nothing is scaled. A band's value is ``NaN`` where that band holds the nodata value
        (unlike :meth:`read`, which zeroes a pixel only when every band does), and every band is
        ``NaN`` where the mask says so and outside the image; so a model can tell "no data"
        from any real value.
        """
        out = np.full((window.height, window.width, self.channels), np.nan, dtype=np.float32)
        inside = window.clip(self.info.width, self.info.height)
        if inside is None:
            return out
        rio_window = RioWindow(inside.col_off, inside.row_off, inside.width, inside.height)
        kwargs: dict[str, Any] = {"window": rio_window}
        try:
            with self._dataset() as dataset, self.env.context(self.url):
                raw: NDArray[Any] = dataset.read(self._indexes, **kwargs)
                masked = self._invalid(dataset, raw, kwargs, None) if self._mask_band else None
        except RasterioError as exc:
            error = RetryableError if is_remote(self.url) else SourceError
            raise error(f"cannot read {self.url!r} at {window!r}: {exc}; {_FORMATS_HINT}") from exc
        values = np.moveaxis(raw, 0, -1).astype(np.float32)
        if self._nodata is not None and not np.isnan(self._nodata):
            values[np.moveaxis(raw == self._nodata, 0, -1)] = np.nan
        if masked is not None:
            values[masked] = np.nan
        if self.channels != len(self._indexes):
            values = np.broadcast_to(values[..., :1], (*values.shape[:2], self.channels))
        target = out[
            inside.row_off - window.row_off : inside.row_end - window.row_off,
            inside.col_off - window.col_off : inside.col_end - window.col_off,
        ]
        target[...] = values
        return out

    def invalid_mask(self, window: Window) -> NDArray[np.bool_] | None:
        """Which pixels of ``window`` (inside the image) are nodata or masked, by the rule
        :meth:`read` zeroes them with; None when the image has neither nodata nor a mask."""
        if self._nodata is None and not self._mask_band:
            return None
        rio_window = RioWindow(window.col_off, window.row_off, window.width, window.height)
        kwargs: dict[str, Any] = {"window": rio_window, "resampling": Resampling.nearest}
        try:
            with self._dataset() as dataset, self.env.context(self.url):
                raw: NDArray[Any] = dataset.read(self._indexes, **kwargs)
                return self._invalid(dataset, raw, kwargs, None)
        except RasterioError as exc:
            error = RetryableError if is_remote(self.url) else SourceError
            raise error(f"cannot read the mask of {self.url!r} at {window!r}: {exc}") from exc

    def read_overview(self, max_size: int) -> NDArray[np.uint8]:
        """The whole image decimated so its longer side is at most ``max_size`` pixels.

        GDAL picks the closest overview level, so a preview of a huge COG reads a few MB.
        """
        factor = min(1.0, max_size / max(self.info.width, self.info.height))
        height = max(1, round(self.info.height * factor))
        width = max(1, round(self.info.width * factor))
        out = np.zeros((height, width, self.channels), dtype=np.uint8)
        self._read_into(out, RioWindow(0, 0, self.info.width, self.info.height), (height, width))
        return out

    def _read_into(
        self, target: NDArray[np.uint8], window: RioWindow, shape: tuple[int, int] | None
    ) -> None:
        direct = self._scale is None
        replicate = self.channels != len(self._indexes)
        kwargs: dict[str, Any] = {"window": window, "resampling": Resampling.nearest}
        try:
            with self._dataset() as dataset, self.env.context(self.url):
                if direct and not replicate:
                    # GDAL writes pixel-interleaved straight into the [H, W, C] output.
                    dataset.read(self._indexes, out=target.transpose(2, 0, 1), **kwargs)
                    raw: NDArray[Any] = target.transpose(2, 0, 1)
                else:
                    out_shape = None if shape is None else (len(self._indexes), *shape)
                    raw = dataset.read(self._indexes, out_shape=out_shape, **kwargs)
                    target[...] = np.moveaxis(self._to_uint8(raw), 0, -1)
                invalid = self._invalid(dataset, raw, kwargs, shape)
        except RasterioError as exc:
            error = RetryableError if is_remote(self.url) else SourceError
            raise error(f"cannot read {self.url!r} at {window!r}: {exc}; {_FORMATS_HINT}") from exc
        if invalid is not None:
            target[invalid] = 0

    def _to_uint8(self, raw: NDArray[Any]) -> NDArray[np.uint8]:
        if self._scale is None:
            scaled: NDArray[Any] = raw
        else:
            lo, hi = self._scale
            scaled = raw.astype(np.float32)
            scaled -= np.float32(lo)
            scaled *= np.float32(255.0 / (hi - lo))
            np.clip(scaled, 0.0, 255.0, out=scaled)
            scaled += np.float32(0.5)
            if np.issubdtype(raw.dtype, np.floating):
                scaled[np.isnan(scaled)] = 0.0
        if self.channels != len(self._indexes):
            return np.broadcast_to(scaled[:1], (self.channels, *scaled.shape[1:])).astype(np.uint8)
        return scaled.astype(np.uint8)

    def _invalid(
        self,
        dataset: Any,
        raw: NDArray[Any],
        kwargs: dict[str, Any],
        shape: tuple[int, int] | None,
    ) -> NDArray[np.bool_] | None:
        """Pixels to zero: all read bands equal nodata (GDAL's dataset-mask rule) or masked."""
        if self._nodata is not None:
            if np.isnan(self._nodata):
                invalid: NDArray[np.bool_] = np.isnan(raw).all(axis=0)
            else:
                invalid = (raw == self._nodata).all(axis=0)
            return invalid
        if self._mask_band:
            mask_kwargs = {**kwargs, "out_shape": shape}
            mask: NDArray[np.uint8] = dataset.read_masks(self._indexes[0], **mask_kwargs)
            masked: NDArray[np.bool_] = mask == 0
            return masked
        return None

    def close(self) -> None:
        """Close every dataset handle; later reads raise."""
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.close()
        with self._lock:
            self._closed = True
            handles, self._handles, self._idle = self._handles, [], []
        for dataset in handles:
            dataset.close()

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
