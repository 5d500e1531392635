from __future__ import annotations

import pytest

from tilerunner.imagery import GdalEnv
from tilerunner.imagery.gdal_env import REMOTE_DEFAULTS, is_remote


def test_for_s3_with_endpoint_sets_path_style_and_scheme() -> None:
    env = GdalEnv.for_s3("http://127.0.0.1:9000", "eu-west-1", unsigned=True)
    assert env.options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert env.options["AWS_HTTPS"] == "NO"
    assert env.options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert env.options["AWS_REGION"] == "eu-west-1"
    assert env.options["AWS_NO_SIGN_REQUEST"] == "YES"
    assert env.options["GDAL_HTTP_MULTIRANGE"] == "YES"
    assert GdalEnv.for_s3("https://minio.example:443").options["AWS_HTTPS"] == "YES"


def test_for_s3_without_endpoint_keeps_aws_defaults() -> None:
    env = GdalEnv.for_s3()
    assert "AWS_S3_ENDPOINT" not in env.options
    assert "AWS_VIRTUAL_HOSTING" not in env.options
    assert dict(env.options) == dict(REMOTE_DEFAULTS)


def test_env_is_immutable_hashable_and_local_paths_keep_sidecars() -> None:
    env = GdalEnv.default(GDAL_CACHEMAX="256")
    with pytest.raises(TypeError):
        env.options["X"] = "1"  # type: ignore[index]
    assert hash(env) == hash(GdalEnv.default(GDAL_CACHEMAX="256"))
    assert env.merged(GDAL_CACHEMAX="512").options["GDAL_CACHEMAX"] == "512"
    assert env.options_for("s3://b/k.tif")["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    local = env.options_for("/data/scene.tif")
    assert "GDAL_DISABLE_READDIR_ON_OPEN" not in local and local["GDAL_CACHEMAX"] == "256"
    # parallel block fetches for remote reads; local decoding stays on the reader threads
    assert env.options_for("s3://b/k.tif")["GDAL_NUM_THREADS"] == "ALL_CPUS"
    assert "GDAL_NUM_THREADS" not in local


@pytest.mark.parametrize(
    ("url", "remote"),
    [
        ("https://h/a.tif", True),
        ("s3://b/a.tif", True),
        ("/vsicurl/https://h/a.tif", True),
        ("/vsimem/a.tif", False),
        ("/data/a.tif", False),
        ("relative/a.tif", False),
    ],
)
def test_is_remote(url: str, remote: bool) -> None:
    assert is_remote(url) is remote
