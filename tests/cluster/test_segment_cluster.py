"""A segment job through ``serve`` (coordinator) + ``worker`` processes over PostgreSQL: the
workers publish their parts, the coordinator joins them into the COG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tr_cluster import Cluster
from tr_segment import PIXEL, make_scene, read_raster, whole_image


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.parametrize("cluster", ["postgresql"], indirect=True)
def test_segment_job_over_postgresql(cluster: Cluster, tmp_path: Path) -> None:
    scene = make_scene(tmp_path / "scene.tif", 260, 190, seed=9)
    out = tmp_path / "classes.tif"
    cluster.start_coordinator()
    for _ in range(2):
        cluster.start_worker(f"m={PIXEL}")
    job_id = cluster.submit(
        {
            "sources": [str(scene)],
            "pipeline": [{"task": "segment", "model": "m", "segment": {"output": str(out)}}],
            "tiling": {"tile_size": 64, "overlap": 16, "region_size": 100},
        }
    )
    assert cluster.wait(job_id, timeout=240) == "succeeded"
    assert np.array_equal(read_raster(out), whole_image(scene, PIXEL, {}))
    assert not (tmp_path / "classes.tif.parts").exists()
