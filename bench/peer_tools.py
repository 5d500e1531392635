"""The tools tilerunner is compared with, each run as its own process by ``bench/peers.py``.

    python bench/peer_tools.py sahi  IMAGE --model plugins:HeavyDetector --param onnx=... \
        --out dets.npy
    python bench/peer_tools.py loop  IMAGE ...
    python bench/peer_tools.py model IMAGE ...      # the model alone over pre-read tiles

``sahi`` is SAHI's ``get_sliced_prediction`` with the plugin wrapped as a SAHI
``DetectionModel`` (native batches of ``--batch-size``, the same 512 px slices and 64 px
overlap, no extra full-image prediction, SAHI's default GREEDYNMM / IOS 0.5 merge). SAHI slices
an image held in memory, so the raster is read whole with rasterio first (from a path or an
http(s) URL through GDAL), as a user of SAHI on a GeoTIFF does. ``loop`` is what one writes by
hand: rasterio window reads of each tile in turn, the model on a batch of one, and OpenCV's
``NMSBoxes`` (IoU 0.5) at the end. ``model`` times the model alone in batches of
``--batch-size`` over tiles read beforehand, for tilerunner time / model time.

Each writes its boxes (``[N, 6]``: x0, y0, x1, y1, score, label) to ``--out`` and prints one
JSON line with its own timings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window as RioWindow

__all__ = ["load_plugin", "main"]


def load_plugin(spec: str, params: Sequence[str]) -> Any:
    """``module:Class`` built with ``key=value`` parameters, as ``tilerunner run`` loads it."""
    module, _, name = spec.partition(":")
    kwargs = dict(p.split("=", 1) for p in params)
    return getattr(importlib.import_module(module), name)(**kwargs)


def _origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis, the last one shifted back to end at the edge."""
    return [*range(0, length - tile, stride), max(0, length - tile)]


def _rows(out: Any) -> NDArray[np.float64]:
    """One tile's output as ``[N, 6]`` rows in tile pixels."""
    boxes = np.asarray(out["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(out["scores"], dtype=np.float64).reshape(-1, 1)
    labels = np.asarray(out["labels"], dtype=np.float64).reshape(-1, 1)
    return np.hstack([boxes, scores, labels])


def run_loop(
    url: str, model: Any, tile: int, overlap: int
) -> tuple[NDArray[np.float64], dict[str, float]]:
    import cv2

    rows, read_s, model_s = [], 0.0, 0.0
    with rasterio.open(url) as src:
        for y in _origins(src.height, tile, tile - overlap):
            for x in _origins(src.width, tile, tile - overlap):
                started = time.perf_counter()
                pixels = src.read([1, 2, 3], window=RioWindow(x, y, tile, tile))
                read_s += time.perf_counter() - started
                started = time.perf_counter()
                out = model.predict(np.ascontiguousarray(pixels.transpose(1, 2, 0))[None])[0]
                model_s += time.perf_counter() - started
                found = _rows(out)
                found[:, :4] += [x, y, x, y]
                rows.append(found)
    dets = np.concatenate(rows) if rows else np.zeros((0, 6))
    started = time.perf_counter()
    xywh = np.column_stack([dets[:, :2], dets[:, 2:4] - dets[:, :2]]).tolist()
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, dets[:, 4].tolist(), 0.0, 0.5), dtype=np.int64)
    nms_s = time.perf_counter() - started
    return dets[keep.reshape(-1)], {"read_s": read_s, "model_s": model_s, "nms_s": nms_s}


def run_sahi(
    url: str, model: Any, tile: int, overlap: int, batch: int
) -> tuple[NDArray[np.float64], dict[str, float]]:
    from sahi.predict import get_sliced_prediction

    from sahi_plugin import PluginDetectionModel

    started = time.perf_counter()
    with rasterio.open(url) as src:
        image = np.ascontiguousarray(src.read([1, 2, 3]).transpose(1, 2, 0))
    read_s = time.perf_counter() - started
    wrapped = PluginDetectionModel(model=model, confidence_threshold=0.0, device="cpu")
    result = get_sliced_prediction(
        image,
        wrapped,
        slice_height=tile,
        slice_width=tile,
        overlap_height_ratio=overlap / tile,
        overlap_width_ratio=overlap / tile,
        perform_standard_pred=False,
        verbose=0,
        batch_size=batch,
        force_postprocess_type=True,
    )
    dets = np.array(
        [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in result.object_prediction_list]
    ).reshape(-1, 6)
    return dets, {
        "read_s": read_s,
        **{f"sahi_{k}_s": v for k, v in result.durations_in_seconds.items()},
    }


def run_model(
    url: str, model: Any, tile: int, overlap: int, batch: int
) -> tuple[NDArray[np.float64], dict[str, float]]:
    with rasterio.open(url) as src:
        ys, xs = (
            _origins(src.height, tile, tile - overlap),
            _origins(src.width, tile, tile - overlap),
        )
        tiles = np.stack(
            [
                src.read([1, 2, 3], window=RioWindow(x, y, tile, tile)).transpose(1, 2, 0)
                for y in ys
                for x in xs
            ]
        )
    model.predict(tiles[:batch])  # warm-up, as every tool's first batch pays it too
    started, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(tiles), batch):
        model.predict(tiles[first : first + batch])
    timings = {"model_s": time.perf_counter() - started, "model_cpu_s": time.process_time() - cpu}
    return np.zeros((0, 6)), {**timings, "tiles": float(len(tiles))}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one peer tool over one image.")
    add = parser.add_argument
    add("tool", choices=["sahi", "loop", "model"])
    add("image", help="path or http(s) URL of the raster")
    add("--model", required=True, help="plugin as module:Class")
    add("--param", action="append", default=[], help="key=value for the plugin; repeatable")
    add("--tile-size", type=int, default=512)
    add("--overlap", type=int, default=64)
    add("--batch-size", type=int, default=8)
    add("--out", type=Path, required=True, help="where to write the [N, 6] boxes (.npy)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = load_plugin(args.model, args.param)
    load_s = time.perf_counter() - started
    if args.tool == "loop":
        dets, timings = run_loop(args.image, model, args.tile_size, args.overlap)
    elif args.tool == "sahi":
        dets, timings = run_sahi(args.image, model, args.tile_size, args.overlap, args.batch_size)
    else:
        dets, timings = run_model(args.image, model, args.tile_size, args.overlap, args.batch_size)
    np.save(args.out, dets)
    total = time.perf_counter() - started
    print(
        json.dumps(
            {"tool": args.tool, "boxes": len(dets), "load_s": load_s, "total_s": total, **timings}
        )
    )


if __name__ == "__main__":
    main()
