"""One command for the comparison and scale benchmarks: ``peers``, ``scale``, ``plots`` or ``all``.

    .venv/bin/python bench/suite.py all                      # everything, figures in docs/img
    .venv/bin/python bench/suite.py peers --parts http       # one part of one benchmark
    .venv/bin/python bench/suite.py scale --size 50000       # a smaller sparse scene
    .venv/bin/python bench/suite.py plots                    # figures from saved results

Each benchmark prints its tables and writes its figures as JSON to ``--results``
(default ``bench/results``): ``peers.json``, ``scale.json``; ``plots`` draws PNGs from them into
``docs/img``. Inputs are built once under ``--workdir`` and reused. The benchmark-only libraries
(SAHI, matplotlib, psutil) come with the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import machine

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def _save(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "machine": machine(),
        **report,
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _peers(args: argparse.Namespace) -> None:
    from peers import run_peers

    report = run_peers(
        args.workdir,
        parts=args.parts,
        width=args.width,
        height=args.height,
        latencies=args.latency,
        sizes=args.sizes,
        heavy_width=args.heavy_width,
        heavy_depth=args.heavy_depth,
    )
    _save(report, args.results / "peers.json")


def _scale(args: argparse.Namespace) -> None:
    from scale import run_scale, time_merge

    if args.merge_only:
        _save({"merge": [time_merge(n) for n in args.merge_sizes]}, args.results / "merge.json")
        return
    report = run_scale(
        args.workdir,
        size=args.size,
        boxes_per_tile=args.boxes_per_tile,
        merge_sizes=args.merge_sizes,
        resume=args.resume,
    )
    _save(report, args.results / "scale.json")


def _plots(args: argparse.Namespace) -> None:
    from plots import draw
    from tables import peers_tables, scale_tables

    for path in draw(args.results, args.img):
        print(f"wrote {path}")
    for name, render in (("peers", peers_tables), ("scale", scale_tables)):
        path = args.results / f"{name}.json"
        if path.exists() and (name != "scale" or "run" in json.loads(path.read_text("utf-8"))):
            print(render(json.loads(path.read_text(encoding="utf-8"))))


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("bench", choices=["all", "peers", "scale", "plots"])
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench"))
    add("--results", type=Path, default=BENCH / "results", help="folder of the JSON results")
    add("--img", type=Path, default=ROOT / "docs" / "img", help="folder of the PNG figures")
    peers = parser.add_argument_group("peers")
    peers.add_argument(
        "--parts",
        nargs="+",
        default=["local", "http", "memory"],
        choices=["local", "http", "memory"],
    )
    peers.add_argument("--width", type=int, default=8192, help="seam scene width")
    peers.add_argument("--height", type=int, default=6144, help="seam scene height")
    peers.add_argument(
        "--latency",
        type=float,
        nargs="+",
        default=[0, 50, 100],
        help="ms added to every HTTP request",
    )
    peers.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[8192, 16384, 32768],
        help="square image sizes of the memory part",
    )
    peers.add_argument("--heavy-width", type=int, default=8, help="channels of the heavy model")
    peers.add_argument("--heavy-depth", type=int, default=3, help="conv layers of the heavy model")
    scale = parser.add_argument_group("scale")
    scale.add_argument("--size", type=int, default=200_000, help="sparse scene width and height")
    scale.add_argument("--boxes-per-tile", type=int, default=10)
    scale.add_argument(
        "--merge-sizes",
        type=int,
        nargs="+",
        default=[500_000, 1_000_000, 2_000_000],
        help="detections merged directly, to show how merge time grows",
    )
    scale.add_argument(
        "--merge-only", action="store_true", help="only the merge sizes (to merge.json)"
    )
    scale.add_argument(
        "--resume",
        action="store_true",
        help="keep the state of an earlier scale run and finish it (its stages come from both)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    steps = {"peers": _peers, "scale": _scale, "plots": _plots}
    for name in steps if args.bench == "all" else [args.bench]:
        steps[name](args)


if __name__ == "__main__":
    main()
