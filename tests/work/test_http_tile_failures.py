"""A tile that fails on an HTTP worker fails alone: its failure crosses the API into the store.

Real ``serve`` and ``worker --api`` processes on loopback; the model raises on the one tile
that covers a chosen pixel while a flag file exists. The job ends ``partial`` with a
``tile_failed`` error naming that tile's window, and only what that tile owns is missing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tr_api import ApiServer, create_key, wait_for
from tr_cli import cli_env, pixel_boxes
from tr_scenes import make_scene

from tilerunner.merging import owned_mask
from tilerunner.store import open_store
from tilerunner.tiling import TileGrid

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TILE, OVERLAP = 128, 48
POISON = (60, 60)  # in [48, 80) on both axes: only tile (0, 0)


def test_an_http_worker_reports_a_failed_tile_and_the_job_is_partial(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    tif, truth_csv, truth = make_scene(tmp_path, width=400, height=300, n_boxes=30)
    flag = tmp_path / "poison.flag"
    flag.touch()
    api = ApiServer(store_url, tmp_path, env={"TILERUNNER_ALLOWED_LOCAL_ROOTS": str(tmp_path)})
    api.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        token = create_key(store_url, tmp_path, "worker")
        user = api.client(create_key(store_url, tmp_path, "submit", "read"))
        log = (tmp_path / "worker.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "tilerunner", "worker", "--api", api.url, "--token", token,
             "--model", "det=tr_poison:PoisonTruthDetector",
             "--model-param", f"truth={truth_csv}", "--model-param", f"x={POISON[0]}",
             "--model-param", f"y={POISON[1]}", "--model-param", f"flag={flag}"],
            cwd=tmp_path, env=cli_env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        document = {
            "sources": [str(tif)],
            "pipeline": [{"task": "detect", "model": "det"}],
            "tiling": {"tile_size": TILE, "overlap": OVERLAP, "region_size": 160},
            "merge": {"method": "none"},
            "outputs": [{"uri": str(tmp_path / "out.geojson")}],
        }
        response = user.post("/v1/jobs", json=document)
        assert response.status_code == 202, response.text
        job_id = str(response.json()["id"])

        def final() -> dict[str, object] | None:
            job: dict[str, object] = user.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "partial", "failed") else None

        job = wait_for(final, 180, f"job {job_id} finished (see {tmp_path}/worker.log)")
        _assert_partial(store_url, job, job_id, truth, tmp_path)
        [error] = user.get(f"/v1/jobs/{job_id}/errors").json()
        window = TileGrid(400, 300, TILE, OVERLAP).tile(0, 0)
        assert error["window"] == {"col_off": window.col_off, "row_off": window.row_off,
                                   "width": window.width, "height": window.height}  # fmt: skip
        assert job["counts"]["tiles"]["failed"] == 1  # type: ignore[index]

        flag.unlink()  # the cause is mended: retry just that tile through the API
        retried = user.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 200, retried.text
        assert (retried.json()["regions"], retried.json()["tiles"]) == (0, 1)
        again = wait_for(final, 180, f"job {job_id} finished again")
        assert again["status"] == "succeeded", again
        assert pixel_boxes(tmp_path / "out.geojson") == sorted(
            tuple(round(v, 6) for v in b) for b in truth
        )
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        api.kill()


def _assert_partial(
    store_url: str, job: dict[str, object], job_id: str, truth: list[tuple[float, ...]],
    tmp_path: Path,
) -> None:  # fmt: skip
    assert job["status"] == "partial", job
    store = open_store(store_url)
    grid = TileGrid(400, 300, TILE, OVERLAP)
    [error] = store.errors(job_id)
    assert (error.code, error.region, error.window) == ("tile_failed", 0, grid.tile(0, 0))
    assert error.message.startswith("model_error:") and "poisoned tile" in error.message
    counts = store.counts(job_id)
    assert (counts.regions_failed, counts.tiles_failed) == (0, 1)
    lost = owned_mask(np.asarray(truth), grid.core(0, 0), 400, 300)
    assert 0 < lost.sum() < len(truth)
    kept = [b for b, gone in zip(truth, lost.tolist(), strict=True) if not gone]
    assert pixel_boxes(tmp_path / "out.geojson") == sorted(
        tuple(round(v, 6) for v in b) for b in kept
    )
    store.engine.dispose()
