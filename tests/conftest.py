"""Shared test configuration.

Tests marked ``services`` need a running PostgreSQL / NATS / RabbitMQ server (or moto's S3/SQS
server); on a machine without one they skip, saying the server is "not reachable". With
``TILERUNNER_REQUIRE_SERVICES=1`` (CI) such a skip becomes a failure, so CI never passes by
skipping the real servers. Skips for what an engine cannot do by nature stay skips.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

# What the skip reasons of the service fixtures say when a server or its client is missing.
_MISSING_SERVICE = ("not reachable", "not installed")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample rasters the tests carry in tests/data (provenance in its README)."""
    return DATA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The same folder as :func:`shared_data`, under the name the imagery, georef and output
    tests use."""
    return DATA


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    required = os.environ.get("TILERUNNER_REQUIRE_SERVICES") == "1"
    if required and report.skipped and item.get_closest_marker("services") is not None:
        reason = str(report.longrepr)
        # only a missing server fails; an engine that cannot do one thing still skips it
        if any(marker in reason for marker in _MISSING_SERVICE):
            report.outcome = "failed"
            report.longrepr = f"service required in CI but the test skipped: {reason}"


@pytest.fixture(scope="session")
def moto_server() -> Generator[str, None, None]:
    """An in-process moto server (S3, SQS, ...) on loopback; yields its endpoint URL.

    Fake credentials are put in the environment for the session so boto3 and GDAL can sign
    requests; moto accepts any.
    """
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()
