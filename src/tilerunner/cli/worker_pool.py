"""The worker processes of ``tilerunner run``, started before their job is planned.

A fresh interpreter that imports GDAL, numpy, the store and the model takes about as long as
the run process's own imports, model load and planning. So the pool starts its workers first,
with ``--until-job -``: each loads its model and then reads the job id from its standard input,
which :meth:`WorkerPool.release` writes once the job is planned (or closes, when there is nothing
to do). The store is opened by a worker only after that, so a run that fails its checks leaves
no state behind. A worker that dies is started again with the job id on its command line.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from tilerunner.errors import InvalidRequestError

__all__ = ["WorkerPool"]


class WorkerPool:
    """``count`` worker processes of ``argv`` (which ends with ``--until-job``)."""

    def __init__(self, argv: list[str], count: int, log_path: Path, max_restarts: int = 5) -> None:
        self._argv = argv
        self._log_is_new = not log_path.exists()
        self._log = log_path.open("ab")
        self._restarts_left = max_restarts
        self._job_id: str | None = None
        self.procs = [self._spawn("-") for _ in range(count)]

    def _spawn(self, job_id: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*self._argv, job_id],
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.PIPE if job_id == "-" else subprocess.DEVNULL,
        )

    def release(self, job_id: str | None) -> None:
        """Tell each waiting worker its job (None: there is nothing to do; they leave)."""
        self._job_id = job_id
        line = f"{job_id or ''}\n".encode()
        for proc in self.procs:
            if proc.stdin is None or proc.stdin.closed:
                continue
            try:
                proc.stdin.write(line)
                proc.stdin.close()
            except BrokenPipeError:  # it died while starting: check() starts it again
                continue

    def check(self) -> None:
        """Start again a worker that exited with an error (at most ``max_restarts`` in all)."""
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is None or code == 0:
                continue
            if self._restarts_left <= 0 or self._job_id is None:
                raise InvalidRequestError(
                    f"worker processes keep failing (exit code {code}); see {self._log.name}"
                )
            self._restarts_left -= 1
            self.procs[i] = self._spawn(self._job_id)

    def wait(self, seconds: float) -> None:
        """Wait ``seconds``, or less when a worker exits first (one leaves when its job is
        finished, so the caller looks again at once)."""
        live = [proc for proc in self.procs if proc.poll() is None]
        if not live:
            time.sleep(seconds)
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            live[0].wait(seconds)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers still running (they finish what they hold) and wait for them."""
        if self._log.closed:
            return
        self.release(None)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()

    def discard_log(self) -> None:
        """Remove the log file this pool created (after :meth:`stop`), when nothing ran."""
        if self._log_is_new and self._log.closed:
            Path(self._log.name).unlink(missing_ok=True)
