"""What the ``tilerunner`` process sets before a command starts, and turns back once it runs.

- **OpenBLAS's idle threads sleep at once.** numpy's OpenBLAS starts a thread per core when it
  loads, and each spins about 2**28 cycles (0.1 s of a core) waiting for work that tilerunner's
  own numpy use never gives it: on a small machine, a core taken from decoding and the model.
  With the lowest ``OPENBLAS_THREAD_TIMEOUT`` they sleep at once; a model's BLAS calls still use
  every thread. The user's own setting is kept.
- **GDAL's block cache is sized before any thread starts.** GDAL reads ``GDAL_CACHEMAX`` once,
  at a process's first block read, and ``run`` may open and read its image in a thread while
  its settings still load: the variable is set first, from ``TILERUNNER_GDAL_CACHE_MB`` (its
  default otherwise), unless the user set it. A value that is not a plain number is left to the
  settings, which reject it or set it once validated, before the command reads anything.
- **The collector of reference cycles is paused while a command starts.** Imports and set-up
  make about 85,000 objects that the collector tracks and that live as long as the process;
  collecting while they are made walks them again and again, about 7 % of a ``run``'s
  imports. A command that keeps running calls :func:`started` once it has (``run`` once its
  workers were released, ``worker``, ``serve``, ``watch``, ``submit --wait``, and
  ``results``, which may write millions of features). That collects once what start-up left
  unreachable (0.05 s after a run's imports, which leave about 1,800 such objects; a model's
  load may leave more), freezes the rest out of the collector's reach, so that later
  collections do not walk it, and turns the collector back on.

The figures are in ``docs/benchmarks.md`` (against peers: a spinning BLAS pool).
"""

from __future__ import annotations

import gc
import os

from tilerunner.environ import DEFAULT_GDAL_CACHE_MB, tilerunner_variables

__all__ = ["started", "starting"]

#: Spin of OpenBLAS's idle threads, as a power of two of CPU cycles (its lowest setting).
OPENBLAS_THREAD_TIMEOUT = "4"


def starting() -> None:
    """Called first by the entry point, before anything imports numpy or GDAL."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    cache_mb = tilerunner_variables().get("gdal_cache_mb", str(DEFAULT_GDAL_CACHE_MB)).strip()
    if cache_mb.isdigit():
        os.environ.setdefault("GDAL_CACHEMAX", cache_mb)
    gc.disable()


def started() -> None:
    """The command is past its start-up: collect what it left, freeze the rest out of the
    collector's reach and collect cycles again from now on (once; later calls do nothing)."""
    if not gc.isenabled():
        gc.collect()
        gc.freeze()
        gc.enable()
