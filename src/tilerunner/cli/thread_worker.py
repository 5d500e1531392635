"""The worker of a ``tilerunner run`` with one worker: a thread of the run process itself.

A worker process is a second interpreter that imports GDAL, numpy, the store and the model
again, and loads the model again, although the run process has loaded it already (to check
it before any work). With one worker that costs more CPU than it saves, so ``run --workers 1``
serves its job from a thread: the same loop as ``tilerunner worker`` (a
:class:`~tilerunner.worker.Worker` over a :class:`~tilerunner.work.direct.DirectWorkSource`),
the same state file, leases and completion transaction, with the model already loaded. Kill
and resume hold as before: a run killed at any point takes its worker with it (as killing the
run's process group always did), the regions it held are leased again once their leases
expire, and a finished region is never recomputed. What the worker logs goes to the same
``STATE.workers.log`` a worker process writes, not to the run's standard error. Several workers
are processes (:class:`~tilerunner.cli.worker_pool.WorkerPool`), so that they decode and infer
in parallel.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tilerunner.errors import InvalidRequestError

if TYPE_CHECKING:
    from tilerunner.cli.early_reads import EarlyReads
    from tilerunner.models import LoadedModel
    from tilerunner.settings import Settings
    from tilerunner.store import Store
    from tilerunner.worker import Worker

__all__ = ["ThreadWorker"]

log = logging.getLogger(__name__)


class ThreadWorker:
    """One worker in a thread, with :class:`~tilerunner.cli.worker_pool.WorkerPool`'s calls."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        batch_size: int | None,
        readers: int,
        log_path: Path,
        early: EarlyReads | None = None,
    ) -> None:
        """``early``: what the run reads ahead while it starts, handed to the worker;
        ``readers``: the worker's reader threads."""
        self._settings = settings
        self._log = _ThreadLog(log_path)
        self._url = url
        self._batch_size = batch_size
        self._readers = readers
        self._models: dict[str, LoadedModel] = {}
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._early = early
        self._store: Store | None = None

    def serve(self, name: str, model: LoadedModel) -> None:
        """Serve ``model`` (loaded by the run) under ``name`` once the job is released."""
        self._models[name] = model

    def use_store(self, store: Store) -> None:
        """Lease through ``store`` (the run's own, open on the same state file) instead of
        opening the state file a second time."""
        self._store = store

    def release(self, job_id: str | None) -> None:
        """Start serving ``job_id`` until every region of it finished (None: nothing to do)."""
        if job_id is None or self._thread is not None:
            return
        from tilerunner.cli.worker import direct_source, worker_options
        from tilerunner.worker import Worker

        settings = self._settings
        source = direct_source(settings, self._url, self._url, None, self._store)
        options = worker_options(settings, self._batch_size, self._readers, 0.0)
        worker = Worker(source, self._models, options, env=settings.gdal_env())
        if self._early is not None and len(self._models) == 1:
            self._early.hand_over(worker, *self._models.values())
        self._worker = worker
        self._log.start()

        def serve() -> None:
            try:
                worker.run(until=lambda: source.job_finished(job_id))
            except BaseException as error:  # kept for check(), which the run calls
                log.exception("the worker thread stopped")
                self._error = error

        self._thread = threading.Thread(target=serve, name="worker", daemon=True)
        self._thread.start()
        log.debug(
            "run: worker thread serving job %s with %d reader thread(s)", job_id, self._readers
        )

    def check(self) -> None:
        """Raise when the worker stopped with an error (a process pool would restart it; a
        thread that failed has left the process in no state to trust)."""
        if self._error is not None:
            raise InvalidRequestError(
                f"the worker stopped: {self._error!r}; run the same command again to resume"
            )

    def wait(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the worker leaves first (its job is finished)."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(seconds)
        else:
            time.sleep(seconds)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop leasing; the items held are finished and recorded (up to ``timeout``)."""
        if self._worker is not None:
            self._worker.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._early is not None:
            self._early.close()
        self._log.stop()

    def discard_log(self) -> None:
        """Nothing to remove: the worker logs with the run."""


class _ThreadLog:
    """Sends the records of every thread but the main one (the worker's: its loop, readers,
    batcher, committer) to ``path`` instead of the run's own handlers, in their format."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: logging.FileHandler | None = None

    def start(self) -> None:
        root = logging.getLogger()
        self._file = logging.FileHandler(self._path, encoding="utf-8")
        if root.handlers and root.handlers[0].formatter is not None:
            self._file.setFormatter(root.handlers[0].formatter)
        self._file.addFilter(_other_threads)
        for handler in root.handlers:
            handler.addFilter(_main_thread)
        root.addHandler(self._file)

    def stop(self) -> None:
        if self._file is None:
            return
        root = logging.getLogger()
        root.removeHandler(self._file)
        for handler in root.handlers:
            handler.removeFilter(_main_thread)
        self._file.close()
        self._file = None


def _main_thread(record: logging.LogRecord) -> bool:
    return record.threadName == "MainThread"


def _other_threads(record: logging.LogRecord) -> bool:
    return record.threadName != "MainThread"
