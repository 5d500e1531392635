"""Schemathesis against the OpenAPI document a real ``tilerunner serve`` publishes.

Every operation gets a bounded number of generated requests, sent with an admin key (so auth
does not stop them at the door); no response may be a server error, and every documented
response must match its own schema.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from tr_api import ApiServer, create_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Bounded for CI and derandomized, so a run is reproducible; raise it to explore further:
# TILERUNNER_FUZZ_EXAMPLES=200 pytest tests/api/test_openapi_fuzz.py
FUZZ_EXAMPLES = int(os.environ.get("TILERUNNER_FUZZ_EXAMPLES", "10"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    api = ApiServer(f"sqlite:///{workdir / 'state.db'}", workdir)
    admin = create_key(api.store_url, workdir, "admin")
    api.start()
    try:
        yield api, admin
    finally:
        api.kill()


def _fuzz(
    operation: Any, api: ApiServer, admin: str, examples: int, statuses: list[int]
) -> list[str]:
    """Run ``examples`` generated requests against one operation; the failures, described.
    Every response's status is appended to ``statuses``."""
    failures: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=FUZZ_EXAMPLES <= 10,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        if case.path == "/v1/work/lease" and isinstance(case.body, dict):
            case.body["wait_seconds"] = 0  # the long-poll would only make the run slow
        response = case.call(base_url=api.url, headers={"Authorization": f"Bearer {admin}"})
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    try:
        run()
    except Exception as error:  # schemathesis' failure groups, with hypothesis' shrunk example
        failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    return failures


def test_no_server_error_and_responses_match_their_schema(served: tuple[ApiServer, str]) -> None:
    """Each operation of the served document, fuzzed with a bounded number of examples."""
    api, admin = served
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    statuses: list[int] = []
    failures = [f for op in operations for f in _fuzz(op, api, admin, FUZZ_EXAMPLES, statuses)]
    assert not failures, "\n\n".join(failures)
    assert len(statuses) >= 2 * len(operations)  # the fuzzing really sent requests
    assert any(200 <= s < 300 for s in statuses) and any(s == 422 for s in statuses)


def test_the_document_lists_every_route_family(served: tuple[ApiServer, str]) -> None:
    import httpx

    api, _ = served
    paths = httpx.get(f"{api.url}/openapi.json", timeout=10).json()["paths"]
    for expected in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/work/lease", "/v1/workers"):
        assert expected in paths, sorted(paths)
    assert Path(api.workdir / "state.db").exists()
