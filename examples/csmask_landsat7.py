"""Cloud and cloud-shadow classes of a small real Landsat 7 scene, then their polygons.

    python examples/csmask_landsat7.py [OUT_DIR]      # default: ./csmask-landsat7

Fetches (once, into ~/.cache/tilerunner) six Landsat 7 ETM+ bands of North Carolina (2000,
489 x 443 px, 28.5 m, 8-bit DN) and the csmask U-Net, stacks the bands into one GeoTIFF, runs
``zoo:csmask-l8`` over 256 px tiles read with the source's own values, writes the class raster
and the cloud and shadow polygons (GeoParquet, lon/lat), and prints each class's share.

The bands are 8-bit DN, not reflectance; ``scale=1/255`` stands in for a per-scene TOA
calibration, so read the result as a demonstration of the plumbing, not of the model's skill.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio

from tilerunner.imagery import BandSpec, RasterReader
from tilerunner.models import SegMask, default_cache_dir, load_model
from tilerunner.models.zoo import DEMO_LANDSAT7, fetch_asset
from tilerunner.segmentation import vectorize
from tilerunner.tiling import TileGrid

NODATA = -99999.0


def stack(out: Path) -> Path:
    """Bands 1, 2, 3, 4, 5, 7 as one float32 GeoTIFF (each band's nodata -> -99999)."""
    bands = []
    for path in fetch_asset(DEMO_LANDSAT7, default_cache_dir()).values():
        with rasterio.open(path) as src:
            band = src.read(1).astype(np.float32)
            band[src.read_masks(1) == 0] = NODATA
            profile = src.profile
        bands.append(band)
    profile.update(count=6, dtype="float32", nodata=NODATA, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate")  # fmt: skip
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack(bands))
    return out


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = stack(out_dir / "lsat7_2000_stack.tif")
    model = load_model("zoo:csmask-l8", {"scale": str(1 / 255), "offset": "0"})
    with RasterReader(str(scene), BandSpec(bands=(1, 2, 3, 4, 5, 6))) as reader:
        width, height = reader.info.width, reader.info.height
        grid = TileGrid(width, height, 256, 0)
        classes = np.zeros((height, width), dtype=np.uint8)
        for index in range(grid.n_tiles):
            window = grid.tile(*grid.tile_at(index))
            (mask,) = model.predict(reader.read_native(window)[None])
            assert isinstance(mask, SegMask) and mask.classes is not None
            inside = window.clip(width, height)
            assert inside is not None
            classes[inside.row_off : inside.row_end, inside.col_off : inside.col_end] = (
                mask.classes[: inside.height, : inside.width]
            )
        profile = rasterio.open(scene).profile
    profile.update(count=1, dtype="uint8", nodata=None)
    class_tif = out_dir / "csmask_classes.tif"
    with rasterio.open(class_tif, "w", **profile) as dst:
        dst.write(classes, 1)
    polygons = out_dir / "csmask_polygons.parquet"
    summary = vectorize(str(class_tif), str(polygons), classes=model.classes, skip_classes=(0, 3))
    shares = np.bincount(classes.ravel(), minlength=4) / classes.size
    for class_id, name in enumerate(model.classes):
        print(f"{name:13s} {shares[class_id]:6.1%}")
    for row in summary.classes:
        print(f"{row.label}: {row.polygons} polygons, {row.area / 1e6:.2f} km2")
    print(f"wrote {class_tif} and {polygons}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("csmask-landsat7"))
