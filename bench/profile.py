"""Where the time goes in the hot path: py-spy profiles of a real ``tilerunner run``.

    .venv/bin/python bench/profile.py --size 4096 --json bench-profile.json

Two cases over the same seeded JPEG COG (``bench/pipeline.py``'s scene) and the same real
detector (the zoo's YOLOv3-tiny as ONNX, ``bench/gpu.py``; ``--model synthetic`` for the
seeded convolution stack): **local** reads the file from disk; **http** reads it from
``tilerunner.testing.range_server`` on loopback, with ``--latency-ms`` added to every request
as object storage would. ``py-spy record --subprocesses --format raw`` samples the run process
and its worker (threads that are idle are not sampled, so the shares are of work, not of
waiting). Each sample is put in the first stage, in the order of ``STAGES``, that one of its
frames belongs to; the top functions are counted by their own samples (the leaf frame).
py-spy is in the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpu import build_model
from pipeline import make_scene
from tilerunner.testing.range_server import RangeServer

#: (stage, pattern on a frame "function (file:line)"), first match wins. Start-up (imports,
#: model load) comes first, so that what follows is the hot path proper.
STAGES: list[tuple[str, str]] = [
    (
        "start-up: imports, model load",
        r"<frozen importlib\._bootstrap|_create_inference_session"
        r"|^load_model ",
    ),
    ("model: ONNX Runtime session run", r"onnxruntime_inference_collection\.py"),
    ("model: resize, normalise, decode", r"tilerunner/models/"),
    ("read: GDAL fetch and decode", r"tilerunner/imagery/|rasterio/"),
    ("tiles: ownership, merge, rows", r"tilerunner/(pipeline|merging|tiling)/"),
    ("store and queue", r"sqlalchemy/|tilerunner/(store|broker|work)/"),
    ("aggregation and outputs", r"tilerunner/(coordinator|outputs|georef)/"),
    ("CLI, progress, worker loop", r"tilerunner/|click/|rich/"),
]
#: A leaf frame that waits (py-spy counts some waits as active): its own stage, whatever called it.
_WAITING = re.compile(r"^(Condition\.wait|Event\.wait|Popen\._wait|Thread\.join|select) ")
_LINE = re.compile(r"^(.*) (\d+)$")


def classify(frames: list[str]) -> str:
    """The stage of one sampled stack (root first)."""
    if _WAITING.match(frames[-1]):
        return "waiting (threads, child processes)"
    for stage, pattern in STAGES:
        if any(re.search(pattern, frame) for frame in reversed(frames)):
            return stage
    return "other (interpreter, threads)"


def summarise(raw: str, top: int) -> dict[str, Any]:
    """Stage shares and top own-time functions of a py-spy ``--format raw`` profile."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        frames, count = match.group(1).split(";"), int(match.group(2))
        owners = [f for f in frames if f.startswith("process ")]  # the run, then its child
        if owners:
            processes["worker" if " tilerunner worker " in owners[-1] else "run"] += count
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        stage = classify(frames)
        stages[stage] += count
        if not stage.startswith(("start-up", "waiting")):
            leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
    hot = sum(leaves.values())
    return {
        "samples": total,
        "by_process": dict(processes),
        "stages_pct": {k: round(100 * v / max(total, 1), 1) for k, v in stages.most_common()},
        "hot_path_samples": hot,
        "top_own_pct_of_hot_path": {
            k: round(100 * v / max(hot, 1), 1) for k, v in leaves.most_common(top)
        },
    }


def profile_run(source: str, model: Path, workdir: Path, tag: str, rate: int) -> dict[str, Any]:
    """``py-spy record`` of one ``tilerunner run`` of ``model`` over ``source``."""
    raw = workdir / f"{tag}.pyspy.txt"
    for old in workdir.glob(f"{tag}.*"):
        old.unlink()
    argv = [
        shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record",
        "--subprocesses", "--format", "raw", "--rate", str(rate), "-o", str(raw), "--",
        sys.executable, "-m", "tilerunner", "run", source, "--model", str(model),
        "-o", str(workdir / f"{tag}.geojson"), "--state", str(workdir / f"{tag}.db"), "--quiet",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"profiled run failed:\n{done.stderr[-3000:]}")
    return {"wall_seconds": round(seconds, 2), "command": argv, **summarise(raw.read_text(), 12)}


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--size", type=int, default=4096, help="COG width and height in pixels")
    add("--model", choices=["yolov3-tiny", "synthetic"], default="yolov3-tiny")
    add("--latency-ms", type=float, default=20.0, help="added to every HTTP request")
    add("--rate", type=int, default=100, help="py-spy samples per second")
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench-profile"))
    add("--cache-dir", type=Path, default=Path.home() / ".cache" / "tilerunner")
    add("--json", type=Path, default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _arguments(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    image = make_scene(args.workdir / f"scene-{args.size}.cog.tif", args.size)
    model = build_model(args.model, args.workdir, args.cache_dir)
    report: dict[str, Any] = {"size": args.size, "model": args.model}
    report["local"] = profile_run(str(image), model, args.workdir, "local", args.rate)
    with RangeServer(args.workdir, latency_ms=args.latency_ms) as server:
        report["http"] = profile_run(server.url(image.name), model, args.workdir, "http", args.rate)
        report["http"]["requests"] = server.stats().requests
    report["http"]["latency_ms"] = args.latency_ms
    for case in ("local", "http"):
        row = report[case]
        print(f"\n{case}: {row['wall_seconds']} s wall, {row['samples']} samples "
              f"{row['by_process']}")  # fmt: skip
        for stage, pct in row["stages_pct"].items():
            print(f"  {pct:5.1f} %  {stage}")
        print(f"  top functions of the hot path ({row['hot_path_samples']} samples without "
              "start-up and waiting), by own samples:")  # fmt: skip
        for name, pct in row["top_own_pct_of_hot_path"].items():
            print(f"  {pct:5.1f} %  {name}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
