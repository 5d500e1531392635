"""A tile job through ``serve`` and ``worker --api`` over PostgreSQL, with a worker SIGKILLed.

The client submits tile ids inline; serve's coordinator plans them into items of two tiles;
two HTTP workers fetch the tiles from a loopback tile server (allowed by
``TILERUNNER_ALLOWED_HOSTS``, as a server must be told) and classify them. One worker is
killed while it holds a lease: its items are redelivered after the lease expires, and every
tile ends up in the output exactly once, with the scores its pixels give.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tr_api import ApiServer, create_key, start_worker, stop_workers, wait_for
from tr_pg import pg_schema_url
from tr_tile_models import brightness, pixels

from tilerunner.testing.tile_server import TileServer
from tilerunner.xyz.tiles import Tile

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]

TERMINAL = {"succeeded", "partial", "failed", "cancelled"}


@pytest.fixture
def pg_store() -> Iterator[str]:
    """A fresh schema of the test database, as a store URL."""
    with pg_schema_url() as url:
        yield url


def _worker(api: ApiServer, token: str) -> subprocess.Popen[bytes]:
    return start_worker(
        api, "--api", api.url, "--token", token,
        "--model", "cls=tr_tile_models:BrightnessClassifier",
        "--model-param", "seconds_per_tile=0.4", "--batch-size", "2",
    )  # fmt: skip


def test_http_workers_run_a_tile_job_and_a_killed_one_loses_and_doubles_nothing(
    tmp_path: Path, pg_store: str, cogeo_tiles: dict[Tile, bytes]
) -> None:
    tiles = sorted(cogeo_tiles)
    api = ApiServer(pg_store, tmp_path, env={
        "TILERUNNER_ALLOWED_HOSTS": "127.0.0.1", "TILERUNNER_ALLOWED_LOCAL_ROOTS": str(tmp_path),
    })  # fmt: skip
    workers: list[subprocess.Popen[bytes]] = []
    with TileServer(cogeo_tiles) as server:
        api.start()
        try:
            user = api.client(create_key(pg_store, tmp_path, "submit", "read"))
            document = {
                "tiles": {"url_template": server.url_template, "per_item": 2,
                          "ids": [str(t) for t in tiles]},
                "pipeline": [{"task": "classify", "model": "cls"}],
                "outputs": [{"uri": str(tmp_path / "tiles.csv")}],
            }  # fmt: skip
            response = user.post("/v1/jobs", json=document)
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            token = create_key(pg_store, tmp_path, "worker")
            victim = _worker(api, token)  # alone at first, so it is sure to take a lease
            workers.append(victim)

            def victim_holds_a_lease() -> bool:
                rows = user.get("/v1/workers").json()
                return any(w["pid"] == victim.pid and w["leases_held"] > 0 for w in rows)

            wait_for(victim_holds_a_lease, 90, "the first worker holds a lease")
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            workers.append(_worker(api, token))

            def final() -> dict[str, object] | None:
                try:
                    job = user.get(f"/v1/jobs/{job_id}").json()
                except httpx.HTTPError:
                    return None
                return job if job["status"] in TERMINAL else None

            job = wait_for(final, 180, f"job {job_id} finished", every=0.3)
        finally:
            stop_workers(workers)
            api.kill()
    assert job["status"] == "succeeded", job
    assert job["counts"]["tiles"]["done"] == len(tiles) == 16
    with (tmp_path / "tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["tile"] for r in rows) == sorted(str(t) for t in tiles)  # each exactly once
    for row in rows:
        tile = Tile(int(row["x"]), int(row["y"]), int(row["z"]))
        expected = brightness(pixels(cogeo_tiles[tile]))
        assert json.loads(row["scores"])[1] == pytest.approx(expected, abs=1e-6)
