"""The model contract (DESIGN 5.1) and :class:`LoadedModel`, the one shape tilerunner runs.

A model is any object with a ``task`` and a ``predict`` method::

    class MyDetector:
        task = "detect"                 # "detect" | "classify" | "segment"
        classes = ["car", "truck"]      # optional; index = class id
        input_range = (0.0, 4095.0)     # optional; how non-uint8 sources are scaled to uint8
        tile_size = 512                 # optional; preferred tile size
        wants_windows = False           # optional; see below
        native_input = False            # optional; see below
        input_bands = None              # optional; how many bands --bands must name

        def __init__(self, **params: str) -> None: ...   # --model-param key=value, as strings
        def predict(self, tiles):                         # uint8 [B, H, W, C]
            ...                                           # -> one output per tile

Per tile ``predict`` returns: detect -> a mapping with ``boxes`` float [N, 4] (x0, y0, x1, y1
in tile pixels), ``scores`` float [N] and ``labels`` int [N]; classify -> scores float [K];
segment -> int [H, W] class ids or float [K, H, W] probabilities.

``wants_windows``: a model that sets it to ``True`` is called as
``predict(tiles, windows=[Window, ...])`` with each tile's read window in full-image pixels.
Models with location priors use it, and so do test fakes that replay known truth boxes. Tiles
are always model-sized; near the image edge a window may reach past the image (the reader pads).

``native_input``: a model that sets it to ``True`` takes the source's own values (reflectance,
elevation, radar backscatter) instead of uint8: tiles reach ``predict`` as ``float32 [B, H, W,
C]``, unscaled, with ``NaN`` where a pixel is nodata, masked or outside the image. Readers that
only have uint8 pixels (photos, map tiles) hand those values over as float32.

``input_bands``: the number of bands the model takes; a job whose ``bands`` name another number
is refused before any work (without ``bands``, three are read).

Every backend (ONNX, OpenCV DNN, plugins, the zoo) is adapted to this contract and wrapped in
a :class:`LoadedModel`, which is the single place where exceptions from model code become
:class:`~tilerunner.errors.ModelError` and raw outputs are validated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tilerunner.errors import InvalidRequestError, ModelError, TilerunnerError
from tilerunner.models.outputs import TileOutput, validate_outputs
from tilerunner.tiling import Window

__all__ = ["TASKS", "LoadedModel", "Model", "Task"]

Task = Literal["detect", "classify", "segment"]
TASKS: tuple[Task, ...] = ("detect", "classify", "segment")


@runtime_checkable
class Model(Protocol):
    """What a model object must provide; optional attributes are read with ``getattr``."""

    task: str

    def predict(self, tiles: NDArray[np.uint8]) -> Sequence[object]:
        """One output per tile of a uint8 ``[B, H, W, C]`` batch."""
        ...


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A model ready to run, with its declared metadata checked and normalised.

    Build one with :func:`tilerunner.models.load_model`, or with
    :func:`~tilerunner.models.plugin.wrap_model` for an object you already have, rather than by
    hand, so the declared metadata is validated.
    """

    name: str
    spec: str
    task: Task
    impl: Model
    classes: list[str] = field(default_factory=list)
    input_range: tuple[float, float] | None = None
    tile_size: int | None = None
    wants_windows: bool = False
    native_input: bool = False
    input_bands: int | None = None
    backend: str = "plugin"

    def predict(
        self,
        tiles: NDArray[np.uint8] | NDArray[np.float32],
        windows: Sequence[Window] | None = None,
    ) -> list[TileOutput]:
        """Run the model on a batch and return validated outputs, one per tile.

        Raises :class:`ModelError` when the model raises or returns malformed output, and
        :class:`InvalidRequestError` when the batch itself is not uint8 ``[B, H, W, C]`` (or,
        for a ``native_input`` model, float32 or uint8).
        """
        if self.native_input and tiles.dtype == np.uint8:
            tiles = tiles.astype(np.float32)
        wanted = np.float32 if self.native_input else np.uint8
        if tiles.dtype != wanted or tiles.ndim != 4:
            raise InvalidRequestError(
                f"model {self.name!r} takes {np.dtype(wanted)} tiles [B, H, W, C], got "
                f"{tiles.dtype} with shape {tiles.shape}; read the source with "
                f"{'read_native' if self.native_input else 'read'} before batching"
            )
        n_tiles, tile_h, tile_w = tiles.shape[:3]
        if n_tiles == 0:
            return []
        if windows is not None and len(windows) != n_tiles:
            raise InvalidRequestError(
                f"model {self.name!r} got {len(windows)} windows for {n_tiles} tiles; "
                "pass one window per tile"
            )
        if self.wants_windows and windows is None:
            raise InvalidRequestError(
                f"model {self.name!r} wants each tile's window; pass windows= to predict"
            )
        try:
            predict: Any = self.impl.predict  # uint8 or, for native_input, float32 tiles
            if self.wants_windows:
                raw: object = predict(tiles, windows=list(windows or ()))
            else:
                raw = predict(tiles)
        except TilerunnerError:
            raise
        except Exception as exc:  # user model code: anything it raises is a model failure
            raise ModelError(f"model {self.name!r} raised {type(exc).__name__}: {exc}") from exc
        return validate_outputs(
            self.task,
            raw,
            n_tiles,
            tile_h,
            tile_w,
            self.name,
            n_classes=len(self.classes) or None,
        )

    def check_bands(self, bands: Sequence[int] | None) -> None:
        """Refuse, before any work, a band selection the model cannot take."""
        if self.input_bands is None:
            return
        given = 3 if bands is None else len(bands)
        if given != self.input_bands:
            named = "the default 3 bands" if bands is None else f"{given} band(s) {list(bands)}"
            raise InvalidRequestError(
                f"model {self.spec!r} takes {self.input_bands} bands but the job reads {named}; "
                f"name {self.input_bands} bands with --bands (job tiling.bands)"
            )

    def label(self, class_id: int) -> str:
        """The class name for an id, or the id as text when the model declares no names."""
        if 0 <= class_id < len(self.classes):
            return self.classes[class_id]
        return str(class_id)

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary (for ``tilerunner models`` and worker registration)."""
        return {
            "name": self.name,
            "spec": self.spec,
            "backend": self.backend,
            "task": self.task,
            "classes": list(self.classes),
            "input_range": list(self.input_range) if self.input_range else None,
            "tile_size": self.tile_size,
            "wants_windows": self.wants_windows,
            "native_input": self.native_input,
            "input_bands": self.input_bands,
        }
