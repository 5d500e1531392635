"""What ``tilerunner run`` checks and builds for a segmentation model, before any work starts.

A segment run writes one class raster (a COG on the source's grid) instead of feature files,
so its ``-o`` is a ``.tif``, its source is one image, the output must not exist unless
``--overwrite``, the source must have the bands the model reads, and the model's output must
have the tile's shape. Each is checked here in well under a second (the last by running the
model once on a blank tile), so a mistake costs a one-line error, not an hour of inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tilerunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from tilerunner.models import LoadedModel
    from tilerunner.settings import Settings

__all__ = ["check_segment_run", "segment_stage", "split_outputs"]

_RASTER = (".tif", ".tiff")


def split_outputs(outputs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``-o`` values: raster (``.tif``) outputs, then feature outputs."""
    rasters = [o for o in outputs if o.lower().endswith(_RASTER)]
    return rasters, [o for o in outputs if o not in rasters]


def segment_stage(
    model: LoadedModel, rasters: list[str], features: list[str], options: dict[str, Any]
) -> dict[str, Any] | None:
    """The ``segment`` fields of the stage (None for other tasks); errors for wrong ``-o``."""
    if model.task != "segment":
        if rasters:
            raise InvalidRequestError(
                f"-o {rasters[0]}: a .tif output is a class raster, for segmentation models; "
                f"{model.spec!r} is a {model.task} model: use .geojson, .parquet or .csv"
            )
        for flag in ("blend", "probabilities", "vectorize"):
            if options[flag] not in (None, False, "none"):
                raise InvalidRequestError(
                    f"--{flag} is for segmentation models; {model.spec!r} is a {model.task} model"
                )
        return None
    if len(rasters) != 1 or features:
        raise InvalidRequestError(
            f"a segmentation model writes one class raster: give one -o ending in .tif "
            f"(got {', '.join(rasters + features)}); polygons go to --vectorize"
        )
    return {
        "output": rasters[0],
        "blend": options["blend"],
        "probabilities": options["probability_type"] if options["probabilities"] else "none",
        "vectorize": options["vectorize"],
        "overwrite": options["overwrite"],
    }


def check_segment_run(
    model: LoadedModel,
    stage: dict[str, Any],
    urls: list[str],
    tile_size: int,
    bands: list[int] | None,
    settings: Settings,
) -> None:
    """Everything about a segment run that can fail before any work starts."""
    import numpy as np

    from tilerunner.imagery import probe
    from tilerunner.outputs import check_output, check_writable
    from tilerunner.outputs.cog import check_raster_output

    if len(urls) != 1:
        raise InvalidRequestError(
            f"a segmentation run writes one raster on one image's grid; the sources name "
            f"{len(urls)} images: run once per image"
        )
    check_writable(stage["output"])
    check_raster_output(
        stage["output"], overwrite=stage["overwrite"], s3_endpoint_url=settings.s3_endpoint_url
    )
    if stage["vectorize"]:
        fmt = check_output(stage["vectorize"], label=f"--vectorize {stage['vectorize']}")
        if fmt not in ("geojson", "geoparquet"):
            raise InvalidRequestError(
                f"--vectorize {stage['vectorize']}: polygons are written as GeoParquet or "
                "GeoJSON; end the name in .parquet or .geojson"
            )
    info = probe(urls[0], settings.gdal_env())
    needed = max(bands) if bands else model.input_bands
    if needed is not None and info.count < needed:
        raise InvalidRequestError(
            f"model {model.spec!r} reads {needed} bands but {urls[0]!r} has {info.count}; "
            "choose a source with enough bands, or other --bands"
        )
    channels = len(bands) if bands else 3
    (output,) = model.predict(np.zeros((1, tile_size, tile_size, channels), dtype=np.uint8))
    wants = stage["blend"] != "none" or stage["probabilities"] != "none"
    if wants and getattr(output, "probabilities", None) is None:
        raise InvalidRequestError(
            f"--blend and --probabilities need a model that returns class probabilities; "
            f"{model.spec!r} returns class ids: drop them"
        )
