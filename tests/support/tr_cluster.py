"""A small cluster of real processes for the scale-out tests: serve, workers, submit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from tr_cli import cli_env

from tilerunner.store import Store, open_store
from tilerunner.store.tables import outbox


@dataclass
class Cluster:
    """Processes sharing one store and one broker; everything is killed on close()."""

    store_url: str
    broker_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    coordinators: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restart: tuple[Callable[[], None], ...] = ()  # stop and start the broker
    _store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = (self.workdir / log).open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "tilerunner", *args, "--store", self.store_url,
             "--broker", self.broker_url],
            cwd=self.workdir, env=cli_env(**self.env), stdout=out, stderr=out,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start_coordinator(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("serve", "--no-api", "--sweep-seconds", "2", log="serve.log")
        self.coordinators.append(proc)
        return proc

    def start_worker(self, model: str, *params: str, slot: int | None = None) -> None:
        args = ["worker", "--model", model, "--batch-size", "4"]
        for p in params:
            args += ["--model-param", p]
        proc = self._spawn(*args, log="workers.log")
        if slot is None:
            self.workers.append(proc)
        else:
            self.workers[slot] = proc

    def submit(self, document: dict[str, object]) -> str:
        path = self.workdir / f"job-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(document))
        done = subprocess.run(
            [sys.executable, "-m", "tilerunner", "submit", str(path), "--store", self.store_url,
             "--broker", self.broker_url],
            cwd=self.workdir, env=cli_env(**self.env), capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def wait(self, job_id: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.store.get_job(job_id)
            assert job is not None
            if job.status in ("succeeded", "partial", "failed", "cancelled"):
                return job.status
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} not finished after {timeout} s; see {self.workdir}")

    def aggregation_claim(self, job_id: str) -> tuple[str | None, float | None, float | None]:
        """(claimed_by, claimed_until, done_at) of the job's aggregation outbox row."""
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(outbox.c.claimed_by, outbox.c.claimed_until, outbox.c.done_at).where(
                    outbox.c.job_id == job_id, outbox.c.kind == "aggregate"
                )
            ).first()
        return (None, None, None) if row is None else (row[0], row[1], row[2])

    def coordinator_of(self, owner: str) -> subprocess.Popen[bytes]:
        """The coordinator process behind a claim's owner (``coordinator-<host>-<pid>``)."""
        pid = int(owner.rsplit("-", 1)[1])
        return next(proc for proc in self.coordinators if proc.pid == pid)

    def stop_workers(self, timeout: float = 60.0) -> None:
        """SIGTERM: each worker finishes what it holds, reports its counters and exits."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            assert proc.wait(timeout=timeout) == 0

    def close(self) -> None:
        procs = [*self.workers, *self.coordinators]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait(timeout=30)
        if self._store is not None:
            self._store.engine.dispose()


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
