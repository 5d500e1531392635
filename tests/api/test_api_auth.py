"""API keys on a real ``tilerunner serve``: scopes, projects, revocation, limits, --insecure.

One serve process per module, on a free loopback port over a SQLite store; every key is made
with the real ``tilerunner keys create`` command, as an operator would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tr_api import ApiServer, create_key
from tr_cli import tilerunner

from tilerunner.security.keys import Scope, generate_key, hash_key

LIMIT = 64 * 1024  # the server's max_body_bytes here: a body over it fits socket buffers


def document(data: Path, name: str = "trees") -> dict[str, Any]:
    return {
        "name": name,
        "sources": [str(data / "OSBS_029.tif")],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": 128, "overlap": 64, "region_size": 128},
    }


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: Scope
    ok: int
    body: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


HEARTBEAT = {
    "id": "w-auth",
    "host": "h",
    "pid": 1,
    "version": "0",
    "models": ["det"],
    "leases_held": 0,
    "tiles_done": 0,
    "regions_done": 0,
    "tiles_per_second": 0.0,
}
ROUTES = [
    Route("POST", "/v1/jobs", Scope.SUBMIT, 202),
    Route("POST", "/v1/jobs/{job}/cancel", Scope.SUBMIT, 200),
    Route("POST", "/v1/jobs/{job}/retry", Scope.SUBMIT, 200),
    Route("GET", "/v1/jobs", Scope.READ, 200),
    Route("GET", "/v1/jobs/{job}", Scope.READ, 200),
    Route("GET", "/v1/jobs/{job}/events", Scope.READ, 200),
    Route("GET", "/v1/jobs/{job}/errors", Scope.READ, 200),
    Route("GET", "/v1/jobs/{job}/results", Scope.READ, 200),
    Route("GET", "/v1/models", Scope.READ, 200),
    Route("GET", "/v1/workers", Scope.READ, 200),
    Route("GET", "/metrics", Scope.READ, 200),
    Route("POST", "/v1/work/lease", Scope.WORKER, 200, {"models": ["nobody-serves-this"]}),
    Route("POST", "/v1/work/heartbeat", Scope.WORKER, 204, HEARTBEAT),
    Route("GET", "/v1/work/jobs/{job}/finished", Scope.WORKER, 200),
]
# covered by their own tests (a lease token, or a peer's request body): tests/work, test_api_compat
ELSEWHERE = {
    "POST /v1/work/{lease}/extend",
    "POST /v1/work/{lease}/complete",
    "POST /v1/work/{lease}/fail",
    "POST /v1/compat/osml/image-requests",
    "POST /v1/compat/antenna/process",
}
OPEN = ["/livez", "/readyz", "/docs", "/openapi.json"]


@dataclass
class Deployment:
    api: ApiServer
    data: Path
    keys: dict[Scope, str]  # project "default"
    other: str  # an admin key of project "other"
    job: str  # a job of project "default"

    def call(self, route: Route, headers: dict[str, str]) -> httpx.Response:
        body = route.body
        if route.path == "/v1/jobs" and route.method == "POST":
            body = document(self.data)
        return httpx.request(
            route.method,
            self.api.url + route.path.format(job=self.job),
            json=body,
            headers=headers,
            timeout=30,
        )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("auth")
    env = {
        "TILERUNNER_ALLOWED_LOCAL_ROOTS": str(shared_data),
        "TILERUNNER_MAX_BODY_BYTES": str(LIMIT),
    }
    api = ApiServer(f"sqlite:///{workdir / 'state.db'}", workdir, env=env)
    keys = {scope: create_key(api.store_url, workdir, scope.value) for scope in Scope}
    other = create_key(api.store_url, workdir, "admin", project="other")
    api.start()
    try:
        with api.client(keys[Scope.ADMIN]) as client:
            created = client.post("/v1/jobs", json=document(shared_data))
        assert created.status_code == 202, created.text
        yield Deployment(api, shared_data, keys, other, created.json()["id"])
    finally:
        api.kill()


@pytest.mark.parametrize("scope", list(Scope), ids=str)
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_route_allows_exactly_its_scope_and_admin(
    deployment: Deployment, route: Route, scope: Scope
) -> None:
    answer = deployment.call(route, bearer(deployment.keys[scope]))
    if scope in (route.scope, Scope.ADMIN):
        assert answer.status_code == route.ok, answer.text
    else:
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "forbidden"
        assert f"lacks the '{route.scope.value}' scope" in error["message"]


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_request_without_a_key_is_401(deployment: Deployment, route: Route) -> None:
    answer = deployment.call(route, {})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "unauthenticated"
    assert "missing API key" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {generate_key().key}"},  # well formed, never stored
        {"X-API-Key": generate_key().key},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["malformed", "unknown", "unknown-header", "basic"],
)
def test_a_wrong_key_is_401(deployment: Deployment, headers: dict[str, str]) -> None:
    answer = httpx.get(f"{deployment.api.url}/v1/jobs", headers=headers, timeout=30)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_key_with_one_character_changed_is_401(deployment: Deployment) -> None:
    key = deployment.keys[Scope.ADMIN]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    answer = httpx.get(f"{deployment.api.url}/v1/jobs", headers=bearer(tampered), timeout=30)
    assert answer.status_code == 401


def test_the_key_may_come_in_an_x_api_key_header(deployment: Deployment) -> None:
    headers = {"X-API-Key": deployment.keys[Scope.READ]}
    answer = httpx.get(f"{deployment.api.url}/v1/jobs/{deployment.job}", headers=headers)
    assert answer.status_code == 200 and answer.json()["id"] == deployment.job


@pytest.mark.parametrize("path", OPEN)
def test_health_and_docs_answer_without_a_key(deployment: Deployment, path: str) -> None:
    assert httpx.get(deployment.api.url + path, timeout=30).status_code == 200


def test_openapi_declares_both_ways_to_send_a_key(deployment: Deployment) -> None:
    spec = httpx.get(f"{deployment.api.url}/openapi.json", timeout=30).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "trk_<id>_<secret>",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    security = spec["paths"]["/v1/jobs/{job_id}"]["get"]["security"]
    assert {"bearer": []} in security and {"apiKey": []} in security
    assert "security" not in spec["paths"]["/livez"]["get"]


def _other_project_answers(deployment: Deployment, job: str) -> list[tuple[int, str]]:
    client = httpx.Client(base_url=deployment.api.url, headers=bearer(deployment.other))
    with client:
        answers = [
            client.get(f"/v1/jobs/{job}"),
            client.get(f"/v1/jobs/{job}/events"),
            client.get(f"/v1/jobs/{job}/errors"),
            client.get(f"/v1/jobs/{job}/results"),
            client.post(f"/v1/jobs/{job}/cancel"),
        ]
    return [(a.status_code, a.json()["error"]["message"].replace(job, "ID")) for a in answers]


def test_another_projects_job_is_a_404_exactly_like_a_missing_one(deployment: Deployment) -> None:
    before = httpx.get(
        f"{deployment.api.url}/v1/jobs/{deployment.job}",
        headers=bearer(deployment.keys[Scope.READ]),
    ).json()
    foreign = _other_project_answers(deployment, deployment.job)
    missing = _other_project_answers(deployment, "job-0000000000000000")
    assert foreign == missing
    assert {status for status, _ in foreign} == {404}
    after = httpx.get(
        f"{deployment.api.url}/v1/jobs/{deployment.job}",
        headers=bearer(deployment.keys[Scope.READ]),
    ).json()
    assert after["status"] == before["status"]  # the other project's cancel changed nothing


def test_a_project_lists_only_its_own_jobs(deployment: Deployment) -> None:
    other = httpx.Client(base_url=deployment.api.url, headers=bearer(deployment.other))
    with other:
        created = other.post("/v1/jobs", json=document(deployment.data, name="theirs"))
        assert created.status_code == 202 and created.json()["project"] == "other"
        theirs = {j["id"] for j in other.get("/v1/jobs").json()["jobs"]}
        assert other.get("/v1/jobs", params={"project": "default"}).json()["jobs"] == []
    ours = httpx.get(
        f"{deployment.api.url}/v1/jobs", headers=bearer(deployment.keys[Scope.READ])
    ).json()["jobs"]
    assert theirs == {created.json()["id"]}
    assert deployment.job in {j["id"] for j in ours}
    assert {j["project"] for j in ours} == {"default"}


def test_a_revoked_key_is_refused_at_once(deployment: Deployment) -> None:
    api = deployment.api
    key = create_key(api.store_url, api.workdir, "read")
    key_id = re.fullmatch(r"trk_([0-9a-f]{12})_.*", key)
    assert key_id is not None
    url = f"{api.url}/v1/jobs"
    assert httpx.get(url, headers=bearer(key), timeout=30).status_code == 200
    revoked = tilerunner(
        "keys", "revoke", key_id.group(1), "--store", api.store_url, cwd=api.workdir
    )
    assert revoked.returncode == 0, revoked.stderr
    answer = httpx.get(url, headers=bearer(key), timeout=30)
    assert answer.status_code == 401
    assert "was revoked" in answer.json()["error"]["message"]
    listed = tilerunner("keys", "list", "--json", "--store", api.store_url, cwd=api.workdir)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and hash_key(key) not in listed.stdout
    row = next(k for k in json.loads(listed.stdout) if k["id"] == key_id.group(1))
    assert row["revoked_at"] is not None and row["last_used_at"] is not None
    assert row["scopes"] == ["read"] and row["project"] == "default"
    again = tilerunner("keys", "revoke", key_id.group(1), "--store", api.store_url, cwd=api.workdir)
    assert again.returncode != 0 and "revoked already" in again.stderr


def test_a_body_over_the_limit_is_413_before_it_is_parsed(deployment: Deployment) -> None:
    url = f"{deployment.api.url}/v1/jobs"
    headers = bearer(deployment.keys[Scope.ADMIN])
    declared = httpx.post(url, content=b"{" + b" " * LIMIT, headers=headers, timeout=30)
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"{" + b" " * (LIMIT // 2)
        yield b" " * (LIMIT // 2)

    chunked = httpx.post(url, content=chunks(), headers=headers, timeout=30)
    assert chunked.status_code == 413, chunked.text
    small = httpx.post(url, content=b"{" + b" " * 100, headers=headers, timeout=30)
    assert small.status_code == 422  # under the limit: parsed, and refused as bad JSON


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_insecure_is_refused_off_loopback(tmp_path: Path, host: str) -> None:
    done = tilerunner(
        "serve", "--insecure", "--host", host, "--store", f"sqlite:///{tmp_path / 's.db'}",
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --insecure")
    assert "loopback --host" in lines[0] and "drop --insecure" in lines[0]
    assert not (tmp_path / "s.db").exists()  # refused before anything was opened


def test_insecure_on_loopback_answers_without_a_key(tmp_path: Path, shared_data: Path) -> None:
    env = {"TILERUNNER_ALLOWED_LOCAL_ROOTS": str(shared_data)}
    api = ApiServer(f"sqlite:///{tmp_path / 'state.db'}", tmp_path, env=env)
    api.start("--insecure", "--host", "127.0.0.1")
    try:
        created = httpx.post(f"{api.url}/v1/jobs", json=document(shared_data), timeout=60)
        assert created.status_code == 202, created.text
        assert created.json()["project"] == "default"
        listed = httpx.get(f"{api.url}/v1/jobs", timeout=30).json()["jobs"]
        assert [j["id"] for j in listed] == [created.json()["id"]]
    finally:
        api.kill()


def test_the_table_covers_every_route_that_needs_a_key(deployment: Deployment) -> None:
    spec = httpx.get(f"{deployment.api.url}/openapi.json", timeout=30).json()
    served = {
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if path not in OPEN
    }
    table = {f"{r.method} {r.path.replace('{job}', '{job_id}')}" for r in ROUTES}
    assert served == table | ELSEWHERE
