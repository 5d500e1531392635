"""A segment job whose output is on S3 (moto server): parts uploaded by the workers, the COG
uploaded by aggregation, the parts deleted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from tr_segment import PIXEL, make_scene, run_in_process, segment_job, whole_image

from tilerunner.imagery import GdalEnv
from tilerunner.jobs import JobState


@pytest.mark.slow
def test_s3_output_through_parts(tmp_path: Path, moto_server: str) -> None:
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="seg")
    scene = make_scene(tmp_path / "scene.tif", 200, 150, seed=7)
    output = "s3://seg/out/classes.tif"
    spec = segment_job(scene, output, PIXEL, {"probabilities": "true"}, tile=64, overlap=16,
                       region=100, probabilities="float32")  # fmt: skip
    _, result = run_in_process(tmp_path / "s.db", spec, PIXEL, {"probabilities": "true"}, 2,
                               s3_endpoint_url=moto_server)  # fmt: skip
    assert result.status is JobState.SUCCEEDED
    assert result.outputs == [output, "s3://seg/out/classes.probabilities.tif"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="seg").get("Contents", [])}
    assert keys == {"out/classes.tif", "out/classes.probabilities.tif"}  # parts deleted
    env = GdalEnv.for_s3(endpoint_url=moto_server)
    with env.context(output), rasterio.open("/vsis3/seg/out/classes.tif") as dst:
        assert np.array_equal(dst.read(1), whole_image(scene, PIXEL, {"probabilities": "true"}))
    with env.context(output), rasterio.open("/vsis3/seg/out/classes.probabilities.tif") as dst:
        probabilities = dst.read()
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 150, 200)
    valid = ~np.isnan(probabilities[0])
    assert np.allclose(probabilities[:, valid].sum(axis=0), 1.0, atol=1e-5)
