"""The process set-up of the ``tilerunner`` command: OpenBLAS's idle threads sleep, GDAL's block
cache is sized before any thread reads, freed memory is kept for reuse, the collector of
reference cycles is paused while a command starts and on again once it runs."""

from __future__ import annotations

import csv
import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from tr_cli import tilerunner
from tr_scenes import make_scene

from tilerunner.cli.startup import (
    OPENBLAS_THREAD_TIMEOUT,
    keep_freed_memory,
    started,
    starting,
)
from tilerunner.environ import DEFAULT_GDAL_CACHE_MB


@pytest.fixture
def collector() -> Iterator[None]:
    """Leaves the test process's collector as it found it."""
    frozen = gc.get_freeze_count()
    yield
    gc.enable()
    if gc.get_freeze_count() > frozen:
        gc.unfreeze()


def test_starting_pauses_the_collector_and_sets_openblas_unless_set(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    starting()
    assert not gc.isenabled()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == OPENBLAS_THREAD_TIMEOUT
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")
    starting()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "20"


def test_starting_sizes_gdals_cache_from_the_setting_unless_gdal_cachemax_is_set(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.delenv("TILERUNNER_GDAL_CACHE_MB", raising=False)
    starting()
    assert os.environ["GDAL_CACHEMAX"] == str(DEFAULT_GDAL_CACHE_MB)
    monkeypatch.delenv("GDAL_CACHEMAX")
    monkeypatch.setenv("tilerunner_gdal_cache_mb", " 300 ")  # any case, as the settings read it
    starting()
    assert os.environ["GDAL_CACHEMAX"] == "300"
    monkeypatch.setenv("GDAL_CACHEMAX", "64")
    starting()
    assert os.environ["GDAL_CACHEMAX"] == "64"  # the user's own


def test_a_cache_size_that_is_not_a_number_is_left_to_the_settings_which_stop_the_command(
    collector: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setenv("TILERUNNER_GDAL_CACHE_MB", "lots")
    starting()
    assert "GDAL_CACHEMAX" not in os.environ
    image, _, _ = make_scene(tmp_path, width=512, height=512, n_boxes=5)
    done = tilerunner(
        "run", str(image), "--model", "tilerunner.testing.models:FakeDetector",
        "-o", "out.geojson", "--state", "state.db", "--quiet", cwd=tmp_path,
        TILERUNNER_GDAL_CACHE_MB="lots",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: invalid settings: TILERUNNER_GDAL_CACHE_MB: ")
    assert done.stderr.count("\n") == 1  # one line, no traceback from the thread that opened
    assert not (tmp_path / "state.db").exists() and not (tmp_path / "out.geojson").exists()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_started_collects_start_up_garbage_then_freezes_the_rest_once(collector: None) -> None:
    gc.disable()
    kept = [[]]  # made "during start-up", still in use
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle that start-up left behind
    gone = weakref.ref(a)
    del a, b
    started()
    assert gc.isenabled()
    assert gone() is None  # collected, not frozen
    assert gc.get_freeze_count() > 0
    assert kept[0] == []
    frozen = gc.get_freeze_count()
    kept.append([])
    started()  # a second call: nothing more is frozen
    assert gc.get_freeze_count() == frozen


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_collects_while_its_workers_work(tmp_path: Path, workers: int) -> None:
    tif = make_scene(tmp_path, width=1200, height=700, n_boxes=0)[0]
    done = tilerunner(
        "run", str(tif), "--model", "tr_probes:CollectorProbe", "--tile-size", "256",
        "--overlap", "32", "--region-size", "512", "--workers", str(workers),
        "-o", "out.csv", "--state", "s.db", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (tmp_path / "out.csv").open() as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    assert len(labels) > 6  # one box a tile, from several regions
    assert set(labels) == {"collecting"}


_REFAULTS = """
import resource, sys
from tilerunner.cli import startup
if sys.argv[1] == "set":
    assert startup.keep_freed_memory()
faults = []
for _ in range(3):  # a 16 MiB buffer filled and freed, as GDAL does block after block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = b"x" * (16 << 20)
    del buffer
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")
def test_memory_freed_by_one_buffer_serves_the_next_without_faulting_it_in_again() -> None:
    def faults(mode: str) -> list[int]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
        done = subprocess.run(
            [sys.executable, "-c", _REFAULTS, mode], capture_output=True, text=True, env=env,
            check=True,
        )  # fmt: skip
        return [int(n) for n in done.stdout.split()]

    pages = (16 << 20) // 4096
    default, kept = faults("default"), faults("set")
    # glibc's defaults: the first two buffers each fault in all their pages (it raises its
    # thresholds only after freeing one of that size, and anew for each larger size)
    assert default[0] >= pages // 2 and default[1] >= pages // 2
    assert kept[0] >= pages // 2 and max(kept[1:]) < pages // 10  # reused from the second on


def test_a_users_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
    assert keep_freed_memory() is False
