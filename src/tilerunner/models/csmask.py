"""The UKIS cloud and cloud-shadow U-Net (``zoo:csmask-l8``, ``zoo:csmask-s2``).

The DLR package ``ukis-csmask`` ships four ONNX U-Nets (EfficientNet-B4 encoder): 4 bands
(blue, green, red, NIR) or 6 bands (+ SWIR 1.6 and 2.2 um), each for Level-1C (top of
atmosphere) or Level-2A (surface) reflectance, with the per-band mean and standard deviation
they were trained with in a JSON file beside each. We load the files with ONNX Runtime
ourselves instead of importing the package: its ``CSmask`` class takes a whole image in memory,
while tilerunner streams tiles; what we need from it is three lines of arithmetic.

The model takes reflectance (0..1), not uint8, so it sets ``native_input``: tiles arrive as the
source's own values and become reflectance as ``value * scale + offset`` (model parameters;
defaults per sensor below). ``--bands`` names the source's bands in the model's order: blue,
green, red, NIR (, SWIR 1.6, SWIR 2.2); ``input_bands`` makes a wrong count fail before any
work. Output per tile: class ids ``0 clear`` (the package's "background": neither cloud nor
shadow), ``1 cloud``, ``2 cloud_shadow``, and ``3 nodata`` where any band has no data.

Parameters (``--model-param``): ``level`` (``l1c`` | ``l2a``, default ``l1c``), ``n_bands``
(``6`` | ``4``, default 6), ``scale`` and ``offset`` (reflectance from the source's values),
``intra_op_threads``, ``providers``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import InvalidRequestError, ModelError
from tilerunner.models.contract import LoadedModel
from tilerunner.models.plugin import ModelParams, wrap_model
from tilerunner.models.runtime import create_session, runtime_errors

__all__ = [
    "CSMASK_CLASSES",
    "REFLECTANCE",
    "CsmaskModel",
    "Reflectance",
    "csmask_roles",
    "load_csmask_model",
]

logger = logging.getLogger(__name__)

CSMASK_CLASSES = ("clear", "cloud", "cloud_shadow", "nodata")
NODATA = 3
TILE = 256  # the exported graphs have a fixed 256 x 256 input
LEVELS = ("l1c", "l2a")
BAND_SETS = (6, 4)


@dataclass(frozen=True)
class Reflectance:
    """``reflectance = value * scale + offset`` for one sensor and product level."""

    scale: float
    offset: float


#: Default ``value -> reflectance`` per sensor and level. Landsat 8/9 Collection 2: Level-1
#: ``REFLECTANCE_MULT/ADD_BAND`` (TOA, without the sun-elevation correction) and the Level-2
#: surface reflectance factors; Sentinel-2 L1C/L2A: quantification 10000 with the -1000 offset
#: of processing baseline 04.00 and later (pass offset=0 for older products).
REFLECTANCE: Mapping[str, Mapping[str, Reflectance]] = {
    "l8": {"l1c": Reflectance(2.0e-5, -0.1), "l2a": Reflectance(2.75e-5, -0.2)},
    "s2": {"l1c": Reflectance(1.0e-4, -0.1), "l2a": Reflectance(1.0e-4, -0.1)},
}


def file_roles(level: str, n_bands: int) -> tuple[str, str]:
    """The zoo roles of the ONNX file and its JSON for ``level`` and ``n_bands``."""
    stem = f"{n_bands}b_{level}"
    return f"model_{stem}", f"stats_{stem}"


def csmask_roles(params: Mapping[str, str], spec: str) -> list[str]:
    """The zoo files one set of parameters needs (the other variants are not fetched)."""
    level, n_bands = parse_variant(ModelParams(params, f"model {spec}"), f"model {spec}")
    return list(file_roles(level, n_bands))


def parse_variant(params: ModelParams, owner: str) -> tuple[str, int]:
    """``level`` and ``n_bands`` from the parameters, checked."""
    level = (params.get_str("level", "l1c") or "l1c").lower()
    if level not in LEVELS:
        raise InvalidRequestError(
            f"{owner}: level={level!r} is not l1c or l2a; pass --model-param level=l1c "
            "(top of atmosphere) or level=l2a (surface reflectance)"
        )
    n_bands = params.get_int("n_bands", 6)
    if n_bands not in BAND_SETS:
        raise InvalidRequestError(
            f"{owner}: n_bands={n_bands} is not 6 or 4; the models take blue, green, red, NIR "
            "(4) or those plus SWIR 1.6 and 2.2 um (6)"
        )
    return level, int(n_bands)


class CsmaskModel:
    """One csmask U-Net behind the model contract (segment, float reflectance in)."""

    task = "segment"
    native_input = True
    tile_size = TILE

    def __init__(
        self,
        onnx_path: Path,
        stats_path: Path,
        reflectance: Reflectance,
        *,
        name: str,
        intra_op_threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))["data"]
        mean, std = stats["dataset_statistics"]["img"]
        self.band_names: list[str] = list(stats["dataset_statistics"]["band_names"])
        self.input_bands = len(self.band_names)
        self._mean = np.asarray(mean, dtype=np.float32)
        self._std = np.asarray(std, dtype=np.float32)
        self._reflectance = reflectance
        self._name = name
        self.classes = list(CSMASK_CLASSES)
        try:
            self._session = create_session(
                onnx_path, intra_op_threads=intra_op_threads, providers=providers
            )
        except runtime_errors() as exc:
            raise ModelError(f"cannot load {onnx_path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        logger.info("%s: %s on %s", name, onnx_path.name, self._session.get_providers())

    def predict(self, tiles: NDArray[np.float32]) -> list[NDArray[np.uint8]]:
        """Class ids ``[H, W]`` per tile of a ``float32 [B, 256, 256, bands]`` batch."""
        if tiles.shape[1:3] != (TILE, TILE):
            raise InvalidRequestError(
                f"model {self._name!r} takes {TILE} x {TILE} px tiles, got "
                f"{tiles.shape[2]} x {tiles.shape[1]}; run with --tile-size {TILE}"
            )
        if tiles.shape[3] != self.input_bands:
            raise InvalidRequestError(
                f"model {self._name!r} takes {self.input_bands} bands "
                f"({', '.join(self.band_names)}), got {tiles.shape[3]}; name them with --bands"
            )
        missing = np.isnan(tiles).any(axis=3)
        x = tiles * np.float32(self._reflectance.scale) + np.float32(self._reflectance.offset)
        x = (x - self._mean) / self._std
        np.nan_to_num(x, copy=False, nan=0.0)
        batch = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        try:
            (logits,) = self._session.run(None, {self._input: batch})
        except runtime_errors() as exc:
            raise ModelError(f"model {self._name!r}: ONNX Runtime failed: {exc}") from exc
        ids = np.asarray(logits).argmax(axis=1).astype(np.uint8)
        ids[missing] = NODATA
        return list(ids)


def load_csmask_model(
    files: Mapping[str, Path],
    params: Mapping[str, str],
    *,
    name: str,
    sensor: str,
    spec: str,
) -> LoadedModel:
    """Build the model from fetched zoo ``files`` (:func:`csmask_roles`) and ``params``."""
    reader = ModelParams(params, f"model {spec}")
    level, n_bands = parse_variant(reader, f"model {spec}")
    default = REFLECTANCE[sensor][level]
    scale = reader.get_float("scale", default.scale)
    offset = reader.get_float("offset", default.offset)
    if scale <= 0:
        raise InvalidRequestError(f"model {spec}: scale={scale} must be positive")
    threads = reader.get_int("intra_op_threads", None)
    providers = reader.get_str("providers")
    reader.check_all_used()
    model_role, stats_role = file_roles(level, n_bands)
    impl = CsmaskModel(
        files[model_role],
        files[stats_role],
        Reflectance(scale, offset),
        name=spec,  # what the user typed, for messages
        intra_op_threads=threads,
        providers=[p.strip() for p in providers.split(",")] if providers else None,
    )
    return wrap_model(impl, name=name, spec=spec, backend="onnx-csmask")
