"""What the ``tilerunner`` process sets before a command starts, and turns back once it runs.

- **OpenBLAS's idle threads sleep at once.** numpy's OpenBLAS starts a thread per core when it
  loads, and each spins about 2**28 cycles (0.1 s of a core) waiting for work that tilerunner's
  own numpy use never gives it: on a small machine, a core taken from decoding and the model.
  With the lowest ``OPENBLAS_THREAD_TIMEOUT`` they sleep at once; a model's BLAS calls still use
  every thread. The user's own setting is kept.
- **The collector of reference cycles is paused while a command starts.** Imports and set-up
  make a few hundred thousand objects that live as long as the process; collecting while they
  are made walks them again and again, about 7 % of a ``run``'s imports. A command that keeps
  running calls :func:`started` once it has (``run`` once its job is planned, ``worker``,
  ``serve``, ``watch``, ``submit --wait``, and ``results``, which may write millions of
  features): the collector is back on, with what
  start-up made frozen out of its reach, so later collections do not walk it either.

The figures are in ``docs/benchmarks.md`` (start-up).
"""

from __future__ import annotations

import gc
import os

__all__ = ["started", "starting"]

#: Spin of OpenBLAS's idle threads, as a power of two of CPU cycles (its lowest setting).
OPENBLAS_THREAD_TIMEOUT = "4"


def starting() -> None:
    """Called first by the entry point, before anything imports numpy."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    gc.disable()


def started() -> None:
    """The command is past its start-up: collect cycles again (once; later calls do nothing)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
