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
- **Freed memory is kept for the next block (glibc).** GDAL allocates and frees buffers per
  block it fetches and decodes (its ``/vsicurl`` download buffers grow by exact-size
  ``realloc``; each decoded block gets a zeroed buffer), and tilerunner cuts each tile into an
  array of its own. glibc's allocator starts by serving every allocation over 128 KiB with a
  fresh ``mmap`` and by giving freed heap memory back to the kernel, so those buffers page-fault
  in again, block after block, and a growing buffer is copied at each step: about 150,000 page
  faults and 0.15 s of kernel time in a run of an 8192 x 6144 image. The command sets the
  thresholds to where glibc's own adjustment would take them at most (``mmap`` from 32 MiB,
  heap given back past 64 MiB free), so that memory freed by one block serves the next.
  A ``MALLOC_*_`` variable or a ``glibc.malloc`` tunable of the user's leaves both as they are.
- **The collector of reference cycles is paused while a command starts.** Imports and set-up
  make about 85,000 objects that the collector tracks and that live as long as the process;
  collecting while they are made walks them again and again, about 7 % of a ``run``'s
  imports. A command that keeps running calls :func:`started` once it has (``run`` once its
  workers were released, ``worker``, ``serve``, ``watch``, ``submit --wait``, and
  ``results``, which may write millions of features). That collects once what start-up left
  unreachable (0.05 s after a run's imports, which leave about 1,800 such objects; a model's
  load may leave more), freezes the rest out of the collector's reach, so that later
  collections do not walk it, and turns the collector back on.

The figures are in ``docs/benchmarks.md`` (against peers: a spinning BLAS pool; the image
opened before the settings, the last batch at once, freed memory kept).
"""

from __future__ import annotations

import gc
import os
import sys

from tilerunner.environ import DEFAULT_GDAL_CACHE_MB, tilerunner_variables

__all__ = ["keep_freed_memory", "started", "starting"]

#: Spin of OpenBLAS's idle threads, as a power of two of CPU cycles (its lowest setting).
OPENBLAS_THREAD_TIMEOUT = "4"

#: glibc's ``mallopt`` parameters (``malloc.h``) and the values set: the largest ``mmap``
#: threshold glibc's own adjustment reaches on 64-bit systems, and twice that for trimming.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_USERS_MALLOC = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def starting() -> None:
    """Called first by the entry point, before anything imports numpy or GDAL."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    cache_mb = tilerunner_variables().get("gdal_cache_mb", str(DEFAULT_GDAL_CACHE_MB)).strip()
    if cache_mb.isdigit():
        os.environ.setdefault("GDAL_CACHEMAX", cache_mb)
    keep_freed_memory()
    gc.disable()


def keep_freed_memory() -> bool:
    """Set glibc's ``mmap`` and trim thresholds (see the module); True when they were set."""
    if sys.platform != "linux" or any(name in os.environ for name in _USERS_MALLOC):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    import ctypes  # numpy loads its C part anyway; this adds about 2 ms

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def started() -> None:
    """The command is past its start-up: collect what it left, freeze the rest out of the
    collector's reach and collect cycles again from now on (once; later calls do nothing)."""
    if not gc.isenabled():
        gc.collect()
        gc.freeze()
        gc.enable()
