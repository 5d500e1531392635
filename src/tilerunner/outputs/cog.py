"""A raster on the source's grid, written in parts by many workers and joined into one COG.

Each region's worker writes its core pixels to a *part*: a small tiled GeoTIFF (512 px
blocks, the COG's block size) georeferenced on its sub-window, published atomically under a
deterministic name in a parts location beside the output (``classes.tif.parts/``, or the same
key prefix when the output is ``s3://``: workers on other machines reach it). A local part is
written to a temporary name and renamed; an S3 part is uploaded in one PUT. So a redelivered
region rewrites identical bytes under the same name, and a killed worker leaves no half part.

Aggregation then writes a VRT of every part, copies it to one local tiled GeoTIFF (ZSTD level
1, which GDAL's COG driver reads twice more cheaply than the parts behind a VRT), translates that
once to a COG (overviews built at the end), and deletes the parts. The VRT is written here as XML:
rasterio offers no call that builds one, and ``gdalbuildvrt`` would place parts by their
georeferencing (rounding, and nothing for images without a CRS), where the XML places each
part at its exact pixel offset. No step holds more than one part in memory; GDAL streams the
VRT block by block into the staged copy, and that into the COG.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.errors import RasterioError

from tilerunner.errors import InvalidRequestError, RetryableError
from tilerunner.imagery import GdalEnv
from tilerunner.outputs.writers import write_output
from tilerunner.tiling import Window

__all__ = [
    "BLOCK",
    "PartRef",
    "RasterGrid",
    "check_raster_output",
    "delete_parts",
    "output_exists",
    "parts_prefix",
    "probabilities_uri",
    "write_cog",
    "write_part",
]

BLOCK = 512
_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32"}


@dataclass(frozen=True, slots=True)
class RasterGrid:
    """The output's grid: the source's size, affine transform and CRS (either may be None)."""

    width: int
    height: int
    transform: tuple[float, ...] | None = None
    crs_wkt: str | None = None


@dataclass(frozen=True, slots=True)
class PartRef:
    """One published part: where it is and which pixels of the output it holds."""

    uri: str
    window: Window


def parts_prefix(output: str) -> str:
    """Where the parts of ``output`` go: beside it, named after it."""
    return output + ".parts"


def _is_s3(uri: str) -> bool:
    return uri.lower().startswith("s3://")


def _gdal_path(uri: str) -> str:
    if _is_s3(uri):
        parts = urlsplit(uri)
        return f"/vsis3/{parts.netloc}{parts.path}"
    return os.path.abspath(uri)


def _profile(window: Window, bands: int, dtype: str, nodata: float | None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": window.width,
        "height": window.height,
        "count": bands,
        "dtype": dtype,
        # a part is read once, by the aggregation: ZSTD level 1 writes it 8x faster than
        # DEFLATE (docs/benchmarks.md) and decodes faster; the COG itself stays DEFLATE
        "compress": "zstd",
        "zstd_level": 1,
        "nodata": nodata,
    }
    if window.width >= BLOCK or window.height >= BLOCK:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    return profile


def write_part(
    uri: str,
    window: Window,
    pixels: NDArray[Any],
    nodata: float | None,
    transform: Sequence[float] | None,
    crs_wkt: str | None,
    s3_endpoint_url: str | None = None,
) -> PartRef:
    """Publish ``pixels`` (``[bands, H, W]``) of ``window`` as the part ``uri`` atomically."""
    profile = _profile(window, pixels.shape[0], str(pixels.dtype), nodata)
    if transform is not None:
        affine = rasterio.Affine(*transform[:6])
        profile["transform"] = affine @ rasterio.Affine.translation(window.col_off, window.row_off)
        profile["crs"] = crs_wkt

    def produce(path: str) -> None:
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(pixels)

    if not _is_s3(uri):
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    write_output(uri, produce, s3_endpoint_url)
    return PartRef(uri, window)


def _vrt(parts: Sequence[PartRef], grid: RasterGrid, bands: int, dtype: str,
         nodata: float | None) -> str:  # fmt: skip
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    if grid.crs_wkt:
        ET.SubElement(root, "SRS").text = grid.crs_wkt
    if grid.transform is not None:
        a, b, c, d, e, f = grid.transform[:6]
        ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in (c, a, b, f, d, e))
    for band in range(1, bands + 1):
        element = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(band))
        if nodata is not None:
            ET.SubElement(element, "NoDataValue").text = repr(nodata)
        for part in parts:
            w = part.window
            source = ET.SubElement(element, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = _gdal_path(part.uri)
            ET.SubElement(source, "SourceBand").text = str(band)
            x, y = str(w.width), str(w.height)
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=x, ySize=y)
            ET.SubElement(
                source, "DstRect", xOff=str(w.col_off), yOff=str(w.row_off), xSize=x, ySize=y
            )
    return ET.tostring(root, encoding="unicode")


def write_cog(
    output: str,
    parts: Sequence[PartRef],
    grid: RasterGrid,
    *,
    bands: int,
    dtype: str,
    nodata: float | None,
    resampling: str = "nearest",
    env: GdalEnv | None = None,
    s3_endpoint_url: str | None = None,
) -> None:
    """Join ``parts`` (a VRT) and translate them once into the COG ``output`` (atomically)."""
    env = env or GdalEnv.default()
    with tempfile.TemporaryDirectory(prefix="tilerunner-vrt-") as tmp:
        vrt = os.path.join(tmp, "parts.vrt")
        with open(vrt, "w", encoding="utf-8") as handle:
            handle.write(_vrt(parts, grid, bands, dtype, nodata))

        staged = os.path.join(tmp, "staged.tif")

        def produce(path: str) -> None:
            try:
                with env.context(parts[0].uri if parts else output):
                    # the COG driver reads its source twice (overviews, then the full
                    # resolution): a local tiled copy of the VRT in ZSTD level 1 is cheaper to
                    # read twice than the parts behind it (12 % less CPU; docs/benchmarks.md)
                    rasterio.shutil.copy(
                        vrt, staged, driver="GTiff", tiled=True, blockxsize=BLOCK,
                        blockysize=BLOCK, compress="zstd", zstd_level=1,
                        num_threads="ALL_CPUS", bigtiff="IF_SAFER",
                    )  # fmt: skip
                    rasterio.shutil.copy(
                        staged, path, driver="COG", compress="deflate", blocksize=BLOCK,
                        overview_resampling=resampling, num_threads="ALL_CPUS",
                        bigtiff="IF_SAFER",
                    )  # fmt: skip
            except RasterioError as exc:
                raise RetryableError(f"cannot write {output!r} from its parts: {exc}") from exc

        write_output(output, produce, s3_endpoint_url)


def delete_parts(prefix: str, s3_endpoint_url: str | None = None) -> None:
    """Remove the parts location once the COG is written (missing is fine)."""
    if not _is_s3(prefix):
        shutil.rmtree(prefix, ignore_errors=True)
        return
    import boto3

    parts = urlsplit(prefix)
    client: Any = boto3.client("s3", endpoint_url=s3_endpoint_url)
    key = parts.path.lstrip("/").rstrip("/") + "/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=parts.netloc, Prefix=key)
    for page in pages:
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=parts.netloc, Delete={"Objects": objects})


def output_exists(uri: str, s3_endpoint_url: str | None = None) -> bool:
    """Whether ``uri`` is already there (checked before a run that would replace it)."""
    if not _is_s3(uri):
        return os.path.exists(uri)
    import boto3
    from botocore.exceptions import ClientError

    parts = urlsplit(uri)
    client: Any = boto3.client("s3", endpoint_url=s3_endpoint_url)
    try:
        client.head_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
    except ClientError:
        return False
    return True


def probabilities_uri(output: str) -> str:
    """The sibling file of class probabilities: ``classes.tif`` -> ``classes.probabilities.tif``."""
    stem, ext = os.path.splitext(output)
    return f"{stem}.probabilities{ext}"


def check_raster_output(uri: str, *, overwrite: bool, s3_endpoint_url: str | None = None) -> None:
    """Refuse to replace an existing output unless asked to."""
    if overwrite:
        return
    for target in (uri, probabilities_uri(uri)):
        if output_exists(target, s3_endpoint_url):
            raise InvalidRequestError(
                f"output {target!r} exists; pass --overwrite to replace it or choose another -o"
            )
