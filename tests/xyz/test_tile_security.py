"""Server mode: every host a tile job's URL template can name, and its tile-list file, pass
the same checks as a source URL before a worker fetches anything on a client's behalf."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tilerunner.errors import RefusedUrlError
from tilerunner.jobs import parse_job
from tilerunner.security.urls import UrlPolicy, check_job_document

PUBLIC = "93.184.215.14"


def _resolver(table: dict[str, str]) -> Any:
    def resolve(host: str, port: int | None) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], 0))]

    return resolve


def _tile_job(**tiles: Any) -> Any:
    return parse_job({"tiles": tiles, "pipeline": [{"task": "classify", "model": "m"}]})


def test_each_subdomain_of_the_template_is_checked() -> None:
    spec = _tile_job(url_template="https://{s}.tiles.example/{z}/{x}/{y}.png", ids=["0-0-0"])
    resolve = _resolver({"a.tiles.example": PUBLIC, "b.tiles.example": PUBLIC,
                         "c.tiles.example": "10.0.0.7"})  # fmt: skip
    with pytest.raises(RefusedUrlError, match=r"c\.tiles\.example' resolves to 10\.0\.0\.7"):
        check_job_document(spec, UrlPolicy(), resolve)
    check_job_document(spec, UrlPolicy(allowed_hosts=("c.tiles.example",)), resolve)


def test_a_loopback_tile_service_is_refused_unless_allowed() -> None:
    spec = _tile_job(url_template="http://127.0.0.1:8080/{z}/{x}/{y}.png", ids=["0-0-0"])
    with pytest.raises(RefusedUrlError, match=r"tiles\.url_template: .*loopback"):
        check_job_document(spec, UrlPolicy(), _resolver({}))
    check_job_document(spec, UrlPolicy(allowed_hosts=("127.0.0.1",)), _resolver({}))


def test_a_tile_list_file_must_lie_under_an_allowed_root(tmp_path: Path) -> None:
    listed = tmp_path / "tiles.txt"
    listed.write_text("0-0-0\n")
    spec = _tile_job(url_template="https://tiles.example/{z}/{x}/{y}.png", file=str(listed))
    resolve = _resolver({"tiles.example": PUBLIC})
    with pytest.raises(RefusedUrlError, match=r"tiles\.file"):
        check_job_document(spec, UrlPolicy(), resolve)
    check_job_document(spec, UrlPolicy(allowed_local_roots=(str(tmp_path),)), resolve)
