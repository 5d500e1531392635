"""Memory benchmark: peak RSS of a real ``tilerunner run`` does not grow with image size.

For each ``--sizes`` entry a seeded, tiled, JPEG-compressed 3-band GeoTIFF is written strip by
strip (see ``bench/pipeline.py``), then ``tilerunner run`` processes it as a user would: a
subprocess, the embedded SQLite state, ``--workers`` worker subprocesses and a cheap model
(:class:`tilerunner.testing.models.FakeDetector`, which finds the white squares painted into
the image). While it runs, the process tree (the ``run`` process and every descendant) is polled
from ``/proc``: ``VmHWM`` is each process's own peak RSS, and the sum of ``VmRSS`` over the tree
at each poll gives the tree's peak. The tree peak is the figure that must stay under 1.5 GB and
be about the same for an 8192 and a 32768 px image (16 times the pixels).

    .venv/bin/python bench/memory.py --json bench-memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline import machine, make_scene

__all__ = ["MemoryPeak", "TreeSampler", "measure_run"]

_LIMIT_BYTES = 1.5e9
_MODEL = "tilerunner.testing.models:FakeDetector"


def _status_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB; empty when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _parents() -> dict[int, int]:
    """``pid -> parent pid`` of every process, from ``/proc/<pid>/stat``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The command name may hold spaces or parentheses; the fields after its last ")" don't.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


@dataclass(slots=True)
class TreeSampler:
    """Polls the RSS of a process and all its descendants."""

    root: int
    peak_tree_kib: int = 0
    hwm_kib: dict[int, int] = field(default_factory=dict)
    samples: int = 0

    def tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for pid, parent in _parents().items():
            children.setdefault(parent, []).append(pid)
        found, stack = [], [self.root]
        while stack:
            pid = stack.pop()
            found.append(pid)
            stack.extend(children.get(pid, []))
        return found

    def sample(self) -> None:
        total = 0
        for pid in self.tree():
            values = _status_kib(pid)
            total += values.get("VmRSS", 0)
            if "VmHWM" in values:
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), values["VmHWM"])
        self.peak_tree_kib = max(self.peak_tree_kib, total)
        self.samples += 1


@dataclass(frozen=True, slots=True)
class MemoryPeak:
    """Peaks of one ``tilerunner run``, in bytes."""

    size: int
    seconds: float
    peak_tree_bytes: int
    peak_process_bytes: int
    sum_of_process_peaks_bytes: int
    processes: int
    samples: int
    features: int


def measure_run(
    image: Path,
    size: int,
    workdir: Path,
    extra: Sequence[str],
    poll: float,
    env: dict[str, str] | None = None,
) -> MemoryPeak:
    """Run ``tilerunner run`` on ``image`` (environment ``env``) and sample its process tree."""
    state = workdir / f"state-{size}.db"
    output = workdir / f"out-{size}.geojson"
    for path in workdir.glob(f"state-{size}*"):
        path.unlink()
    output.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tilerunner", "run", str(image), "--model", _MODEL,
            "-o", str(output), "--state", str(state), "--quiet", *extra]  # fmt: skip
    log = workdir / f"run-{size}.log"
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid)
        while proc.poll() is None:
            sampler.sample()
            time.sleep(poll)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"tilerunner run failed ({proc.returncode}); see {log}")
    features = len(json.loads(output.read_text(encoding="utf-8"))["features"])
    hwm = sampler.hwm_kib.values()
    return MemoryPeak(size, seconds, sampler.peak_tree_kib * 1024, max(hwm) * 1024,
                      sum(hwm) * 1024, len(hwm), sampler.samples, features)  # fmt: skip


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Peak memory of tilerunner run vs image size.")
    add = parser.add_argument
    add("--sizes", type=int, nargs="+", default=[8192, 32768], help="image sizes in pixels")
    add("--workers", type=int, default=1, help="worker processes of the run")
    add("--batch-size", type=int, default=8)
    add("--readers", type=int, default=2)
    add("--gdal-cachemax", type=int, default=None,
        help="GDAL block cache of the run in MB (default: GDAL's own, 5%% of RAM)")  # fmt: skip
    add("--poll", type=float, default=0.05, help="seconds between samples of the tree")
    add("--seed", type=int, default=0)
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    add("--json", type=Path, default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Measure every size, print the peaks and their ratio, optionally save them as JSON."""
    args = _arguments(argv)
    extra = ["--workers", str(args.workers), "--batch-size", str(args.batch_size),
             "--readers", str(args.readers)]  # fmt: skip
    env = None
    if args.gdal_cachemax is not None:  # GDAL reads it from the environment of the processes
        env = {**os.environ, "GDAL_CACHEMAX": str(args.gdal_cachemax)}
    peaks = []
    for size in args.sizes:
        started = time.perf_counter()
        image = make_scene(args.workdir / f"scene-{size}-s{args.seed}.jpeg.tif", size,
                           seed=args.seed, cog=False)  # fmt: skip
        print(f"image {image} ({image.stat().st_size / 2**20:.0f} MiB) "
              f"ready after {time.perf_counter() - started:.0f} s")  # fmt: skip
        peak = measure_run(image, size, args.workdir, extra, args.poll, env)
        peaks.append(peak)
        print(
            f"  {size} x {size}: {peak.seconds:.1f} s, {peak.features} features, peak RSS of "
            f"the tree {peak.peak_tree_bytes / 2**20:.0f} MiB, largest process "
            f"{peak.peak_process_bytes / 2**20:.0f} MiB, {peak.processes} processes"
        )
    ratio = peaks[-1].peak_tree_bytes / peaks[0].peak_tree_bytes
    under = all(p.peak_tree_bytes < _LIMIT_BYTES for p in peaks)
    print(f"peak tree RSS {args.sizes[-1]} / {args.sizes[0]} = {ratio:.3f}; "
          f"all under 1.5 GB: {under}")  # fmt: skip
    report: dict[str, object] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "runs": [asdict(p) for p in peaks],
        "ratio_largest_to_smallest": ratio,
        "all_under_1_5_gb": under,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
