"""What the processes of a one-tile ``tilerunner run`` import before they work (the run
process, which serves the job itself with one worker, and a worker process): GDAL, numpy, the
store and the model, but not what only other paths need (the service's callback
client and its job formats, the GeoParquet writer, the zoo's model-card writer, Pillow, which
photo jobs, previews and ONNX models use). Read from
``-X importtime`` (``PYTHONPROFILEIMPORTTIME``), which the worker inherits and writes to its
log: the names of the modules, not their times."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tr_cli import features, tilerunner
from tr_scenes import make_scene

#: Imported by neither process of a GeoJSON run of a local plugin.
NOT_FOR_A_RUN = ("httpx", "pygments", "pyarrow", "yaml", "alembic", "fastapi", "uvicorn",
                 "pydantic_settings", "PIL")  # fmt: skip
#: The run process plans and aggregates; the service that delivers callbacks is not needed.
NOT_FOR_THE_RUN_PROCESS = ("tilerunner.coordinator.service", "tilerunner.coordinator.callbacks",
                           "tilerunner.jobs.compat", "tilerunner.outputs.geoparquet")  # fmt: skip
_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| *(\S+)$", re.MULTILINE)


@pytest.mark.parametrize("workers", ["1", "2"])  # a thread of the run; worker processes
def test_a_one_tile_run_imports_only_what_it_uses(tmp_path: Path, workers: str) -> None:
    tif, truth, boxes = make_scene(tmp_path, width=400, height=300, n_boxes=3)
    done = tilerunner(
        "run", str(tif), "--model", "tilerunner.testing.models:TruthDetector",
        "--model-param", f"truth={truth}", "-o", "out.geojson", "--state", "state.db", "--quiet",
        "--workers", workers, cwd=tmp_path, PYTHONPROFILEIMPORTTIME="1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(features(tmp_path / "out.geojson")) == len(boxes)
    run = set(_IMPORT.findall(done.stderr))
    worker = set(_IMPORT.findall((tmp_path / "state.workers.log").read_text()))
    assert bool(worker) == (workers != "1")  # one worker: no second interpreter
    for modules in (run, worker) if worker else (run,):
        assert {"rasterio", "numpy", "sqlalchemy", "tilerunner.testing.models"} <= modules
        assert not {m.split(".")[0] for m in modules} & set(NOT_FOR_A_RUN)
    assert "tilerunner.coordinator.aggregator" in run
    assert not {m for m in run if m.startswith(NOT_FOR_THE_RUN_PROCESS)}
