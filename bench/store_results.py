"""How fast the merged features of one image are stored, by batch size (SQLite or PostgreSQL).

Aggregation writes every merged feature to the state once (``Store.replace_results``); this
writes ``n`` box features with lon/lat rings, like those of the scale scene, into a fresh state
and prints seconds and CPU seconds per batch size.

    .venv/bin/python bench/store_results.py --n 200000 --batches 5000 20000 50000
    .venv/bin/python bench/store_results.py --url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tilerunner.jobs.features import FeatureRows
from tilerunner.store import ImagePlan, ImageResults, open_store
from tilerunner.store import results as results_module


def _part(n: int) -> ImageResults:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50_000, (n, 2))
    boxes = np.hstack([xy, xy + 16])
    lon = -3.7 + boxes[:, [0, 2, 2, 0, 0]] * 3e-6
    lat = 40.4 - boxes[:, [1, 1, 3, 3, 1]] * 3e-6
    rows = FeatureRows(
        boxes=boxes,
        scores=rng.uniform(0.5, 1.0, n),
        class_ids=np.zeros(n, np.int64),
        labels=["thing"] * n,
    )
    return ImageResults(0, rows, np.stack([lon, lat], axis=-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200_000, help="features written")
    parser.add_argument("--batches", type=int, nargs="+", default=[5_000, 20_000, 50_000])
    parser.add_argument("--url", help="state database (default: a fresh SQLite file)")
    args = parser.parse_args()
    part = _part(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.url or f"sqlite:///{Path(tmp) / 'state.db'}")
        plan = ImagePlan(0, "a.tif", "/data/a.tif", 50_000, 50_000, 1, [1])
        store.create_job("bench", "bench", {}, [plan])
        for batch in args.batches:
            results_module._BATCH = batch
            started, cpu = time.perf_counter(), time.process_time()
            written = store.replace_results("bench", [part])
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(
                f"batch {batch:>6,}: {written:,} features in {seconds:.2f} s "
                f"({cpu:.2f} s CPU, {cpu / written * 1e6:.1f} us CPU per feature)"
            )
        store.engine.dispose()


if __name__ == "__main__":
    main()
