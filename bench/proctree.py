"""Run a command and sample the memory of its whole process tree with psutil.

``tilerunner run`` works through worker subprocesses, SAHI and a plain loop work in one process:
comparing them fairly means summing the resident memory of the process and every descendant at
each sample. psutil reads it portably; the tree is walked anew at every sample because workers
start and stop during a run. A thread samples while the caller waits for the command, so its
time is taken when it exits, not at the next sample (which would add up to ``poll`` seconds to
every tool's time alike, and so flatter the slower ones' ratios).
"""

from __future__ import annotations

import resource
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["Sampled", "run_sampled"]


@dataclass(frozen=True, slots=True)
class Sampled:
    """One finished command: wall seconds, CPU seconds of the whole tree (user + system of every
    process waited for), the tree's peak RSS, how it ended, what it printed."""

    seconds: float
    cpu_seconds: float
    peak_tree_bytes: int
    processes: int
    samples: int
    returncode: int
    stdout: str


def _tree_rss(root: psutil.Process, seen: set[int]) -> int:
    """Resident bytes of ``root`` and its descendants now; adds their pids to ``seen``."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            seen.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return total


def run_sampled(
    argv: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    poll: float = 0.05,
    timeout: float = 3600.0,
) -> Sampled:
    """Run ``argv`` (stdout to ``log``.out, stderr to ``log``), sampling its tree every ``poll``
    seconds; a command still running after ``timeout`` seconds is killed."""
    out = log.with_suffix(".out")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("wb") as sink, out.open("wb") as printed:
        proc = subprocess.Popen(argv, stdout=printed, stderr=sink, env=env)
        root = psutil.Process(proc.pid)
        seen = set[int]()
        peaks: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peaks.append(_tree_rss(root, seen))
                done.wait(poll)

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        sampler.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    stdout = out.read_text(encoding="utf-8", errors="replace")
    return Sampled(
        seconds, cpu, max(peaks, default=0), len(seen), len(peaks), proc.returncode, stdout
    )
