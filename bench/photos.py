"""Photo collections benchmark: a two-stage job (detect, classify every crop) against the
same photos detected only, in one process, side by side.

Photos of mixed sizes are made from the two demo street photos (``bus.jpg``, ``zidane.jpg``,
fetched once by the zoo's asset code): each is a random crop of one of them, scaled to a random
size between 200 and 900 px. One in-process direct worker serves both models over an embedded
SQLite store and queue, as ``tilerunner run`` would in one worker process. Reported:

- ``photos/s`` of the detect-only job and of the two-stage job (submit to last item done), and
  their ratio;
- stage-2 batch fill: the classifier's mean batch size over ``--batch-size``. Crops of many
  photos and of many work items share the classifier's batches, so the fill stays near 1 even
  when each photo yields a few crops;
- crops per photo, and the stage-1 batch fill for comparison.

Models: ``zoo`` (``zoo:yolov3-tiny-coco`` then ``zoo:efficientnet-lite0``; the latter needs its
ONNX export, i.e. the ``[torch]`` extra once) or ``synthetic`` (the seeded ONNX detector and
classifier of :mod:`tilerunner.testing.onnx_models`, no download).

    .venv/bin/python bench/photos.py --photos 48 --batch-size 8 --group-size 8 --models zoo
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tilerunner.broker import open_queue
from tilerunner.coordinator import aggregate_job, submit_job
from tilerunner.jobs import parse_job
from tilerunner.models import LoadedModel, default_cache_dir, fetch_demo_photos, load_model
from tilerunner.store import open_store
from tilerunner.testing.onnx_models import make_classifier_onnx, make_detector_onnx
from tilerunner.work.direct import DirectWorkSource
from tilerunner.work.service import WorkService, WorkServiceOptions
from tilerunner.worker import Worker, WorkerOptions


def make_photos(folder: Path, n: int, cache: Path, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    demo = [Image.open(p).convert("RGB") for p in fetch_demo_photos(cache).values()]
    paths = []
    for i in range(n):
        source = demo[i % len(demo)]
        w, h = source.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        scale = rng.uniform(200, 900) / max(cw, ch)
        photo = source.crop((x, y, x + cw, y + ch)).resize((int(cw * scale), int(ch * scale)))
        path = folder / f"photo{i:04d}.jpg"
        photo.save(path, quality=90)
        paths.append(path)
    return paths


def models(kind: str, folder: Path, cache: Path) -> dict[str, LoadedModel]:
    if kind == "zoo":
        return {
            "det": load_model("zoo:yolov3-tiny-coco", name="det", cache_dir=cache),
            "cls": load_model("zoo:efficientnet-lite0", name="cls", cache_dir=cache),
        }
    det = make_detector_onnx(folder / "det.onnx", input_size=320, width=16, depth=4, n_boxes=3)
    cls = make_classifier_onnx(folder / "cls.onnx", input_size=224, width=16, depth=4)
    return {
        "det": load_model(str(det), name="det"),
        "cls": load_model(str(cls), name="cls"),
    }


def run_job(
    folder: Path, photos: list[Path], served: dict[str, LoadedModel], args: argparse.Namespace,
    two_stage: bool,
) -> dict[str, Any]:  # fmt: skip
    pipeline: list[dict[str, Any]] = [{"task": "detect", "model": "det"}]
    if two_stage:
        pipeline.append(
            {"task": "classify", "model": "cls", "crops_of": 0, "min_score": args.min_score}
        )
    spec = parse_job(
        {
            "sources": [str(p) for p in photos],
            "photos": {"group_size": args.group_size},
            "pipeline": pipeline,
            "merge": {"min_score": args.min_score},
        }
    )
    url = f"sqlite:///{folder / ('two.db' if two_stage else 'one.db')}"
    store = open_store(url)
    queues: dict[str, Any] = {}

    def queue_for(name: str) -> Any:
        return queues.setdefault(name, open_queue(url, name))

    service = WorkService(store, queue_for, WorkServiceOptions(lease_seconds=300))
    options = WorkerOptions(batch_size=args.batch_size, readers=args.readers, lease_seconds=300)
    worker = Worker(DirectWorkSource(service), served, options)
    started = time.perf_counter()
    job_id, _ = submit_job(store, queue_for, spec)

    def finished() -> bool:
        counts = store.counts(job_id)
        return counts.regions_finished >= counts.regions_total

    thread = threading.Thread(target=worker.run, kwargs={"until": finished})
    thread.start()
    thread.join()
    seconds = time.perf_counter() - started
    result = aggregate_job(store, job_id)
    stats = worker.pipeline_stats()
    row: dict[str, Any] = {
        "job": "two-stage" if two_stage else "detect only",
        "photos": len(photos),
        "seconds": round(seconds, 2),
        "photos_per_s": round(len(photos) / seconds, 2),
        "detections": result.features,
        "status": result.status.value,
    }
    for name, s in stats.items():
        if s.batches:
            mean = s.tiles_inferred / s.batches
            row[f"{name}_inputs"] = s.tiles_inferred
            row[f"{name}_batches"] = s.batches
            row[f"{name}_fill"] = round(mean / args.batch_size, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--min-score", type=float, default=0.3)
    parser.add_argument("--models", choices=["zoo", "synthetic"], default="zoo")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cache = default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as tmp:
        folder = Path(tmp)
        photos = make_photos(folder, args.photos, cache)
        served = models(args.models, folder, cache)
        rows = [run_job(folder, photos, served, args, two) for two in (False, True)]
    one, two = rows
    summary = {
        "models": args.models,
        "batch_size": args.batch_size,
        "group_size": args.group_size,
        "rows": rows,
        "two_stage_over_detect_only": round(two["photos_per_s"] / one["photos_per_s"], 3),
        "crops_per_photo": round(two.get("cls_inputs", 0) / args.photos, 2),
    }
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
