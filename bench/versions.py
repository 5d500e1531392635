"""Two versions of tilerunner side by side with SAHI and the plain loop, over HTTP, interleaved.

    .venv/bin/python bench/versions.py --src before=/path/to/old/src --src after=src \\
        --repeat 3 --latency 0 50 --json versions.json

Each round runs every tool once at each latency, in turn, over the seam scene of
``bench/peers.py`` served by ``RangeServer`` (``FakeDetector``, the peers' settings), so that a
machine whose load drifts affects every tool alike; ``--src NAME=PATH`` runs ``tilerunner run``
with ``PATH`` (a checkout's ``src``) first on ``PYTHONPATH``. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peers import CHEAP, run_tool
from seam_scene import make_seam_scene
from tilerunner.testing.range_server import RangeServer

BENCH = Path(__file__).resolve().parent


def run_versions(
    sources: dict[str, str], latencies: Sequence[float], repeat: int, workdir: Path
) -> list[dict[str, Any]]:
    """Every tool at every latency, ``repeat`` rounds; one row per run."""
    image, truth = make_seam_scene(workdir, 8192, 6144)
    tools = {**{f"tilerunner {name}": src for name, src in sources.items()}, "sahi": "", "loop": ""}
    rows: list[dict[str, Any]] = []
    base_path = os.environ.get("PYTHONPATH", "")
    with RangeServer(image.parent) as server:
        for round_ in range(repeat):
            for latency in latencies:
                server.latency_ms = latency
                for name, src in tools.items():
                    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, base_path) if p)
                    server.reset()
                    tool = name.split()[0]
                    tag = f"versions-{name.replace(' ', '-')}-{latency:g}"
                    run = run_tool(tool, server.url(image.name), CHEAP, workdir, tag, truth, tag)
                    score = run.score or {}
                    row = {
                        "round": round_, "latency_ms": latency, "tool": name,
                        "seconds": round(run.seconds, 2), "cpu_seconds": round(run.cpu_seconds, 2),
                        "peak_tree_mib": run.peak_tree_bytes >> 20, "processes": run.processes,
                        "requests": server.stats().requests, "found": score.get("found"),
                        "load_average_1min": round(os.getloadavg()[0], 2),
                    }  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    os.environ["PYTHONPATH"] = base_path
    print(f"{'latency':>7} {'tool':<20} {'seconds':>8} {'CPU s':>6} {'peak MiB':>8} (medians)")
    for latency in latencies:
        for name in tools:
            runs = [r for r in rows if r["latency_ms"] == latency and r["tool"] == name]
            print(
                f"{latency:5g} ms {name:<20} {statistics.median(r['seconds'] for r in runs):8.2f} "
                f"{statistics.median(r['cpu_seconds'] for r in runs):6.2f} "
                f"{statistics.median(r['peak_tree_mib'] for r in runs):8.0f}"
            )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--src", action="append", required=True, help="NAME=PATH, repeatable")
    parser.add_argument("--latency", type=float, nargs="+", default=[0, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sources = dict(item.split("=", 1) for item in args.src)
    sources = {name: str(Path(path).resolve()) for name, path in sources.items()}
    rows = run_versions(sources, args.latency, args.repeat, args.workdir)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
