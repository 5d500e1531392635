"""Engines the scale-out tests run on: (store URL, broker URL) per engine id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tr_cluster import Cluster


@dataclass(frozen=True)
class Deployment:
    id: str
    urls: Callable[[Path], tuple[str, str]]
    marks: tuple[pytest.MarkDecorator, ...] = ()


DEPLOYMENTS: list[Deployment] = [
    Deployment("sqlite", lambda tmp: (f"sqlite:///{tmp / 'state.db'}",) * 2),
]


@pytest.fixture(params=[pytest.param(d, id=d.id, marks=d.marks) for d in DEPLOYMENTS])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    deployment: Deployment = request.param
    store_url, broker_url = deployment.urls(tmp_path)
    bound = Cluster(
        store_url, broker_url, tmp_path,
        env={"TILERUNNER_LEASE_SECONDS": "3", "TILERUNNER_MAX_ATTEMPTS": "3"},
    )  # fmt: skip
    try:
        yield bound
    finally:
        bound.close()
