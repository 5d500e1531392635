"""Deployments the scale-out tests run on: a store URL and a broker URL per engine id.

``sqlite`` is the embedded file; every other deployment keeps its state in PostgreSQL (a fresh
schema per test) and hands out regions through its broker. A deployment whose server is not
reachable skips with the reason (CI turns such skips into failures).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tr_cluster import Cluster
from tr_services import start_nats, start_rabbitmq, stop_nats, stop_rabbitmq

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "tilerunner_test"


def _reachable(url: str, default_port: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"{parts.scheme} server at {host}:{port} is not reachable ({exc})")


@dataclass(frozen=True)
class Deployment:
    id: str
    broker: Callable[[pytest.FixtureRequest, Path], str] | None  # None: the store file
    restart: tuple[Callable[[], None], ...] = ()  # stop and start the broker
    marks: tuple[pytest.MarkDecorator, ...] = ()


def _moto(request: pytest.FixtureRequest, _tmp: Path) -> str:
    endpoint = request.getfixturevalue("moto_server")
    return f"sqs://?region=us-east-1&endpoint_url={endpoint}&prefix=c{uuid.uuid4().hex[:6]}-"


DEPLOYMENTS: list[Deployment] = [
    Deployment("sqlite", None),
    Deployment(
        "postgresql",
        lambda _r, _t: f"postgresql://postgres@127.0.0.1:5432/{PG_DB}",
        marks=(pytest.mark.services,),
    ),
    Deployment(
        "nats",
        lambda _r, _t: "nats://127.0.0.1:4222",
        restart=(stop_nats, start_nats),
        marks=(pytest.mark.services,),
    ),
    Deployment("sqs", _moto, marks=(pytest.mark.services,)),
    Deployment(
        "amqp",
        lambda _r, _t: "amqp://guest:guest@127.0.0.1:5672/%2F",
        restart=(stop_rabbitmq, start_rabbitmq),
        marks=(pytest.mark.services,),
    ),
]


def _pg_schema() -> Iterator[str]:
    _reachable(PG_ADMIN, 5432)
    import psycopg

    schema = f"c_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {PG_DB}")
    url = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _bring_up(
    deployment: Deployment, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Cluster]:
    env = {"TILERUNNER_LEASE_SECONDS": "3", "TILERUNNER_MAX_ATTEMPTS": "3"}
    if deployment.broker is None:
        url = f"sqlite:///{tmp_path / 'state.db'}"
        bound = Cluster(url, url, tmp_path, env=env)
        try:
            yield bound
        finally:
            bound.close()
        return
    broker = deployment.broker(request, tmp_path)
    if not broker.startswith("sqs://"):
        _reachable(broker, {"postgresql": 5432, "nats": 4222, "amqp": 5672}[deployment.id])
    schema_urls = _pg_schema()
    store_url = next(schema_urls)
    bound = Cluster(store_url, broker, tmp_path, env=env, restart=deployment.restart)
    try:
        yield bound
    finally:
        bound.close()
        next(schema_urls, None)


def _params(deployments: list[Deployment]) -> list[object]:
    return [pytest.param(d, id=d.id, marks=d.marks) for d in deployments]


@pytest.fixture(params=_params(DEPLOYMENTS))
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Every deployment; a test narrows them with ``parametrize("cluster", [ids], indirect=True)``
    (marking the ids that need a server ``services``)."""
    param = request.param
    if isinstance(param, str):
        param = next(d for d in DEPLOYMENTS if d.id == param)
    yield from _bring_up(param, request, tmp_path)


@pytest.fixture(params=_params([d for d in DEPLOYMENTS if d.restart]))
def restartable_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    yield from _bring_up(request.param, request, tmp_path)
