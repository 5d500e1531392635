"""A real ``tilerunner serve`` process on a free loopback port, keys made with the CLI, and
``tilerunner worker`` processes beside it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tr_cli import cli_env, tilerunner


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_key(store_url: str, cwd: Path, *scopes: str, project: str = "default") -> str:
    """A new API key made with ``tilerunner keys create``, as an operator would."""
    args = ["keys", "create", "--store", store_url, "--project", project]
    for scope in scopes:
        args += ["--scope", scope]
    done = tilerunner(*args, cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stderr
    found = re.search(r"trk_[A-Za-z0-9_-]+", done.stdout)
    assert found, done.stdout
    return found.group(0)


def wait_for(condition: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not true after {timeout:g} s")


@dataclass
class ApiServer:
    """``tilerunner serve`` (API + coordinator) over one store, restartable on the same port."""

    store_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> None:
        log = (self.workdir / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tilerunner", "serve", "--store", self.store_url,
             "--port", str(self.port), "--sweep-seconds", "1", *extra],
            cwd=self.workdir, env=cli_env(**self.env), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._live, 60, f"serve on port {self.port} (see {self.workdir}/serve.log)")

    def _live(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.workdir / "serve.log").read_text()[-2000:]
            raise AssertionError(f"serve exited with {self.proc.returncode}: {log}")
        try:
            return httpx.get(f"{self.url}/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, then wait until the port no longer answers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


def start_worker(api: ApiServer, *args: str) -> subprocess.Popen[bytes]:
    """``tilerunner worker ARGS`` in the server's folder, its output added to workers.log."""
    log = (api.workdir / "workers.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tilerunner", "worker", *args],
        cwd=api.workdir, env=cli_env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL every worker still running and reap them all."""
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
